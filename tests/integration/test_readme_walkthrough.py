"""README's "Running on Kafka" walkthrough runs verbatim against the local services, so README cannot drift from the product.

The commands are taken from the block after the ``<!-- walkthrough -->`` marker and run, unchanged, in
one bash session from the repository root. Only the environment isolates the run: an empty
PostgreSQL schema as ``$DRIFTLINE_DATABASE_URL`` and a fresh ``$DRIFTLINE_DATA_DIR``; the walkthrough's
default topic (``predictions.credit_risk``) and consumer group (``driftline``), which no other test
uses, are deleted before it starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from worker_harness import MODEL, REPO, checkpoint, empty_schema

from driftline.sinks import create_database_engine

TOPIC = f"predictions.{MODEL}"
GROUP = "driftline"


def walkthrough() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)```", readme, flags=re.DOTALL)
    assert found, "README.md has no walkthrough block (<!-- walkthrough --> then ```sh)"
    return found.group(1)


def _reset(bootstrap: str) -> None:
    """Delete the walkthrough's topic and consumer group (leftovers of an earlier run), and wait until they are gone."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_consumer_groups([GROUP], request_timeout=30).values():
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].name() not in ("GROUP_ID_NOT_FOUND", "GROUP_NOT_FOUND"):
                raise
    for future in admin.delete_topics([TOPIC], operation_timeout=30).values():
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise
    deadline = time.monotonic() + 60
    while TOPIC in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{TOPIC} still exists 60 s after its deletion"
        time.sleep(0.5)


def test_the_walkthrough_is_a_bash_block_of_driftline_commands() -> None:
    lines = [line.split("#")[0].strip() for line in walkthrough().splitlines()]
    commands = [line for line in lines if line]
    assert commands[0] == "source .venv/bin/activate"
    assert sum(line.startswith("driftline ") for line in commands) >= 5


def test_the_readme_walkthrough_runs_verbatim(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    _reset(kafka_bootstrap)
    with empty_schema(database_url) as url:
        environment = {**os.environ, "DRIFTLINE_DATABASE_URL": url, "DRIFTLINE_DATA_DIR": str(tmp_path / "data")}
        done = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + walkthrough()],
            cwd=REPO, env=environment, capture_output=True, text=True, timeout=900,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-5000:]
        # What the README says happens.
        assert "wrote 50,000 credit_risk events to out/train.parquet" in done.stdout
        assert (tmp_path / "data" / "profiles" / MODEL / "v1.json").is_file()
        assert (tmp_path / "data" / "worker").is_dir()  # the worker's Faust state: in the data directory, not the working one
        counts = checkpoint(url, GROUP, TOPIC)
        assert counts is not None and counts["consumed"] == 100_000
        assert counts["consumed"] == counts["accepted"] + counts["dead_lettered"]
        alerts = set(_alert_kinds(url))
        for kind, feature in [("mean_shift", "annual_income"), ("distribution_drift", "annual_income"),
                              ("schema_change", None), ("data_quality", "channel")]:
            assert (kind, feature) in alerts, sorted(alerts, key=repr)
            assert f" {kind} " in output  # logged by the worker as it was raised
        assert "\x1b" not in output and "Traceback" not in output


def _alert_kinds(url: str) -> list[tuple[str, str | None]]:
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            return [(row.kind, row.feature) for row in connection.execute(sa.text("SELECT kind, feature FROM alerts"))]
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def _clean_up_after(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "kafka_bootstrap" in request.fixturenames:
        _reset(request.getfixturevalue("kafka_bootstrap"))
