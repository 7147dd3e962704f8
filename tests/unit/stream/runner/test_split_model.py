"""A model split over partitions: one runner per partition, a merger of their window partials.

The same events on one partition and on four give the same windows: identical counts (events,
accepted, rejections by reason; per field values, nulls, NaN/inf, out-of-range, unseen), minimum,
maximum, histogram distances (PSI and the others, computed from identical histograms), moments to
rounding, and quantiles within the KLL sketch's rank error of the exact ones. Restarts of partition
runners and of the merger (from their checkpoints, redelivering and republishing) change nothing.

The real broker and database are in tests/integration/test_split_model_workers.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np
import pytest

from driftline.schemas.codec import Codec, encode_single_object, in_memory_registry
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.schemas.errors import DriftlineError
from driftline.schemas.results import FieldStatus
from driftline.stream.demo.demo import LATE_EVERY, demo_episodes, demo_messages
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.budget import SECONDS_PER_MONTH, AlarmBudget
from driftline.stream.monitor.engine import EngineConfig
from driftline.stream.monitor.profile import ReferenceProfile, build_reference_profile
from driftline.stream.monitor.results import BatchResult, Checkpoint, FeatureWindow, ModelWindow
from driftline.stream.runner import (
    EncodedMessage,
    InMemoryCheckpointStore,
    InMemoryDeadLetters,
    InMemoryPartials,
    MergedModel,
    MergeRunner,
    MessageBatch,
    PartitionKey,
    PartitionRunner,
)
from driftline.stream.runner.partials import decode_partials_message

EVENTS = 36_000
TOPIC = "predictions.credit_risk"
PARTIALS = "driftline.window-partials"
CONFIG = EngineConfig(window_length_ms=60_000, allowed_lateness_ms=30_000)
KLL_RANK_ERROR = 0.0133 * 2  # DataSketches KLL, k=200: normalized rank error 1.33 % (single-sided, 99 % confidence)


@dataclasses.dataclass
class Setup:
    contract: Contract
    profiles: dict[str, ReferenceProfile]
    catalog: Catalog
    registry: object
    chunks: list[list[EncodedMessage]]

    def codec(self) -> Codec:
        """A codec per runner, as the worker makes them (a codec reports a writer schema once in its life)."""
        return Codec(self.catalog, registry_client=self.registry)


@pytest.fixture(scope="module")
def setup(catalog: Catalog, contract: Contract, profile: ReferenceProfile) -> Setup:
    registry = in_memory_registry()
    stream = SyntheticStream(contract, seed=11, events_per_second=40)
    chunks = list(demo_messages(contract, stream, EVENTS, demo_episodes(EVENTS), registry))
    return Setup(contract, {profile.model_version: profile}, catalog, registry, chunks)


def _split(chunk: list[EncodedMessage], partitions: int, next_offsets: list[int]) -> list[list[EncodedMessage]]:
    """Round-robin by the event's position (what `driftline produce --partitioner round_robin` does)."""
    parts: list[list[EncodedMessage]] = [[] for _ in range(partitions)]
    for message in chunk:
        p = message.offset % partitions
        parts[p].append(EncodedMessage(next_offsets[p], message.value, message.timestamp_ms))
        next_offsets[p] += 1
    return parts


def _one_partition(setup: Setup) -> list[BatchResult]:
    store = InMemoryCheckpointStore()
    runner = PartitionRunner(
        key=PartitionKey("g", TOPIC, 0), contract=setup.contract, profiles=setup.profiles, codec=setup.codec(),
        store=store, deadletters=InMemoryDeadLetters(), config=CONFIG,
    )
    for chunk in setup.chunks:
        runner.process(chunk)
        runner.checkpoint()
    runner.finish()
    return store.results


class FlakyStore(InMemoryCheckpointStore):
    """A checkpoint store whose commits fail while :attr:`fail` is set (a database outage)."""

    fail = False

    def commit(self, checkpoint: Checkpoint, results: Iterable[BatchResult] = (), *, snapshot: bool = False) -> None:
        if self.fail:
            raise DriftlineError("the database is down")
        super().commit(checkpoint, results, snapshot=snapshot)


class SplitRun:
    """Four partition runners and a merger, wired through in-memory ports (the worker's Kafka and PostgreSQL aside)."""

    def __init__(self, setup: Setup, partitions: int = 4) -> None:
        self.setup = setup
        self.partitions = partitions
        self.partials = InMemoryPartials()
        self.partition_store = FlakyStore()
        self.merge_store = InMemoryCheckpointStore()
        self.deadletters = InMemoryDeadLetters()
        self.runners = [self._runner(p) for p in range(partitions)]
        self.merger = self._merger()

    def _runner(self, partition: int) -> PartitionRunner:
        return PartitionRunner(
            key=PartitionKey("g", TOPIC, partition), contract=self.setup.contract, profiles=self.setup.profiles,
            codec=self.setup.codec(), store=self.partition_store, deadletters=self.deadletters, config=CONFIG,
            partials=self.partials, partitions=self.partitions,
        )

    def _merger(self) -> MergeRunner:
        return MergeRunner(
            key=PartitionKey("g", PARTIALS, 0),
            models={self.setup.contract.model: MergedModel(self.setup.contract, self.setup.profiles, CONFIG)},
            store=self.merge_store, deadletters=self.deadletters,
        )

    def pump(self) -> None:
        """The merger reads the partials topic from where its runner stands (as the consumer would)."""
        start = self.merger.next_offset or 0
        messages = [EncodedMessage(offset, value, 0) for offset, (_, value) in enumerate(self.partials.messages) if offset >= start]
        if messages:
            self.merger.process(MessageBatch.of(messages))
            self.merger.checkpoint()

    def run(self, chunks: Iterator[list[EncodedMessage]], *, checkpoint_every: int = 1) -> None:
        offsets = [0] * self.partitions
        for number, chunk in enumerate(chunks):
            for runner, part in zip(self.runners, _split(chunk, self.partitions, offsets)):
                if part:
                    runner.process(part)
            if number % checkpoint_every == 0:
                for runner in self.runners:
                    runner.checkpoint()
                self.pump()

    def end(self) -> None:
        """End of input: every partition goes idle (closes and publishes its windows); the merger closes the rest."""
        for runner in self.runners:
            assert runner.go_idle(0.0)
            runner.checkpoint()
        self.pump()

    @property
    def results(self) -> list[BatchResult]:
        return self.merge_store.results


def _windows(results: list[BatchResult]) -> tuple[dict[tuple[str, int], ModelWindow], dict[tuple[str, int, str], FeatureWindow]]:
    models = {(w.model_version, w.window_start_ms): w for r in results for w in r.model_windows}
    features = {(w.model_version, w.window_start_ms, w.feature): w for r in results for w in r.feature_windows}
    return models, features


EXACT = ("count", "nulls", "non_finite", "out_of_range", "unseen", "minimum", "maximum", "psi", "jensen_shannon", "ks",
         "wasserstein", "psi_threshold", "top_items")


def _exact_values(setup: Setup) -> dict[tuple[int, str], np.ndarray]:
    """Every accepted, usable numeric value by (window start, field), decoded independently of the engine."""
    columns: dict[tuple[int, str], list[np.ndarray]] = {}
    codec = setup.codec()
    for chunk in setup.chunks:
        batch = codec.decode_batch([m.value or b"" for m in chunk], model=setup.contract.model)
        starts = batch.event_time_ms // CONFIG.window_length_ms * CONFIG.window_length_ms
        for spec in setup.contract.monitored_fields:
            if spec.kind != "numeric":
                continue
            ok = batch.accepted & (batch.status[spec.name] == FieldStatus.OK)
            for start in np.unique(starts[ok]):
                columns.setdefault((int(start), spec.name), []).append(batch.values[spec.name][ok & (starts == start)].astype(float))
    return {key: np.sort(np.concatenate(parts)) for key, parts in columns.items()}


def test_one_and_four_partitions_give_the_same_windows(setup: Setup) -> None:
    single = _one_partition(setup)
    split = SplitRun(setup)
    split.run(iter(setup.chunks))
    split.end()

    single_models, single_features = _windows(single)
    split_models, split_features = _windows(split.results)
    assert len(single_models) >= 10
    assert split_models == single_models  # events, accepted, rejected, rejections by reason: identical
    # The rename's events, rejected for their writer schema, are in the windows of their event time on both paths.
    rename = next(e for e in demo_episodes(EVENTS) if e.kind == "rename")
    late = [p for p in range(rename.start, rename.end) if p % LATE_EVERY == 0 and p >= 10 * LATE_EVERY]
    assert sum(dict(w.rejected_by_reason).get("missing_field", 0) for w in single_models.values()) == rename.end - rename.start - len(late)
    assert any(w.rejected >= 0.6 * w.events > 0 for w in single_models.values())  # mostly the rename's (72 s of it)
    assert set(split_features) == set(single_features)
    exact = _exact_values(setup)
    late = checked = 0
    for key, one in single_features.items():
        four = split_features[key]
        for name in EXACT:
            assert getattr(four, name) == getattr(one, name), (key, name)
        for name in ("mean", "variance"):
            if getattr(one, name) is None:
                assert getattr(four, name) is None
            else:
                assert getattr(four, name) == pytest.approx(getattr(one, name), rel=1e-12, abs=1e-12), (key, name)
        values = exact.get((key[1], key[2]))
        if one.kind == "numeric" and values is not None and one.count:
            if values.size != one.count:  # a late event of this window was decoded but is not in it
                late += 1
                continue
            checked += 1
            for rank_name, q in four.quantiles.items():
                # The sketch's value must sit at the asked rank, to its error (ties span a range of ranks).
                rank = float(rank_name[1:]) / 100.0
                low, high = np.searchsorted(values, q, side="left") / values.size, np.searchsorted(values, q, side="right") / values.size
                assert low - KLL_RANK_ERROR <= rank <= high + KLL_RANK_ERROR, (key, rank_name, q)
    assert late > 0 and checked > 30  # the demo stream's trickle of late events is in the data, and out of the windows
    # Window verdicts (PSI, data quality, gaps) come from identical windows: the same alerts.
    def window_alerts_of(results: list[BatchResult]) -> list[str]:
        return sorted(repr((a.kind, a.feature, a.detector, a.window_start_ms)) for r in results for a in r.alerts if a.window_start_ms is not None)

    window_alerts = window_alerts_of(single)
    assert window_alerts_of(split.results) == window_alerts
    assert window_alerts  # the episodes do raise some
    # The rename is one schema change of the model, reported once — not once per partition.
    for results in (single, split.results):
        assert Counter(a.kind for r in results for a in r.alerts)["schema_change"] == 1
        assert len({c.writer_id for r in results for c in r.schema_changes}) == 1
    assert sum(len(r.schema_changes) for r in split.results) == 1
    assert not any(r.schema_changes for r in split.partition_store.results)  # partitions leave them to the merger
    # Counts reconcile on every partition, and the merger dead-lettered nothing.
    total = sum(len(c) for c in setup.chunks)
    assert sum(r.counts.consumed for r in split.runners) == total
    for runner in split.runners:
        assert runner.counts.consumed == runner.counts.accepted + runner.counts.dead_lettered
    assert split.merger.counts.dead_lettered == 0
    assert split.merger.counts.consumed == len(split.partials.messages)


def test_a_drift_on_every_partition_is_one_alert_episode_not_four(setup: Setup) -> None:
    single = _one_partition(setup)
    split = SplitRun(setup)
    split.run(iter(setup.chunks))
    split.end()
    # The mean shift of annual_income fires Page-Hinkley on (nearly) every one of the four partitions ...
    partitions_that_fired = {
        json.loads(value)["partition"]
        for _, value in split.partials.messages
        if json.loads(value)["type"] == "signals"
        and any(s["signal"]["feature"] == "annual_income" and s["signal"]["detector"] == "page_hinkley" for s in json.loads(value)["signals"])
    }
    assert len(partitions_that_fired) >= 3
    # ... and the model raises one alert for the episode, as on one partition.
    def shift_alerts(results: list[BatchResult]) -> int:
        return sum(1 for r in results for a in r.alerts if a.feature == "annual_income" and a.kind == "mean_shift")

    assert shift_alerts(split.results) == shift_alerts(single) == 1


def test_restarts_of_partitions_and_merger_change_nothing(setup: Setup) -> None:
    whole = SplitRun(setup)
    whole.run(iter(setup.chunks), checkpoint_every=3)
    whole.end()

    restarted = SplitRun(setup)
    half = len(setup.chunks) // 2
    restarted.run(iter(setup.chunks[:half]), checkpoint_every=3)
    # Two partitions die after publishing their partials but before their database commit; the merger
    # dies after merging more partials, before its checkpoint. What they did since their checkpoints
    # is lost (the published partials stay in the topic); they come back from their checkpoints and
    # redo it, publishing those partials again.
    restarted.partition_store.fail = True
    for p in (1, 3):
        with pytest.raises(DriftlineError):
            restarted.runners[p].checkpoint()
    restarted.partition_store.fail = False
    start = restarted.merger.next_offset or 0
    restarted.merger.process(MessageBatch.of([EncodedMessage(o, v, 0) for o, (_, v) in enumerate(restarted.partials.messages) if o >= start]))
    for p in (1, 3):
        restarted.runners[p] = restarted._runner(p)
    restarted.merger = restarted._merger()
    offsets = [0] * 4
    for chunk in setup.chunks:
        parts = _split(chunk, 4, offsets)
        for runner, part in zip(restarted.runners, parts):
            runner.process(part)  # skips what its checkpoint covers
        for runner in restarted.runners:
            runner.checkpoint()
        restarted.pump()
    restarted.end()

    assert restarted.merger.mergers["credit_risk"].repeats > 0  # republished partials were recognised
    whole_models, whole_features = _windows(whole.results)
    models, features = _windows(restarted.results)
    assert models == whole_models
    assert {k: w.deterministic_dict() for k, w in features.items()} == {k: w.deterministic_dict() for k, w in whole_features.items()}
    ids = sorted(a.alert_id for r in whole.results for a in r.alerts)
    assert sorted({a.alert_id for r in restarted.results for a in r.alerts}) == sorted(set(ids))


def test_an_idle_partition_does_not_hold_the_model_back(setup: Setup) -> None:
    split = SplitRun(setup)
    offsets = [0] * 4
    # Partition 3 gets nothing at all; the others get their share.
    for chunk in setup.chunks[: len(setup.chunks) // 2]:
        for runner, part in zip(split.runners[:3], _split(chunk, 4, offsets)[:3]):
            runner.process(part)
        for runner in split.runners[:3]:
            runner.checkpoint()
        split.pump()
    assert not split.results or not any(r.model_windows for r in split.results)  # waiting for partition 3
    assert split.runners[3].go_idle(0.0)  # nothing ever processed: it says so at once
    split.pump()
    closed = [w for r in split.results for w in r.model_windows]
    assert closed  # the model's windows close without partition 3
    assert not split.runners[0].go_idle(3600.0)  # a partition that had messages a moment ago is not idle


def test_a_message_that_is_not_a_partial_is_dead_lettered_and_counted(setup: Setup) -> None:
    split = SplitRun(setup)
    split.partials.send(b"credit_risk", b"{not json")
    split.partials.send(b"other", json.dumps({"format": 1, "type": "progress", "model": "other", "topic": "t", "partition": 0,
                                                "partitions": 1, "max_event_time_ms": 1, "idle": False}).encode())
    split.pump()
    reasons = [d.rejection.reason.value for d in split.deadletters.messages]
    assert reasons == ["corrupt", "unknown_model"]
    assert split.merger.counts.consumed == 2 and split.merger.counts.dead_lettered == 2


def test_the_partials_message_round_trips() -> None:
    with pytest.raises(ValueError, match="format"):
        decode_partials_message(b'{"format": 2}')
    with pytest.raises(ValueError, match="partition 4 is not one of 4"):
        decode_partials_message(json.dumps({"format": 1, "type": "progress", "model": "m", "topic": "t", "partition": 4,
                                            "partitions": 4}).encode())


def test_the_detectors_false_alarm_budget_is_shared_across_partitions(catalog: Catalog, contract: Contract) -> None:
    """Each partition's detectors are aimed at the model's rate: four partitions of N/4 events each raise, in all,
    as many false signals as one partition of N events — the model's budget, not four times it."""
    n = 200_000
    # A budget loose enough that a stationary stream signals often enough to count: 1e-3 per event
    # over the 37 streaming detectors at 100 events/s, as alerts per month.
    tests = AlarmBudget.for_fields(contract.monitored_fields, 1.0).tests
    config = EngineConfig(false_alarms_per_month=1e-3 / 37 * tests * 100 * SECONDS_PER_MONTH, events_per_second=100)
    profile = build_reference_profile(contract, SyntheticStream(contract, seed=3).columns(50_000, seed_offset=1), model_version="v1")
    stream = SyntheticStream(contract, seed=5, events_per_second=100)
    payloads = [
        encode_single_object(record, contract.schema_json)
        for offset in range(0, n, 10_000)
        for record in stream.records(stream.columns(10_000, offset=offset), stream.event_times(10_000, offset=offset), offset=offset)
    ]

    def signals(partitions: int) -> int:
        partials = InMemoryPartials() if partitions > 1 else None
        runners = [
            PartitionRunner(key=PartitionKey("g", TOPIC, p), contract=contract, profiles={"v1": profile}, codec=Codec(catalog),
                            store=InMemoryCheckpointStore(), deadletters=InMemoryDeadLetters(), partials=partials, partitions=partitions,
                            config=config)
            for p in range(partitions)
        ]
        count = 0
        for offset in range(0, n, 10_000):
            for p, runner in enumerate(runners):
                part = payloads[offset + p : offset + 10_000 : partitions]
                result = runner.process([EncodedMessage(offset // partitions + i, value, 0) for i, value in enumerate(part)])
                count += len(result.signals) if result is not None else 0
        return count

    one, four = signals(1), signals(4)
    # Measured: 71 and 74 (2026-11-29). Poisson noise on ~70 is ~8.5; the bounds are beyond 4 sigma.
    assert one >= 30
    assert 0.5 * one <= four <= 2.0 * one, (one, four)


def test_a_replay_of_the_partitions_merges_like_the_merge_stage(setup: Setup) -> None:
    from driftline.stream.runner import CountedDeadLetters, ReplayItem, ReplayMerge, ReplayStore, ReplayTally, replay

    live = SplitRun(setup)
    live.run(iter(setup.chunks))  # the merge stage, its messages pumped after each checkpoint (no end of input)
    store, tally, partials = InMemoryCheckpointStore(), ReplayTally(), InMemoryPartials()
    runners = {p: PartitionRunner(key=PartitionKey("replay:r", TOPIC, p), contract=setup.contract, profiles=setup.profiles,
                                  codec=setup.codec(), store=ReplayStore(store, None, tally), deadletters=CountedDeadLetters(),
                                  config=CONFIG, partials=partials, partitions=4) for p in range(4)}
    merger = MergeRunner(key=PartitionKey("replay:r", f"{TOPIC}.merge", 0),
                         models={setup.contract.model: MergedModel(setup.contract, setup.profiles, CONFIG)},
                         store=ReplayStore(store, None, tally), deadletters=CountedDeadLetters())
    offsets = [0] * 4
    items = [ReplayItem(p, MessageBatch.of(part)) for chunk in setup.chunks for p, part in enumerate(_split(chunk, 4, offsets)) if part]
    replay(runners, items, tally, merge=ReplayMerge(merger, partials), checkpoint_seconds=0.0)
    live_models, live_features = _windows(live.results)
    models, features = _windows(store.results)
    assert len(models) >= 10 and models.keys() == live_models.keys()
    assert models == live_models
    assert {key: tuple(getattr(w, name) for name in EXACT) for key, w in features.items()} == {
        key: tuple(getattr(w, name) for name in EXACT) for key, w in live_features.items()}
    assert {a.alert_id for r in store.results for a in r.alerts} == {a.alert_id for r in live.results for a in r.alerts}
    assert tally.predictions == EVENTS and partials.messages == []
