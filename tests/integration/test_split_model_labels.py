"""Labels of a model split over three partitions, on the real broker and database, under ``kill -9``.

The stream of ``test_worker_labels.py`` (60,000 predictions, labels five minutes later, out of order,
with duplicates, past-horizon, before-prediction, unknown and corrupt ones; the outcome following
income instead of the score from the middle on), but the prediction and label topics have three
partitions, co-partitioned: a prediction and its label go to the partition of the prediction id's
hash. Each partition's runner joins its own labels; the merge stage makes the model's performance,
concept-drift test and challenger comparison. Checked: every label accounted for across the
partitions; each window's metrics equal scikit-learn's on all the model's joins (not one partition's);
a concept-drift alert after the change and no data-drift alert; the challengers (one per partition)
recommended after the change and never before; and a run ``kill -9``-ed at random points writes the
same rows as an uninterrupted one.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from test_worker_labels import (
    CORRUPT,
    HORIZON,
    SEED,
    N,
    _check_challenger,
    _check_performance,
    _concept_start,
    _decode_predictions,
    _labels,
    _millis,
    _rows,
)
from worker_harness import MODEL, Worker, isolated_database, kill_at_random_points, read_topic, snapshot, synthetic_payloads, unique

from driftline.schemas.codec import Codec
from driftline.schemas.contract_catalog import Catalog
from driftline.schemas.labels import LabelCodec
from driftline.sinks import SqlCheckpointStore
from driftline.sinks.database import create_database_engine
from driftline.stream.kafka.connection import KafkaConnection
from driftline.stream.kafka.topics import ensure_topics
from driftline.stream.monitor.results import LABEL_REASONS

PARTITIONS = 3
# Idle partitions would close their windows on the wall clock: not in a test that compares two runs.
OPTIONS = ("--idle-partition-seconds", "3600", "--partials-partitions", "1")


def _partition(event_id: str) -> int:
    return zlib.crc32(event_id.encode()) % PARTITIONS


def _produce(bootstrap: str, topic: str, messages: list[tuple[int, bytes]]) -> None:
    """Each message to its partition, in order; fail unless all were acknowledged."""
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for partition, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, partition=partition, on_delivery=lambda e, _: errors.append(str(e)) if e else None)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors[:3]


@pytest.fixture(scope="module")
def streams(kafka_bootstrap: str) -> dict[str, Any]:
    prefix = unique("splitlabels") + "."
    payloads = synthetic_payloads(N, seed=17, events_per_second=20.0)
    predictions = _decode_predictions(payloads)
    labels, expected, reasons, corrupt = _labels(predictions)
    topic, label_topic = prefix + MODEL, prefix + "labels." + MODEL
    ensure_topics(KafkaConnection(kafka_bootstrap), [topic, label_topic], 30.0, partitions={topic: PARTITIONS, label_topic: PARTITIONS})
    _produce(kafka_bootstrap, topic, [(_partition(str(p["event_id"])), payload) for p, payload in zip(predictions, payloads, strict=True)])
    decoded = LabelCodec(Codec(Catalog.load())).decode_batch([b"" if i in corrupt else m for i, m in enumerate(labels)], model=MODEL)
    ids = dict(zip(decoded.rows.tolist(), decoded.prediction_ids, strict=True))
    routed = [(position % PARTITIONS if position in corrupt else _partition(ids[position]), message) for position, message in enumerate(labels)]
    _produce(kafka_bootstrap, label_topic, routed)
    # The dead-letter key of each corrupt label: topic, partition and offset.
    counters: Counter[int] = Counter()
    letters = set()
    for position, (partition, _) in enumerate(routed):
        if position in corrupt:
            letters.add(f"{label_topic}:{partition}:{counters[partition]}")
        counters[partition] += 1
    assert min(counters.values()) > len(labels) // (2 * PARTITIONS)  # the hash spread the labels
    return {"prefix": prefix, "topic": topic, "label_topic": label_topic, "labels": labels, "expected": expected,
            "reasons": reasons, "letters": letters}


def _label_state(url: str, group: str, topic: str) -> dict[str, int]:
    """The partitions' label counts, added."""
    engine = create_database_engine(url)
    total: Counter[str] = Counter()
    try:
        for partition in range(PARTITIONS):
            stored = SqlCheckpointStore(engine).load_checkpoint(group, topic, partition)
            assert stored is not None, partition
            total.update(stored.engine_state["runner_labels"])
            total.update({f"label_{k}": v for k, v in stored.engine_state["labels"]["label_counts"].items()})
    finally:
        engine.dispose()
    return dict(total)


def _progress(url: str, group: str, topic: str) -> int:
    engine = create_database_engine(url)
    try:
        store = SqlCheckpointStore(engine)
        return sum((c.next_offset if (c := store.load_checkpoint(group, topic, p)) else 0) for p in range(PARTITIONS))
    finally:
        engine.dispose()


def _worker(bootstrap: str, url: str, streams: dict[str, Any], group: str, log: Path, **options: Any) -> Worker:
    prefix = streams["prefix"]
    extra = (*HORIZON, *OPTIONS, "--challenger", "--label-topic-prefix", prefix + "labels.", *options.pop("extra", ()))
    return Worker(bootstrap=bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq." + group, group=group,
                  log=log, extra=extra, **options)


def test_a_split_models_labels_are_merged_measured_and_survive_kill_9(kafka_bootstrap: str, database_url: str,
                                                                        streams: dict[str, Any], tmp_path: Path) -> None:
    topic = streams["topic"]
    rng = random.Random(SEED + 1)
    with isolated_database(database_url) as clean_url, isolated_database(database_url) as killed_url:
        clean = _worker(kafka_bootstrap, clean_url, streams, "clean", tmp_path / "clean.log", stop_at_end=True)
        assert clean.wait(600) == 0, clean.log_tail()

        counts = _label_state(clean_url, "clean", topic)
        assert counts["next_offset"] == counts["consumed"] == len(streams["labels"])
        assert counts["dead_lettered"] == len(streams["letters"])
        assert counts["label_joined"] == len(streams["expected"])
        for reason, count in streams["reasons"].items():
            assert counts[f"label_{reason}"] == count, reason
        settled = counts["label_joined"] + sum(counts.get(f"label_{reason}", 0) for reason in LABEL_REASONS)
        assert settled + counts["dead_lettered"] == counts["consumed"], counts
        letters = read_topic(kafka_bootstrap, streams["prefix"] + "dlq.clean")
        assert {letter.key for letter in letters} == streams["letters"] and all(letter.value == CORRUPT for letter in letters)
        # One row per window for the model, with the metrics of all its partitions' labels.
        _check_performance(clean_url, streams["expected"])

        alerts = _rows(clean_url, "alerts")
        kinds = Counter(alert["kind"] for alert in alerts)
        assert kinds["concept_drift"] >= 1, alerts
        assert set(kinds) <= {"concept_drift", "performance_drop", "challenger_better"}, kinds
        change = _concept_start(streams["expected"])
        assert min(_millis(a["event_time"]) for a in alerts if a["kind"] == "concept_drift") >= change
        # Each partition's challenger learns a third of the labels: it needs a window more to catch up.
        _check_challenger(clean_url, alerts, change, learning_ms=120_000)

        kills = kill_at_random_points(
            rng, lambda: _worker(kafka_bootstrap, killed_url, streams, "killed", tmp_path / "killed.log", extra=("--batch-events", "2000")),
            lambda: _progress(killed_url, "killed", topic), N,
        )
        last = _worker(kafka_bootstrap, killed_url, streams, "killed", tmp_path / "killed.log", stop_at_end=True)
        assert last.wait(600) == 0, last.log_tail()
        print("kills:", "; ".join(kills))

        killed_counts = _label_state(killed_url, "killed", topic)
        assert {k: v for k, v in killed_counts.items() if k != "label_early"} == {k: v for k, v in counts.items() if k != "label_early"}
        clean_rows, killed_rows = snapshot(clean_url), snapshot(killed_url)
        assert clean_rows["performance_windows"] and clean_rows["challenger_windows"], "no label rows to compare"
        for name, rows in clean_rows.items():
            assert killed_rows[name] == rows, f"{name} differs after the kills ({'; '.join(kills)})"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-s"])
