"""Exactly-once effect on the real broker and database: ``kill -9`` the worker at random points.

One topic of N = 200,000 events (a mean shift, a category flood, and every 1,000th message corrupt,
so the dead-letter path is crossed by the kills too) is processed twice, each run with its own
consumer group, database schema and dead-letter topic:

* once without interruption;
* once with the worker SIGKILLed at several random points (one during start-up, the others after
  random amounts of progress plus a random delay, so some kills land between checkpoints) and
  restarted each time.

Afterwards both databases hold the same window aggregates, model windows, alerts and schema
changes, and consumed = accepted + dead-lettered = N, with the dead-lettered events exactly the
corrupt ones (distinct source keys: dead-letter delivery is at-least-once, keyed by source offset).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from worker_harness import (
    MODEL,
    RESULT_TABLES,
    Worker,
    checkpoint,
    isolated_database,
    produce,
    read_topic,
    snapshot,
    synthetic_payloads,
    unique,
    wait_for_progress,
)

from driftline.stream.demo.generator import Episode

N = 200_000
CORRUPT_EVERY = 1_000
SEED = 20261123

def _events(n: int = N) -> list[bytes | None]:
    episodes = [
        Episode("mean_shift", int(n * 0.30), int(n * 0.45), "annual_income", size=1.0),
        Episode("new_category", int(n * 0.60), int(n * 0.70), "channel", size=0.3, new_name="partner_api"),
    ]
    payloads: list[bytes | None] = list(synthetic_payloads(n, episodes=episodes))
    for index in range(CORRUPT_EVERY - 1, n, CORRUPT_EVERY):
        payloads[index] = b"\x00\x00\x00\x00\x07garbage"  # Confluent framing, unknown schema id, no registry
    return payloads


def test_kill_9_at_random_points_changes_nothing(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    prefix = unique("eo") + "."
    topic = prefix + MODEL
    produce(kafka_bootstrap, topic, _events())
    rng = random.Random(SEED)

    with isolated_database(database_url) as clean_url, isolated_database(database_url) as killed_url:
        # The reference run.
        clean = Worker(bootstrap=kafka_bootstrap, database_url=clean_url, prefix=prefix, deadletter=prefix + "dlq.clean",
                       group="clean", log=tmp_path / "clean.log", stop_at_end=True)
        assert clean.wait(600) == 0, clean.log_tail()

        # The same topic, killed with SIGKILL at random points and restarted each time.
        kills: list[str] = []
        killed_at: list[int | None] = []  # the checkpoint's offset after each kill
        plan = [("start-up", rng.uniform(0.5, 4.0))] + [("progress", fraction) for fraction in sorted(rng.uniform(0.1, 0.9) for _ in range(3))]
        for kind, value in plan:
            # Small batches: at the worker's speed a 200,000-event topic is four 50,000-event batches,
            # and a kill meant for mid-stream found it finished (1 of 2 partial restarts, measured under load).
            worker = Worker(bootstrap=kafka_bootstrap, database_url=killed_url, prefix=prefix, deadletter=prefix + "dlq.killed",
                            group="killed", log=tmp_path / "killed.log", extra=("--batch-events", "5000"))
            if kind == "start-up":
                time.sleep(value)
            else:
                wait_for_progress(killed_url, "killed", topic, value * N, worker)
                time.sleep(rng.uniform(0.0, 0.6))  # land between checkpoints (they are 0.5 s apart)
            assert worker.running, worker.log_tail()
            worker.kill()
            at = checkpoint(killed_url, "killed", topic)
            killed_at.append(at["next_offset"] if at else None)
            kills.append(f"{kind} {value:.2f}: checkpoint at {killed_at[-1]}")
        last = Worker(bootstrap=kafka_bootstrap, database_url=killed_url, prefix=prefix, deadletter=prefix + "dlq.killed",
                      group="killed", log=tmp_path / "killed.log", stop_at_end=True)
        assert last.wait(600) == 0, last.log_tail()
        print("kills:", "; ".join(kills))
        # The kills really landed mid-stream: at least two restarts resumed from a partial checkpoint.
        assert sum(1 for offset in killed_at if offset is not None and 0 < offset < N) >= 2, kills

        # Counts, in both runs, with the corrupt messages exactly (consumed = accepted + dead-lettered
        # holds for every stored checkpoint: the table's CHECK constraint, tested in test_postgres.py).
        corrupt = N // CORRUPT_EVERY
        for url, group in ((clean_url, "clean"), (killed_url, "killed")):
            counts = checkpoint(url, group, topic)
            assert counts is not None
            assert counts["next_offset"] == N
            assert counts["consumed"] == N
            assert counts["dead_lettered"] == corrupt

        expected_keys = {f"{topic}:0:{offset}" for offset in range(CORRUPT_EVERY - 1, N, CORRUPT_EVERY)}
        for name in ("dlq.clean", "dlq.killed"):
            letters = read_topic(kafka_bootstrap, prefix + name)
            assert {letter.key for letter in letters} == expected_keys
            assert all(letter.headers["driftline.reason"] == "unknown_schema_id" for letter in letters)
            assert all(letter.value == b"\x00\x00\x00\x00\x07garbage" for letter in letters)

        clean_rows, killed_rows = snapshot(clean_url), snapshot(killed_url)
        assert len(clean_rows["window_aggregates"]) > 500  # many windows were compared, not an empty table
        assert {row[3] for row in clean_rows["alerts"]} >= {"mean_shift"}, clean_rows["alerts"]
        for name in RESULT_TABLES:
            assert killed_rows[name] == clean_rows[name], f"{name} differs after the kills ({'; '.join(kills)})"


def test_a_second_worker_joining_and_the_first_leaving_changes_nothing(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    """Rebalances: the partition's owner checkpoints on revocation, the next owner restores from the database."""
    n = 60_000
    prefix = unique("handover") + "."
    topic = prefix + MODEL
    produce(kafka_bootstrap, topic, _events(n))
    with isolated_database(database_url) as clean_url, isolated_database(database_url) as shared_url:
        clean = Worker(bootstrap=kafka_bootstrap, database_url=clean_url, prefix=prefix, deadletter=prefix + "dlq.clean",
                       group="clean", log=tmp_path / "clean.log", stop_at_end=True)
        assert clean.wait(300) == 0, clean.log_tail()

        shared = dict(bootstrap=kafka_bootstrap, database_url=shared_url, prefix=prefix, deadletter=prefix + "dlq.shared", group="shared")
        first = Worker(**shared, log=tmp_path / "first.log")  # type: ignore[arg-type]
        wait_for_progress(shared_url, "shared", topic, 0.2 * n, first)
        second = Worker(**shared, log=tmp_path / "second.log", stop_at_end=True)  # type: ignore[arg-type]
        wait_for_progress(shared_url, "shared", topic, 0.6 * n, first if first.running else second)
        assert first.stop() == 0, first.log_tail()  # a graceful leave: the partition goes to the second
        assert second.wait(300) == 0, second.log_tail()
        logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
        assert "restored from its checkpoint" in logs, "the partition never changed hands"

        counts = checkpoint(shared_url, "shared", topic)
        assert counts is not None and counts["consumed"] == n and counts["dead_lettered"] == n // CORRUPT_EVERY
        assert snapshot(shared_url) == snapshot(clean_url)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-s"])
