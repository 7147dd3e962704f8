"""PartitionRunner.process_labels: labels joined, bad ones dead-lettered, the label offset checkpointed with the state."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract_catalog import Catalog
from driftline.sinks import SqlCheckpointStore, create_database_engine, upgrade_database
from driftline.stream.demo.demo import reference_profile
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.engine import EngineConfig
from driftline.stream.monitor.results import BatchResult, to_canonical_json
from driftline.stream.runner import (
    CheckpointStore,
    EncodedMessage,
    InMemoryCheckpointStore,
    InMemoryDeadLetters,
    PartitionKey,
    PartitionRunner,
)

KEY = PartitionKey("g", "predictions.credit_risk", 0)
CATALOG = Catalog.load()
CONTRACT = CATALOG.contract("credit_risk")
LABEL_SCHEMA = CATALOG.event_schema("driftline.events.Label")
CONFIG = EngineConfig(label_horizon_ms=3_600_000)


@pytest.fixture(scope="module")
def streams() -> tuple[list[EncodedMessage], list[EncodedMessage]]:
    """2,000 predictions, and a label for every other one (plus one for a model that is not this one)."""
    stream = SyntheticStream(CONTRACT, seed=2, events_per_second=20)
    records = stream.records(stream.columns(2_000), stream.event_times(2_000))
    predictions = [EncodedMessage(i, encode_single_object(r, CONTRACT.schema_json), 0) for i, r in enumerate(records)]
    labels = [
        {"event_id": r["event_id"], "model_name": "credit_risk", "label": float(r["prediction_class"]), "label_time": r["event_time"] + 60_000}
        for r in records[::2]
    ]
    labels[10] = {**labels[10], "model_name": "fraud"}
    return predictions, [EncodedMessage(i, encode_single_object(label, LABEL_SCHEMA), 0) for i, label in enumerate(labels)]


def _runner(store: CheckpointStore, deadletters: InMemoryDeadLetters, config: EngineConfig = CONFIG) -> PartitionRunner:
    profile = reference_profile(CONTRACT, SyntheticStream(CONTRACT, seed=3), rows=5_000)
    return PartitionRunner(key=KEY, contract=CONTRACT, profiles={profile.model_version: profile}, codec=Codec(CATALOG),
                           store=store, deadletters=deadletters, config=config)


def _feed(runner: PartitionRunner, predictions: list[EncodedMessage], labels: list[EncodedMessage]) -> BatchResult:
    total = BatchResult()
    for start in range(0, len(predictions), 250):
        for part in (runner.process(predictions[start:start + 250]), runner.process_labels(labels[start // 2:start // 2 + 125])):
            if part is not None:
                total.extend(part)
    return total


def test_labels_join_and_a_label_for_another_model_is_dead_lettered(streams: tuple[list[EncodedMessage], list[EncodedMessage]]) -> None:
    predictions, labels = streams
    deadletters = InMemoryDeadLetters()
    result = _feed(_runner(InMemoryCheckpointStore(), deadletters), predictions, labels)
    assert result.label_counts["joined"] == 999 and result.label_counts["rejected_model_mismatch"] == 1
    # Labels equal to the decisions: every labelled window is right on every prediction.
    assert result.performance_windows and all(w.accuracy == 1.0 for w in result.performance_windows)
    (dead,) = deadletters.messages
    assert (dead.topic, dead.offset, dead.rejection.reason.value) == ("labels.credit_risk", 10, "model_mismatch")


def test_a_restart_continues_the_labels_exactly_from_the_checkpoint(
    streams: tuple[list[EncodedMessage], list[EncodedMessage]], tmp_path: Path
) -> None:
    predictions, labels = streams
    whole = _runner(InMemoryCheckpointStore(), InMemoryDeadLetters())
    _feed(whole, predictions, labels)

    url = f"sqlite:///{tmp_path / 'labels.sqlite'}"
    upgrade_database(url)
    store = SqlCheckpointStore(create_database_engine(url))
    first = _runner(store, InMemoryDeadLetters())
    _feed(first, predictions[:1_000], labels[:500])
    assert first.checkpoint() is not None
    first.process_labels(labels[500:600])  # processed, never checkpointed: lost with the "crash"

    second = _runner(store, InMemoryDeadLetters())
    assert second.restored and second.label_next_offset == 500 and second.next_offset == 1_000
    assert second.process_labels(labels[:500]) is None  # redelivered: skipped
    _feed(second, predictions, labels)  # everything again from the start: only what is new counts
    assert (second.label_counts.consumed, second.label_counts.accepted, second.label_counts.dead_lettered) == (1_000, 999, 1)
    assert to_canonical_json(second.engine.to_state()) == to_canonical_json(whole.engine.to_state())


def test_labels_without_a_label_horizon_are_refused(streams: tuple[list[EncodedMessage], list[EncodedMessage]]) -> None:
    runner = _runner(InMemoryCheckpointStore(), InMemoryDeadLetters(), EngineConfig())
    with pytest.raises(ValueError, match="label horizon"):
        runner.process_labels(streams[1][:5])


def test_labels_before_any_prediction_are_checkpointed_and_restored(
    streams: tuple[list[EncodedMessage], list[EncodedMessage]], tmp_path: Path
) -> None:
    # A label topic read ahead of its prediction topic: the labels wait in the join, and their offset
    # must be as durable as any other progress (the checkpoint then says "predictions from offset 0").
    predictions, labels = streams
    url = f"sqlite:///{tmp_path / 'early.sqlite'}"
    upgrade_database(url)
    store = SqlCheckpointStore(create_database_engine(url))
    first = _runner(store, InMemoryDeadLetters())
    first.process_labels(labels[:300])
    assert first.checkpoint() is not None
    second = _runner(store, InMemoryDeadLetters())
    assert (second.restored, second.next_offset, second.label_next_offset) == (True, 0, 300)
    assert PartitionRunner.stored_label_offset(store.load_checkpoint(KEY.consumer_group, KEY.topic, KEY.partition)) == 300
    waiting = second.engine.label_join
    assert waiting is not None and waiting.waiting_labels == 299  # the other model's label was dead-lettered
    result = second.process(predictions)
    assert result is not None and result.label_counts["joined"] == 299


def test_a_label_the_engine_fails_on_is_set_aside_on_the_label_topic(
    streams: tuple[list[EncodedMessage], list[EncodedMessage]]
) -> None:
    predictions, labels = streams
    deadletters = InMemoryDeadLetters()
    runner = _runner(InMemoryCheckpointStore(), deadletters)
    runner.process(predictions[:100])
    runner.process_labels(labels[:5])
    result = runner.set_aside_label(labels[5], "the monitor engine failed on this label: boom")
    assert result.label_counts == {"rejected_engine_failure": 1}
    assert (runner.label_next_offset, runner.label_counts.consumed, runner.label_counts.dead_lettered) == (6, 6, 1)
    (dead,) = deadletters.messages
    assert (dead.topic, dead.offset, dead.rejection.reason.value) == ("labels.credit_risk", 5, "engine_failure")
    with pytest.raises(ValueError, match="behind the runner"):
        runner.set_aside_label(labels[2], "again")
    assert runner.process_labels(labels[:6]) is None  # what was set aside counts as done
