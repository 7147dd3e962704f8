"""No single label can stop a partition: the reader's search for the label the engine fails on.

The Kafka consumers are stood in for by recorders of what the reader asks of them (seek, assign):
what is tested is the reader's protocol — restore the partition from its checkpoint, re-read the
labels from the offset stored there, process them in halving chunks until the one label is found,
dead-letter it as ``engine_failure`` and go on — with real runners, engine and checkpoints.
"""

from __future__ import annotations

from typing import Any

import pytest

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.demo import reference_profile
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.kafka.batch_reader import BatchReader
from driftline.stream.kafka.connection import KafkaConnection
from driftline.stream.kafka.settings import WorkerSettings
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.runner import (
    EncodedMessage,
    InMemoryCheckpointStore,
    InMemoryDeadLetters,
    MessageBatch,
    PartitionKey,
    PartitionRunner,
)

CATALOG = Catalog.load()
CONTRACT = CATALOG.contract("credit_risk")
TOPIC = "predictions.credit_risk"
POISON = "evt-000000321"


class _Consumer:
    """Records the positions the reader sets on the prediction consumer."""

    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def commit(self, **_: Any) -> None:
        return None


class _Labels:
    """Records where the reader asks the label consumer to read from."""

    def __init__(self) -> None:
        self.follows: list[int | None] = []

    def follow(self, model: str, partition: int, runner: PartitionRunner) -> None:
        self.follows.append(runner.label_next_offset)

    def unfollow(self, model: str, partition: int) -> None:
        return None


def test_a_label_the_engine_fails_on_is_found_set_aside_and_the_rest_processed(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = SyntheticStream(CONTRACT, seed=4, events_per_second=20)
    records = stream.records(stream.columns(1_000), stream.event_times(1_000))
    predictions = MessageBatch.of([EncodedMessage(i, encode_single_object(r, CONTRACT.schema_json), 0) for i, r in enumerate(records)])
    label_schema = CATALOG.event_schema("driftline.events.Label")
    labels = MessageBatch.of([
        EncodedMessage(i, encode_single_object({"event_id": r["event_id"], "model_name": "credit_risk", "label": 1.0,
                                                "label_time": r["event_time"] + 60_000}, label_schema), 0)
        for i, r in enumerate(records)
    ])
    real = MonitorEngine.process_labels

    def process_labels(self: MonitorEngine, ids: Any, times: Any, values: Any) -> Any:
        if POISON in list(ids):
            raise ZeroDivisionError("a bug that one label triggers")
        return real(self, ids, times, values)

    monkeypatch.setattr(MonitorEngine, "process_labels", process_labels)
    store, deadletters = InMemoryCheckpointStore(), InMemoryDeadLetters()
    profile = reference_profile(CONTRACT, SyntheticStream(CONTRACT, seed=3), rows=5_000)
    config = EngineConfig(label_horizon_ms=3_600_000)

    def make_runner(model: str, topic: str, partition: int) -> PartitionRunner:
        return PartitionRunner(key=PartitionKey("g", topic, partition), contract=CONTRACT, profiles={"v1": profile},
                               codec=Codec(CATALOG), store=store, deadletters=deadletters, config=config)

    settings = WorkerSettings(kafka=KafkaConnection("b:1"), database_url="sqlite://", models=("credit_risk",), engine=config)
    reader = BatchReader(settings, make_runner)
    follower = _Labels()
    reader._labels = follower  # type: ignore[assignment]
    consumer = _Consumer()
    owned = reader._own((TOPIC, 0))
    reader._dispatch(consumer, {(TOPIC, 0): predictions}, labels=False)  # type: ignore[arg-type]
    assert owned.runner.checkpoint() is not None  # the predictions are durable; the labels are not yet
    reader._dispatch(consumer, {("labels.credit_risk", 0): labels}, labels=True)  # type: ignore[arg-type]
    assert owned.label_replay is not None, "the failed batch did not start a search"
    # After each failure the label consumer is sent back to the checkpoint's offset and reads on from
    # there, as Kafka would; a round without a failure reads to the end.
    rounds = 1  # follows[0]: where _own started it, the delivery above
    while len(follower.follows) > rounds:
        start = follower.follows[rounds] or 0
        rounds += 1
        assert rounds < 50, "the search does not end"
        reader._dispatch(consumer, {("labels.credit_risk", 0): labels.since(start)}, labels=True)  # type: ignore[arg-type]
    assert owned.runner.label_next_offset == len(labels)
    # (The search ends at the first label past the failed batch, when one comes: nothing is pending.)
    assert owned.label_replay is not None and list(owned.label_replay.bad) == [321]
    runner = owned.runner
    [dead] = [m for m in deadletters.messages if m.rejection.reason.value == "engine_failure"]
    assert (dead.topic, dead.offset) == ("labels.credit_risk", 321)
    assert "ZeroDivisionError" in dead.rejection.detail
    assert (runner.label_counts.consumed, runner.label_counts.dead_lettered) == (1_000, 1)
    join = runner.engine.label_join
    assert join is not None and join.label_counts["joined"] == 999  # every other label, once
    assert consumer.seeks and all(offset == 1_000 for _, _, offset in consumer.seeks)  # predictions: from their checkpoint


def test_a_label_partition_pauses_while_too_many_labels_wait_for_their_predictions() -> None:
    # Flow control of the label consumer (a catch-up where labels run ahead): pause above a quarter
    # of the join's capacity waiting, resume below an eighth. No broker is needed to decide it.
    from types import SimpleNamespace

    from driftline.stream.kafka.label_reader import LabelReader

    settings = WorkerSettings(kafka=KafkaConnection("127.0.0.1:1"), database_url="sqlite://", models=("credit_risk",),
                              engine=EngineConfig(label_horizon_ms=60_000, label_capacity=1_000))
    reader = LabelReader(settings)
    try:
        join = SimpleNamespace(waiting_labels=0, capacity=1_000)
        runner = SimpleNamespace(engine=SimpleNamespace(label_join=join))
        paused = []
        for waiting in (100, 250, 251, 200, 130, 125, 124, 300):
            join.waiting_labels = waiting
            reader.throttle("credit_risk", 0, runner)  # type: ignore[arg-type]
            paused.append(bool(reader._throttled))
        assert paused == [False, False, True, True, True, True, False, True]
    finally:
        reader.close()
