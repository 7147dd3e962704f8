"""``driftline replay`` on the real broker and database: into the live run, under a run of its own, from a file, under ``kill -9``.

One prediction topic of N = 30,000 credit-risk events (20 events/s: 25 one-minute windows, a mean
shift of ``annual_income`` in its second third) and its label topic (a label for every prediction
five minutes of event time later, out of order within blocks). A live worker with a six-minute label
horizon processes both to their end, keeping a checkpoint snapshot at every checkpoint; then:

* a replay into the live run, from its beginning and from a snapshot in the middle (also stopped
  early, where windows near the end are not settled), leaves every result row exactly as it was —
  quantiles, ``updated_at`` and ``created_at`` included — while the summary shows it computed and
  upserted the rows; one with other engine settings is refused and writes nothing;
* a replay after a reference fix (a profile whose income is 30 % higher) writes under its own run
  label: the live rows stay, the fix's rows sit beside them with other drift scores for
  ``annual_income`` only, and README's comparison query shows the difference; so does one after a
  contract change (age's range narrowed), whose rejections are the fix's only;
* the events archived to Parquet and replayed with ``--input`` give the rows a replay of the topic gives;
* a replay ``kill -9``-ed mid-way and run again ends with the rows of an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from worker_harness import (
    MODEL,
    REPO,
    RESULT_TABLES,
    Worker,
    isolated_database,
    produce,
    snapshot,
    synthetic_payloads,
    unique,
)

import driftline.schemas
from driftline.schemas.codec import encode_single_object
from driftline.schemas.contract_catalog import Catalog
from driftline.sinks.database import create_database_engine
from driftline.stream.demo.demo import reference_profile
from driftline.stream.demo.generator import Episode, SyntheticStream
from driftline.stream.monitor.profile import build_reference_profile
from driftline.stream.profiles import ProfileDirectory

N = 30_000
DELAY_MS = 5 * 60_000
LABELS = ("--label-horizon", "6m", "--label-grace", "60s")
GROUP = "live"
SEED = 20261208


def _decode(payloads: list[bytes]) -> list[dict[str, Any]]:
    schema = fastavro.parse_schema(Catalog.load().contract(MODEL).schema_json)
    return [fastavro.schemaless_reader(io.BytesIO(payload[10:]), schema) for payload in payloads]  # type: ignore[call-arg]


def _millis(value: Any) -> int:
    return int(value.timestamp() * 1000)


def _labels(predictions: list[dict[str, Any]]) -> list[bytes]:
    schema = Catalog.load().event_schema("driftline.events.Label")
    rng = np.random.default_rng(SEED)
    records = [{"event_id": p["event_id"], "model_name": MODEL, "label": float(rng.random() < p["prediction_score"]),
                "label_time": _millis(p["event_time"]) + DELAY_MS} for p in predictions]
    records.sort(key=lambda r: r["label_time"])
    order = random.Random(SEED)
    for block in range(0, len(records), 500):  # out of order by up to ~25 s
        part = records[block:block + 500]
        order.shuffle(part)
        records[block:block + 500] = part
    return [encode_single_object(record, schema) for record in records]


def _replay(bootstrap: str, url: str, prefix: str, *arguments: str, labels: bool = True) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "driftline.stream.cli", "replay", "--model", MODEL, "--bootstrap", bootstrap,
               "--database-url", url, "--topic-prefix", prefix, "--group", GROUP, *arguments]
    if labels:
        command += [*LABELS, "--label-topic-prefix", prefix + "labels."]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO, env=dict(os.environ))


def _full_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every column of every result table, quantiles and times included, keyed and sorted."""
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            return {name: sorted((dict(row) for row in connection.execute(sa.text(f"SELECT * FROM {name}")).mappings()), key=repr)
                    for name in RESULT_TABLES}
    finally:
        engine.dispose()


def _runs(rows: dict[str, list[dict[str, Any]]], run: str) -> dict[str, list[dict[str, Any]]]:
    return {name: [row for row in table if row["run"] == run] for name, table in rows.items()}


def _written(stdout: str, table: str) -> int:
    found = re.search(rf"\b{table} ([\d,]+)", stdout.split("written", 1)[1])
    return 0 if found is None else int(found.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The topics, and a database the live worker processed them into (snapshots every second)."""
    prefix = unique("replay") + "."
    payloads = synthetic_payloads(N, seed=29, events_per_second=20.0,
                                  episodes=[Episode("mean_shift", N // 3, 2 * N // 3, "annual_income", size=1.0)])
    predictions = _decode(payloads)
    produce(kafka_bootstrap, prefix + MODEL, payloads)
    produce(kafka_bootstrap, prefix + "labels." + MODEL, _labels(predictions))
    log = tmp_path_factory.mktemp("replay") / "worker.log"
    with isolated_database(database_url) as url:
        worker = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq", group=GROUP, log=log,
                        extra=(*LABELS, "--label-topic-prefix", prefix + "labels.", "--snapshot-interval", "1ms", "--checkpoint-seconds", "0.05",
                               "--batch-events", "3000"), stop_at_end=True)
        assert worker.wait(600) == 0, worker.log_tail()
        yield {"prefix": prefix, "url": url, "predictions": predictions}


def _snapshots(url: str, topic: str) -> list[int]:
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT next_offset FROM checkpoint_snapshots WHERE consumer_group = :g AND topic = :t "
                                              "ORDER BY next_offset"), {"g": GROUP, "t": topic}).scalars().all()
    finally:
        engine.dispose()


def test_replaying_into_the_live_run_what_it_covered_changes_nothing(kafka_bootstrap: str, live: Any) -> None:
    url, prefix = live["url"], live["prefix"]
    before = _full_rows(url)
    assert before["window_aggregates"] and before["performance_windows"] and before["alerts"]
    assert {"mean_shift", "distribution_drift"} <= {row["kind"] for row in before["alerts"]}

    whole = _replay(kafka_bootstrap, url, prefix)
    assert whole.returncode == 0, whole.stderr
    assert "from the live run's beginning (an empty engine)" in whole.stdout, whole.stdout
    assert f"offsets 0 to {N:,}" in whole.stdout, whole.stdout
    # It did compute and upsert the rows (not a no-op) ...
    assert _written(whole.stdout, "window_aggregates") == len(before["window_aggregates"]), whole.stdout
    assert _written(whole.stdout, "alerts") == len(before["alerts"]), whole.stdout
    # ... and every row is as it was, to the last column.
    assert _full_rows(url) == before

    # From a snapshot in the middle, stopped before the end: the windows near the stop are not settled
    # (labels for them may still come), so their performance rows are held back, not written older.
    snapshots = _snapshots(url, prefix + MODEL)
    assert len(snapshots) >= 4, snapshots
    middle = next(offset for offset in snapshots if offset >= N // 4)
    stop = middle + (N - middle) * 2 // 3  # ten minutes of event time or more: the first windows settle
    part = _replay(kafka_bootstrap, url, prefix, "--from", str(middle + 10), "--to", str(stop))
    assert part.returncode == 0, part.stderr
    assert f"offsets {middle:,} to {stop:,}, from the live run's snapshot of" in part.stdout, part.stdout
    held = re.search(r"([\d,]+) performance rows not written", part.stdout)
    assert held is not None and int(held.group(1)) > 0, part.stdout
    assert _written(part.stdout, "window_aggregates") > 0 and _written(part.stdout, "performance_windows") > 0, part.stdout
    assert _full_rows(url) == before


def test_a_replay_with_other_settings_is_refused_from_the_live_run(kafka_bootstrap: str, live: Any) -> None:
    url, prefix = live["url"], live["prefix"]
    before = _full_rows(url)
    refused = _replay(kafka_bootstrap, url, prefix, "--false-alarms-per-month", "3")
    assert refused.returncode == 2
    assert "false_alarms_per_month (3.0, 1.0)" in refused.stderr and "--run NAME" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    nowhere = _replay(kafka_bootstrap, url, prefix, "--group", "nobody")
    assert nowhere.returncode == 2 and "has no checkpoint" in nowhere.stderr, nowhere.stderr
    assert _full_rows(url) == before


def test_a_replay_after_a_reference_fix_writes_beside_the_live_rows(kafka_bootstrap: str, live: Any, tmp_path: Path) -> None:
    url, prefix = live["url"], live["prefix"]
    before = _full_rows(url)
    # The live run's reference as isolated_database builds it (reference_profile), but from training
    # data whose income is 30 % higher: the fix a replay would be run for.
    contract = Catalog.load().contract(MODEL)
    stream = SyntheticStream(contract, seed=3)
    columns = stream.columns(50_000, seed_offset=1)
    columns["annual_income"] = columns["annual_income"] * 1.3
    fixed = build_reference_profile(contract, columns, model_version="v1", event_times_ms=stream.event_times(50_000),
                                    source="fixed training data", labels=stream.labels(columns, seed_offset=1))
    assert fixed.to_json() != reference_profile(contract, SyntheticStream(contract, seed=3)).to_json()
    ProfileDirectory(tmp_path / "profiles").save(fixed)
    result = _replay(kafka_bootstrap, url, prefix, "--run", "fix-1", "--profiles", str(tmp_path / "profiles"))
    assert result.returncode == 0, result.stderr
    assert "from an empty engine" in result.stdout, result.stdout
    after = _full_rows(url)
    assert _runs(after, "live") == _runs(before, "live")
    fix = _runs(after, "fix-1")
    assert len(fix["window_aggregates"]) == len(before["window_aggregates"])
    assert len(fix["model_windows"]) == len(before["model_windows"])
    live_psi = {(r["feature"], r["window_start"]): r["psi"] for r in before["window_aggregates"]}
    changed = {r["feature"] for r in fix["window_aggregates"] if r["psi"] != live_psi[(r["feature"], r["window_start"])]}
    assert changed == {"annual_income"}, changed
    # README's comparison query, as an analyst would run it.
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(_readme_comparison_query())).mappings().all()
    finally:
        engine.dispose()
    assert rows and {row["feature"] for row in rows} == {"annual_income"}
    assert all(row["psi_fix"] != row["psi_live"] for row in rows)


def test_a_replay_after_a_contract_change_writes_beside_the_live_rows(kafka_bootstrap: str, live: Any, tmp_path: Path) -> None:
    url, prefix = live["url"], live["prefix"]
    before = _full_rows(url)
    # The contract as shipped, but for the range of age: [18, 40] instead of [18, 120].
    bundled = Path(driftline.schemas.__file__).parent
    schemas = tmp_path / "schemas"
    (schemas / "catalog").mkdir(parents=True)
    for path in [*bundled.glob("*.avsc"), *bundled.glob("catalog/*.avsc")]:
        shutil.copy(path, schemas / path.relative_to(bundled))
    contract = json.loads((schemas / "credit_risk.avsc").read_text(encoding="utf-8"))
    next(f for f in contract["fields"] if f["name"] == "age")["driftline"]["range"] = [18, 40]
    (schemas / "credit_risk.avsc").write_text(json.dumps(contract), encoding="utf-8")

    refused = _replay(kafka_bootstrap, url, prefix, "--schemas", str(schemas))  # into the live run: other inputs
    assert refused.returncode == 2 and "the contract" in refused.stderr, refused.stderr
    changed = _replay(kafka_bootstrap, url, prefix, "--run", "contract-fix", "--schemas", str(schemas))
    assert changed.returncode == 0, changed.stderr
    rejected = int(re.search(r"([\d,]+) rejected \(out_of_range", changed.stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    after = _full_rows(url)
    assert _runs(after, "live") == _runs(before, "live")
    windows = _runs(after, "contract-fix")["model_windows"]
    # (the windows still open at the end are not written: a replay writes what a live run would have by then)
    assert rejected >= sum(w["rejected_by_reason"].get("out_of_range", 0) for w in windows) > 0.3 * N
    assert all(w["rejected"] == 0 for w in _runs(before, "live")["model_windows"])


def _readme_comparison_query() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("#### Compare a replay's run with the live run", 1)[1]
    return section.split("```sql", 1)[1].split("```", 1)[0]


def test_an_archive_file_replays_like_the_topic(kafka_bootstrap: str, live: Any, tmp_path: Path) -> None:
    url, prefix = live["url"], live["prefix"]
    contract = Catalog.load().contract(MODEL)
    names = [f["name"] for f in contract.schema_json["fields"]]
    table = pa.Table.from_pylist([{name: event[name] for name in names} for event in live["predictions"]])
    pq.write_table(table, tmp_path / "archive.parquet")
    from_file = _replay(kafka_bootstrap, url, prefix, "--run", "archive", "--input", str(tmp_path / "archive.parquet"), labels=False)
    assert from_file.returncode == 0, from_file.stderr
    from_topic = _replay(kafka_bootstrap, url, prefix, "--run", "topic", labels=False)
    assert from_topic.returncode == 0, from_topic.stderr
    rows = snapshot(url)
    by_run = {run: {name: sorted(row[:-1] for row in table_rows if row[-1] == run) for name, table_rows in rows.items()}
              for run in ("archive", "topic")}
    assert by_run["topic"]["window_aggregates"] and by_run["topic"]["alerts"]
    assert by_run["archive"] == by_run["topic"]


def test_a_replay_killed_and_run_again_ends_with_the_rows_of_an_uninterrupted_one(kafka_bootstrap: str, live: Any) -> None:
    url, prefix = live["url"], live["prefix"]
    clean = _replay(kafka_bootstrap, url, prefix, "--run", "clean", "--batch-events", "1000")
    assert clean.returncode == 0, clean.stderr
    command = [sys.executable, "-m", "driftline.stream.cli", "replay", "--model", MODEL, "--bootstrap", kafka_bootstrap,
               "--database-url", url, "--topic-prefix", prefix, "--group", GROUP, *LABELS, "--label-topic-prefix", prefix + "labels.",
               "--run", "killed", "--batch-events", "1000", "--checkpoint-seconds", "0.2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=dict(os.environ))
    engine = create_database_engine(url)
    try:
        deadline = time.monotonic() + 120
        while True:  # until its own checkpoint is a third of the way
            with engine.connect() as connection:
                offset = connection.execute(sa.text("SELECT next_offset FROM checkpoints WHERE consumer_group = 'replay:killed'")).scalar()
            if offset is not None and offset >= N // 3:
                break
            assert process.poll() is None, "the replay ended before it could be killed"
            assert time.monotonic() < deadline, "the replay made no progress"
            time.sleep(0.05)
    finally:
        engine.dispose()
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    again = _replay(kafka_bootstrap, url, prefix, "--run", "killed", "--batch-events", "1000")
    assert again.returncode == 0, again.stderr
    assert "from run 'killed''s own checkpoint" in again.stdout, again.stdout
    rows = snapshot(url)
    by_run = {run: {name: sorted(row[:-1] for row in table_rows if row[-1] == run) for name, table_rows in rows.items()}
              for run in ("clean", "killed")}
    assert by_run["clean"]["performance_windows"] and by_run["clean"]["alerts"]
    assert by_run["killed"] == by_run["clean"]
