"""Labels of a model split over partitions: each partition joins its own, the merger judges the model.

The same predictions and labels (ten minutes, the outcome following the applicant's income instead of
the score from the middle on) go once to one engine and once to three partition engines, keyed by a
hash of the prediction id (co-partitioned: a label goes where its prediction went), whose messages
reach one merger through the partials topic's encoding, the partitions' reads and messages
interleaved at random. Checked:

* each window's performance record — realised metrics and the estimate — is the one engine's, bit
  for bit (exact sums merge exactly);
* the concept-drift test sees the same errors in the same order: the same signals and alerts, and so
  do the estimate's drop alerts;
* the challengers (one per partition, each learning its partition's labels) are compared on every
  labelled prediction once, beat the stale champion after the change and never before, and give the
  same comparisons whatever the interleaving — including a partition that restarts from an earlier
  state and sends again what it had sent (recognised, counted as repeats).
"""

from __future__ import annotations

import dataclasses
import json
import random
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from label_streams import concept_change_stream

from driftline.schemas.codec import Codec
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.merge import WindowMerger
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import BatchResult, PerformanceWindow, to_canonical_json
from driftline.stream.runner.merge_runner import _decoded
from driftline.stream.runner.partials import decode_partials_message, partial_messages, progress_message
from driftline.stream.runner.ports import PartitionKey

N = 12_000  # 20 events/s: ten minutes, ten windows
CHANGE = N // 2
DELAY_MS = 30_000
P = 3
CONFIG = EngineConfig(window_length_ms=60_000, allowed_lateness_ms=60_000, label_horizon_ms=600_000, label_grace_ms=60_000,
                      challenger="default")
SPLIT = EngineConfig(**{**CONFIG.__dict__, "partial_windows": True, "partitions": P})


@pytest.fixture(scope="module")
def stream(contract: Contract) -> dict[str, Any]:
    """The predictions and labels, and the partition of each (a hash of the prediction id)."""
    events = concept_change_stream(contract, N, CHANGE)
    return {**events, "partition": np.array([zlib.crc32(i.encode()) % P for i in events["ids"]])}


def _steps(rng: random.Random, rows: np.ndarray, kind: str) -> list[tuple[str, np.ndarray]]:
    out, start = [], 0
    while start < len(rows):
        end = min(len(rows), start + rng.randint(1, 900))
        out.append((kind, rows[start:end]))
        start = end
    return out


class Split:
    """P partition engines and one merger; every message goes through the partials topic's encoding."""

    def __init__(self, contract: Contract, profile: ReferenceProfile, catalog: Catalog, stream: dict[str, Any]) -> None:
        self.contract, self.profile, self.stream = contract, profile, stream
        self.codec = Codec(catalog)
        self.engines = [MonitorEngine(contract, profile, SPLIT) for _ in range(P)]
        self.merger = WindowMerger(contract, {profile.model_version: profile}, CONFIG)
        self.out = BatchResult()
        self.queue: list[bytes] = []  # the partials topic: messages in the order sent

    def feed(self, partition: int, kind: str, rows: np.ndarray) -> None:
        engine, s = self.engines[partition], self.stream
        if kind == "p":
            result = engine.process(self.codec.decode_batch([s["payloads"][i] for i in rows], model=self.contract.model))
        else:
            result = engine.process_labels([s["ids"][i] for i in rows], s["times"][rows] + DELAY_MS, s["labels"][rows])
        self.send(partition, result)

    def send(self, partition: int, result: BatchResult, *, idle: bool = False) -> None:
        key = PartitionKey("g", "predictions.credit_risk", partition)
        engine = self.engines[partition]
        self.queue.extend(value for _, value in partial_messages(key, self.contract.model, P, result))
        self.queue.append(progress_message(key, self.contract.model, P, engine.max_event_time_ms, idle=idle,
                                           labels=engine.label_progress)[1])

    def deliver(self, count: int | None = None) -> None:
        taken, self.queue = (self.queue, []) if count is None else (self.queue[:count], self.queue[count:])
        for value in taken:
            message = decode_partials_message(value)
            _decoded(message)(self.merger, message, self.out)

    def restart_merger(self) -> None:
        state = json.loads(json.dumps(self.merger.to_state()))
        self.merger = WindowMerger.from_state(state, self.contract, {self.profile.model_version: self.profile}, CONFIG)


def _split_run(contract: Contract, profile: ReferenceProfile, catalog: Catalog, stream: dict[str, Any], seed: int,
               restart: Callable[[Split, int], None] | None = None) -> Split:
    rng = random.Random(seed)
    split = Split(contract, profile, catalog, stream)
    plans = []
    for p in range(P):
        predictions = np.flatnonzero(stream["partition"] == p)
        labels = stream["label_order"][stream["partition"][stream["label_order"]] == p]
        # Each topic partition in its order; the two read in chunks interleaved at random (labels behind or ahead).
        pending, labelled, plan = _steps(rng, predictions, "p"), _steps(rng, labels, "l"), []
        while pending or labelled:
            plan.append(labelled.pop(0) if labelled and (not pending or rng.random() < 0.45) else pending.pop(0))
        plans.append(plan)
    step = 0
    while any(plans):
        partition = rng.choice([p for p in range(P) if plans[p]])
        kind, rows = plans[partition].pop(0)
        split.feed(partition, kind, rows)
        split.deliver(rng.randint(0, len(split.queue)))
        if restart is not None:
            restart(split, step)
        step += 1
    for p in range(P):
        split.send(p, split.engines[p].flush())
    split.deliver()
    return split


def _one_engine(contract: Contract, profile: ReferenceProfile, catalog: Catalog, stream: dict[str, Any]) -> BatchResult:
    engine = MonitorEngine(contract, profile, CONFIG)
    codec = Codec(catalog)
    total = BatchResult()
    for start in range(0, N, 1_000):
        total.extend(engine.process(codec.decode_batch(stream["payloads"][start:start + 1_000], model=contract.model)))
        rows = stream["label_order"][max(0, start - 2_000):start]  # labels behind their predictions
        total.extend(engine.process_labels([stream["ids"][i] for i in rows], stream["times"][rows] + DELAY_MS, stream["labels"][rows]))
    rows = stream["label_order"][N - 2_000:]
    total.extend(engine.process_labels([stream["ids"][i] for i in rows], stream["times"][rows] + DELAY_MS, stream["labels"][rows]))
    total.extend(engine.flush())
    return total


def _last_per_window(windows: list[PerformanceWindow]) -> dict[int, PerformanceWindow]:
    return {w.window_start_ms: w for w in windows}  # a window is reported again as its labels come: the last counts


def _label_alerts(result: BatchResult, kinds: tuple[str, ...]) -> str:
    signals = [s for s in result.signals if s.detector == "concept_error"]
    return to_canonical_json([signals, [a for a in result.alerts if a.kind in kinds]])


def test_a_split_model_judges_its_labels_as_one_engine_would(
    contract: Contract, labelled: ReferenceProfile, catalog: Catalog, stream: dict[str, Any]
) -> None:
    one = _one_engine(contract, labelled, catalog, stream)
    split = _split_run(contract, labelled, catalog, stream, seed=1)
    merged = split.out

    expected, got = _last_per_window(one.performance_windows), _last_per_window(merged.performance_windows)
    assert sorted(got) == sorted(expected) and len(expected) >= 10
    assert sum(w.count for w in expected.values()) == N
    for start, window in expected.items():
        assert got[start] == window, start  # realised metrics and estimate, bit for bit

    # The concept test: the same errors in the same order give the same signals and alerts.
    assert {a.kind for a in one.alerts} >= {"concept_drift", "challenger_better"}
    assert _label_alerts(merged, ("concept_drift", "performance_drop")) == _label_alerts(one, ("concept_drift", "performance_drop"))
    assert split.merger.labels is not None and split.merger.labels.late == 0 and split.merger.labels.pending == 0

    # The challengers: per partition, compared on every labelled prediction once, merged per window.
    windows = merged.challenger_windows
    assert sum(w.count for w in windows) == N
    change_ms = int(stream["times"][CHANGE])
    before = [w for w in windows if w.window_start_ms + 60_000 <= change_ms]
    after = [w for w in windows if w.window_start_ms > change_ms and w.count >= 1_000]
    assert len(before) >= 4 and not any(w.challenger_better for w in before)
    # Measured (seed 1): before the change the partitions' challengers are right on 0.53-0.76 of the labelled
    # predictions (fewer labels each: a third), the champion on 0.76-0.80; after it the champion on 0.30-0.33,
    # the challengers on 0.82-0.86 from the second window after the change.
    assert len(after) == 4 and all(w.challenger_better for w in after), [(w.champion_accuracy, w.challenger_accuracy) for w in after]
    recommended = [a for a in merged.alerts if a.kind == "challenger_better"]
    assert recommended and all(a.window_start_ms is not None and a.window_start_ms + 60_000 > change_ms for a in recommended)


def test_what_a_split_model_reports_does_not_depend_on_interleaving_or_restarts(
    contract: Contract, labelled: ReferenceProfile, catalog: Catalog, stream: dict[str, Any]
) -> None:
    def outcome(split: Split) -> str:
        result = split.out
        return to_canonical_json([sorted(_last_per_window(result.performance_windows).items()), result.challenger_windows,
                                  [s for s in result.signals if s.detector == "concept_error"], result.alerts,
                                  sorted(result.resolved_alerts, key=lambda r: r.alert_id)])

    expected = outcome(_split_run(contract, labelled, catalog, stream, seed=2))
    assert outcome(_split_run(contract, labelled, catalog, stream, seed=3)) == expected

    saved: dict[str, Any] = {}

    def restarts(split: Split, step: int) -> None:
        # Partition 1 checkpoints at step 10 and is restarted from it at step 25: what it sent meanwhile
        # comes again (the same inputs, processed again, in one batch per kind); the merger restarts too.
        if step == 10:
            saved["state"] = json.loads(json.dumps(split.engines[1].to_state()))
            saved["sent"] = []
            saved["mark"] = True
        if step == 25:
            split.restart_merger()

    # Record what partition 1 was fed after its checkpoint, to feed it again after its restart.
    original_feed = Split.feed

    def recording_feed(self: Split, partition: int, kind: str, rows: np.ndarray) -> None:
        if partition == 1 and saved.get("mark") and not saved.get("replayed"):
            saved["sent"].append((kind, rows))
            if len(saved["sent"]) == 6:  # crash: back to the checkpoint, and the same inputs again
                original_feed(self, partition, kind, rows)
                self.engines[1] = MonitorEngine.from_state(saved["state"], self.contract, self.profile, SPLIT)
                saved["replayed"] = True
                for again_kind in ("p", "l"):
                    again = [r for k, r in saved["sent"] if k == again_kind]
                    if again:
                        original_feed(self, 1, again_kind, np.concatenate(again))
                return
        original_feed(self, partition, kind, rows)

    Split.feed = recording_feed  # type: ignore[method-assign]
    try:
        restarted = _split_run(contract, labelled, catalog, stream, seed=2, restart=restarts)
    finally:
        Split.feed = original_feed  # type: ignore[method-assign]
    assert saved.get("replayed"), "the restart was not exercised"
    assert restarted.merger.labels is not None and restarted.merger.labels.repeats > 0
    assert outcome(restarted) == expected


def test_a_merger_without_labels_ignores_the_label_messages_and_counts_them(
    contract: Contract, labelled: ReferenceProfile, catalog: Catalog, stream: dict[str, Any]
) -> None:
    # Partitions that join labels beside a merger configured without (a rolling restart with a new config).
    split = _split_run(contract, labelled, catalog, stream, seed=4)
    unlabelled = WindowMerger(contract, {labelled.model_version: labelled}, dataclasses.replace(CONFIG, label_horizon_ms=None,
                                                                                                 challenger=None))
    late = Split(contract, labelled, catalog, stream)
    late.merger = unlabelled
    late.feed(0, "p", np.flatnonzero(stream["partition"] == 0)[:500])
    late.feed(0, "l", stream["label_order"][stream["partition"][stream["label_order"]] == 0][:300])
    late.deliver()
    assert unlabelled.ignored_labels > 0 and unlabelled.labels is None
    assert not late.out.performance_windows and not late.out.challenger_windows
    assert split.out.performance_windows  # (the same messages judge the model where labels are joined)
