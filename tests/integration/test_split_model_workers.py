"""A busy model over several partitions, on the real broker and database.

The credit-risk topic has four partitions; ``driftline produce``-style keyed events spread over them.
Each partition gets its own runner; their window partials go over the group's window-partials topic
to the Faust merge agent, which writes the model's windows. One uninterrupted worker (``--stop-at-end``)
and two workers of which one is SIGKILLed mid-stream must end with the same tables — the merge stage
keeps the exactly-once effect — and every partition's counts reconcile.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Producer
from worker_harness import MODEL, Worker, eventually, isolated_database, snapshot, synthetic_payloads, unique

from driftline.sinks import create_database_engine
from driftline.stream.demo.generator import Episode
from driftline.stream.kafka.connection import KafkaConnection
from driftline.stream.kafka.topics import end_offsets, ensure_topics

PARTITIONS = 4
N = 40_000
# Partitions go idle (and close their windows) only after an hour: both runs then close the same windows.
COMMON = ["--batch-events", "2000", "--allowed-lateness-seconds", "30", "--idle-partition-seconds", "3600", "--partials-partitions", "2"]


def _produce_keyed(bootstrap: str, topic: str, payloads: list[bytes], first: int) -> None:
    """Keyed by event position, as ``driftline produce`` keys by event id: librdkafka's partitioner spreads them."""
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for index, payload in enumerate(payloads, start=first):
        while True:
            try:
                producer.produce(topic, value=payload, key=f"evt-{index:09d}".encode(),
                                 on_delivery=lambda error, _: errors.append(str(error)) if error else None)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0 and not errors, errors[:3]


def _checkpoints(url: str, group: str) -> dict[tuple[str, int], dict[str, Any]]:
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT topic, partition, next_offset, consumed, accepted, dead_lettered FROM checkpoints WHERE consumer_group = :g"),
                {"g": group},
            ).mappings().all()
        return {(row["topic"], row["partition"]): dict(row) for row in rows}
    finally:
        engine.dispose()


def _merged_to_end(bootstrap: str, url: str, group: str) -> bool | None:
    partials = f"{group}.window-partials"
    ends = end_offsets(KafkaConnection(bootstrap), [(partials, p) for p in range(2)], 30.0)
    done = _checkpoints(url, group)
    return True if all(done.get(key, {}).get("next_offset", 0) >= end for key, end in ends.items()) else None


def test_four_partitions_two_workers_one_killed_equal_one_worker(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    prefix = unique("split") + "."
    topic = prefix + MODEL
    ensure_topics(KafkaConnection(kafka_bootstrap), [topic], 30.0, partitions={topic: PARTITIONS})
    payloads = synthetic_payloads(N, events_per_second=50, episodes=[Episode("mean_shift", N // 2, N, "annual_income", size=1.0)])
    payloads[1_234] = b"\xff not avro"
    group = unique("two-")
    with isolated_database(database_url) as clean_url, isolated_database(database_url) as url:
        workers = [
            Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq", group=group,
                   log=tmp_path / f"worker{index}.log", extra=COMMON)
            for index in range(2)
        ]
        try:
            # The events arrive in eight rounds while both workers run; one is killed after the third.
            for round_ in range(8):
                _produce_keyed(kafka_bootstrap, topic, payloads[round_ * N // 8 : (round_ + 1) * N // 8], round_ * N // 8)
                if round_ == 2:
                    eventually(lambda: True if any(k[0] == f"{group}.window-partials" for k in _checkpoints(url, group)) else None, 120,
                               "the merge stage checkpointed before the kill")
                    workers[0].kill()
                time.sleep(0.5)
            eventually(
                lambda: True if sum(c["next_offset"] for k, c in _checkpoints(url, group).items() if k[0] == topic) == N else None, 300,
                "every event checkpointed by the surviving worker",
            )
            eventually(lambda: _merged_to_end(kafka_bootstrap, url, group), 120, "the merge stage caught up")
            assert workers[1].stop() == 0, workers[1].log_tail()
        finally:
            for worker in workers:
                if worker.running:
                    worker.process.kill()
        survivor = workers[1].log_path.read_text()
        assert "restored from its checkpoint" in survivor  # the victim's partitions moved, from their checkpoints
        clean = Worker(bootstrap=kafka_bootstrap, database_url=clean_url, prefix=prefix, deadletter=prefix + "dlq.clean",
                       group=unique("one-"), log=tmp_path / "one.log", stop_at_end=True, extra=COMMON)
        assert clean.wait(300) == 0, clean.log_tail()

        checkpoints = _checkpoints(url, group)
        partitions = [checkpoints[(topic, p)] for p in range(PARTITIONS)]
        assert all(c["consumed"] == c["accepted"] + c["dead_lettered"] for c in partitions)
        assert sum(c["consumed"] for c in partitions) == N and sum(c["dead_lettered"] for c in partitions) == 1
        assert min(c["consumed"] for c in partitions) > N // (2 * PARTITIONS)  # the key spread the events
        rows = snapshot(url)
        assert rows == snapshot(clean_url)
        assert len(rows["model_windows"]) >= 10
        assert sum(row[4] for row in rows["model_windows"]) > N * 0.8  # the windows count the model's events, all partitions'
        assert [row for row in rows["alerts"] if row[3] == "mean_shift"]  # the drift raised an alert
