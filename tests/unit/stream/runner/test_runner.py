"""PartitionRunner with in-memory and SQLite ports: redelivered messages are skipped, a restart
continues exactly, dead letters are durable before a checkpoint, batching does not matter.

The real Kafka dead-letter topic and PostgreSQL are exercised in tests/integration
(test_bad_input.py, test_exactly_once.py, test_one_shell.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract_catalog import Catalog
from driftline.schemas.errors import DriftlineError
from driftline.sinks import SqlCheckpointStore, create_database_engine, upgrade_database
from driftline.stream.demo.demo import reference_profile
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.results import BatchResult, Checkpoint, to_canonical_json
from driftline.stream.runner import (
    CheckpointStore,
    EncodedMessage,
    InMemoryCheckpointStore,
    InMemoryDeadLetters,
    PartitionKey,
    PartitionRunner,
)

KEY = PartitionKey("g", "predictions.credit_risk", 0)


class RecordedDeadLetters(InMemoryDeadLetters):
    """Counts how many dead letters were made durable by the time of each flush."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.flushed = 0
        self.fail = fail

    def flush(self) -> None:
        if self.fail:
            raise DriftlineError("dead-letter topic unreachable")
        self.flushed = len(self.messages)


@pytest.fixture(scope="module")
def messages() -> list[EncodedMessage]:
    contract = Catalog.load().contract("credit_risk")
    stream = SyntheticStream(contract, seed=2, events_per_second=20)
    records = stream.records(stream.columns(3_000), stream.event_times(3_000))
    payloads = [encode_single_object(r, contract.schema_json) for r in records]
    payloads[100] = b"\xff garbage"
    return [EncodedMessage(offset, payload, 0) for offset, payload in enumerate(payloads)]


def _runner(store: CheckpointStore, deadletters: InMemoryDeadLetters, on_result: list[BatchResult] | None = None) -> PartitionRunner:
    catalog = Catalog.load()
    contract = catalog.contract("credit_risk")
    profile = reference_profile(contract, SyntheticStream(contract, seed=3), rows=5_000)
    return PartitionRunner(
        key=KEY, contract=contract, profiles={profile.model_version: profile}, codec=Codec(catalog),
        store=store, deadletters=deadletters, on_result=None if on_result is None else on_result.append,
    )


def _sqlite_store(path: Path) -> SqlCheckpointStore:
    url = f"sqlite:///{path}"
    upgrade_database(url)
    return SqlCheckpointStore(create_database_engine(url))


def test_a_restart_skips_what_the_checkpoint_covers_and_continues_exactly(messages: list[EncodedMessage], tmp_path: Path) -> None:
    whole = _runner(InMemoryCheckpointStore(), RecordedDeadLetters())
    whole.process(messages)

    store, deadletters = _sqlite_store(tmp_path / "restarted.sqlite"), RecordedDeadLetters()
    first = _runner(store, deadletters)
    first.process(messages[:1_200])
    assert first.checkpoint() is not None and deadletters.flushed == 1  # dead letters acknowledged first
    first.process(messages[1_200:1_500])  # processed, never checkpointed: lost with the "crash"

    second = _runner(store, deadletters)
    assert second.restored and second.next_offset == 1_200
    assert second.process(messages[:1_200]) is None and second.skipped == 1_200  # redelivered: skipped
    second.process(messages[1_000:])  # overlapping redelivery: only offsets >= 1200 count
    assert second.skipped == 1_400
    assert (second.counts.consumed, second.counts.accepted, second.counts.dead_lettered) == (3_000, 2_999, 1)
    assert to_canonical_json(second.engine.to_state()) == to_canonical_json(whole.engine.to_state())
    assert [m.offset for m in deadletters.messages] == [100]


def test_offsets_must_increase(messages: list[EncodedMessage]) -> None:
    runner = _runner(InMemoryCheckpointStore(), RecordedDeadLetters())
    with pytest.raises(ValueError, match=r"offsets of predictions.credit_risk\[0\] are not increasing"):
        runner.process([messages[5], messages[3]])


def test_nothing_new_writes_no_checkpoint(messages: list[EncodedMessage]) -> None:
    store = InMemoryCheckpointStore()
    runner = _runner(store, RecordedDeadLetters())
    assert runner.checkpoint() is None
    assert store.load_checkpoint(*vars(KEY).values()) is None
    runner.process(messages[:10])
    written = runner.checkpoint()
    assert written is not None and written.next_offset == 10 and runner.checkpoint() is None


def test_a_failed_dead_letter_flush_commits_nothing(messages: list[EncodedMessage]) -> None:
    store = InMemoryCheckpointStore()
    runner = _runner(store, RecordedDeadLetters(fail=True))
    runner.process(messages[:200])  # offset 100 is rejected
    with pytest.raises(DriftlineError, match="dead-letter topic unreachable"):
        runner.checkpoint()
    assert store.checkpoints == {} and store.results == []


def test_results_are_committed_with_the_checkpoint_that_covers_them(messages: list[EncodedMessage]) -> None:
    store, produced = InMemoryCheckpointStore(), []
    runner = _runner(store, RecordedDeadLetters(), produced)
    for start in range(0, 2_000, 500):
        runner.process(messages[start : start + 500])
    assert store.results == []  # nothing durable before a checkpoint
    runner.checkpoint()
    assert store.results == produced and len(produced) == 4
    closed = runner.finish()  # end of input: the open windows close and are committed too
    assert closed.model_windows and store.results[-1] is closed
    assert store.load_checkpoint(*vars(KEY).values()) is not None


@pytest.mark.parametrize("sizes", [(3_000,), (1, 99, 1, 899, 2_000), (250,) * 12])
def test_any_batching_gives_the_same_results(messages: list[EncodedMessage], sizes: tuple[int, ...]) -> None:
    def run(cuts: tuple[int, ...]) -> str:
        store = InMemoryCheckpointStore()
        runner = _runner(store, RecordedDeadLetters())
        start = 0
        for size in cuts:
            runner.process(messages[start : start + size])
            start += size
            runner.checkpoint()
        runner.finish()
        merged = BatchResult()
        for result in store.results:
            merged.extend(result)
        return to_canonical_json(merged)

    assert run(sizes) == run((3_000,))


def test_a_message_set_aside_is_dead_lettered_and_counted_but_never_reaches_the_engine(messages: list[EncodedMessage]) -> None:
    deadletters, store = RecordedDeadLetters(), InMemoryCheckpointStore()
    runner = _runner(store, deadletters)
    runner.process(messages[:50])
    before = to_canonical_json(runner.engine.to_state())
    result = runner.set_aside(messages[50], "the monitor engine failed on this event: ValueError: boom")
    assert to_canonical_json(runner.engine.to_state()) == before
    assert result.rejected_by_reason == {"engine_failure": 1}
    assert (runner.counts.consumed, runner.counts.dead_lettered, runner.next_offset) == (51, 1, 51)
    letter = deadletters.messages[-1]
    assert (letter.offset, letter.rejection.reason.value, letter.payload) == (50, "engine_failure", messages[50].value)
    runner.process(messages[51:60])
    assert runner.checkpoint() is not None and runner.counts.consumed == 60
    with pytest.raises(ValueError, match="behind the runner"):
        runner.set_aside(messages[10], "too late")


def test_a_failed_commit_keeps_the_results_for_the_next_try(messages: list[EncodedMessage]) -> None:
    class FlakyStore(InMemoryCheckpointStore):
        fail = True

        def commit(self, checkpoint: Checkpoint, results: Iterable[BatchResult] = (), *, snapshot: bool = False) -> None:
            if self.fail:
                raise DriftlineError("database down")
            super().commit(checkpoint, results, snapshot=snapshot)

    store = FlakyStore()
    runner = _runner(store, RecordedDeadLetters())
    produced: list[BatchResult] = []
    runner.on_result = produced.append
    runner.process(messages[:500])
    with pytest.raises(DriftlineError, match="database down"):
        runner.checkpoint()
    store.fail = False
    assert runner.checkpoint() is not None
    assert store.results == produced  # nothing was lost with the failed try


def test_the_incidents_state_changes_are_published_before_their_checkpoint_commits() -> None:
    from driftline.stream.monitor.engine import EngineConfig
    from driftline.stream.runner import InMemoryPartials
    from driftline.stream.runner.alert_messages import decode_alert_message

    catalog = Catalog.load()
    contract = catalog.contract("credit_risk")
    stream = SyntheticStream(contract, seed=2, events_per_second=20)
    records = stream.records(stream.columns(4_000), stream.event_times(4_000))
    for record in records[2_000:]:  # the producer was silent for five minutes
        record["event_time"] += 300_000  # (epoch milliseconds)
    encoded = [EncodedMessage(o, encode_single_object(r, contract.schema_json), 0) for o, r in enumerate(records)]
    profile = reference_profile(contract, SyntheticStream(contract, seed=3), rows=5_000)

    published_at_commit: list[int] = []

    class CountingStore(InMemoryCheckpointStore):
        def commit(self, checkpoint: Checkpoint, results: Iterable[BatchResult] = (), *, snapshot: bool = False) -> None:
            published_at_commit.append(len(alerts.messages))
            super().commit(checkpoint, results, snapshot=snapshot)

    alerts = InMemoryPartials()
    store = CountingStore()
    runner = PartitionRunner(
        key=KEY, contract=contract, profiles={profile.model_version: profile}, codec=Codec(catalog), store=store,
        deadletters=InMemoryDeadLetters(), config=EngineConfig(allowed_lateness_ms=0, alert_cooldown_ms=30_000), alerts=alerts,
    )
    for start in range(0, len(encoded), 500):
        runner.process(encoded[start:start + 500])
        runner.checkpoint()
    states = [(key.decode(), decode_alert_message(value)["state"]) for key, value in alerts.messages]
    gaps = [a for result in store.results for a in result.alerts if a.kind == "no_data"]
    assert len(gaps) == 1 and (gaps[0].alert_id, "firing") in states and (gaps[0].alert_id, "resolved") in states
    resolved = [decode_alert_message(v) for _, v in alerts.messages if decode_alert_message(v)["state"] == "resolved"]
    assert all(m["signals"] >= 1 and m["resolved_at"] is not None for m in resolved)
    # Every message was published (and flushed) before the checkpoint that covers it committed.
    assert published_at_commit[-1] == len(alerts.messages) == sum(
        len(r.alerts) + len(r.resolved_alerts) for r in store.results)


def test_snapshots_are_asked_for_at_the_first_checkpoint_then_once_an_interval(
    messages: list[EncodedMessage], monkeypatch: pytest.MonkeyPatch
) -> None:
    import driftline.stream.runner.runner as runner_module

    clock = [1_000.0]
    monkeypatch.setattr(runner_module.time, "monotonic", lambda: clock[0])
    store = InMemoryCheckpointStore()
    catalog = Catalog.load()
    contract = catalog.contract("credit_risk")
    profile = reference_profile(contract, SyntheticStream(contract, seed=3), rows=5_000)
    runner = PartitionRunner(key=KEY, contract=contract, profiles={profile.model_version: profile}, codec=Codec(catalog),
                             store=store, deadletters=RecordedDeadLetters(), snapshot_interval_seconds=60.0)
    for end, seconds in ((500, 30.0), (1_000, 30.0), (1_500, 10.0), (2_000, 10.0)):
        runner.process(messages[end - 500:end])
        runner.checkpoint()
        clock[0] += seconds
    # At 500 (the first), then at 1,500 (60 s after it); not at 1,000 or 2,000.
    assert [snapshot.next_offset for snapshot in store.snapshots] == [500, 1_500]
    state = store.snapshots[0].engine_state
    assert state["runner_start"] == {"offset": 0, "label_offset": None}
    assert state["runner_inputs"]["config"]["window_length_ms"] == runner.config.window_length_ms


def test_a_runner_started_from_a_snapshot_computes_what_the_run_computed_after_it(messages: list[EncodedMessage]) -> None:
    whole_store = InMemoryCheckpointStore()
    whole = _runner(whole_store, RecordedDeadLetters())
    whole.snapshot_interval_seconds = 1e-9  # a snapshot at every checkpoint
    committed_by_offset = {}
    for start in range(0, 3_000, 700):
        whole.process(messages[start:start + 700])
        whole.checkpoint()
        committed_by_offset[whole.next_offset] = len(whole_store.results)
    snapshot = next(s for s in whole_store.snapshots if s.next_offset == 1_400)
    replayed_store = InMemoryCheckpointStore(checkpoints={(KEY.consumer_group, KEY.topic, KEY.partition): snapshot})
    replayed = _runner(replayed_store, RecordedDeadLetters())
    assert replayed.restored and replayed.start.offset == 0
    assert replayed.inputs.differences(whole.inputs) == []
    for start in range(1_400, 3_000, 400):  # other batches than the run's
        replayed.process(messages[start:start + 400])
    replayed.checkpoint()
    after_snapshot = whole_store.results[committed_by_offset[1_400]:]
    merged_whole, merged_replayed = BatchResult(), BatchResult()
    for result in after_snapshot:
        merged_whole.extend(result)
    for result in replayed_store.results:
        merged_replayed.extend(result)
    assert merged_whole.feature_windows and merged_whole.model_windows
    for name in ("feature_windows", "model_windows", "alerts", "resolved_alerts", "schema_changes"):
        assert to_canonical_json(getattr(merged_replayed, name)) == to_canonical_json(getattr(merged_whole, name)), name
    assert to_canonical_json(replayed.engine.to_state()) == to_canonical_json(whole.engine.to_state())
