"""The labels of a model split over partitions, merged into the model's (the label half of :class:`~.merge.WindowMerger`).

Labels are co-partitioned with their predictions, so each partition's engine joins its own; what
it cannot do alone is judge the model. It sends its share to the merger instead
(:class:`~driftline.stream.monitor.results.PerformancePartial`, ``ObservedErrors``,
``ChallengerPartial``), and this merges them so the model gets what one engine on all its labels
would have given:

* **performance per window**: each partition's accumulators (exact sums: counts, Shewchuk partials,
  integer quanta) as they stand, the latest per partition replacing the one before; the model's
  record is their sum — the same bits as one engine's, in any order. Estimates are checked for a
  significant drop when the model closes the window (every partition has passed it).
* **the concept-drift test**: each partition releases its labels in observation order (label time,
  then prediction id) with their errors; the merger merges the partitions' streams in that same
  order up to the smallest of their release bounds, and runs the one model-level test on it — the
  sequence one engine would have tested.
* **the challenger**: a River model per partition learns that partition's labels (so from 1/P of
  the model's, with keys spread evenly; a model on one topic partition learns them all) and compares
  itself with the champion on that partition's windows; the merger adds the partitions' counts once
  every partition has completed a window and runs the one McNemar test per window. Learning across
  partitions would need every labelled prediction's features in one place — the traffic the split
  exists to avoid.

Partitions that are idle do not hold the model back, as for windows; what one of them sends after
it wakes, behind what the model has already released, is counted (``late``), never silently
dropped. What a partition sends again after a restart from its checkpoint is recognised (each
partition's errors and completed windows come in increasing order; a performance partial replaces
the one before) and counted in ``repeats``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import EngineConfig
from .estimation import EstimatedPerformance, estimate_of_sums
from .label_verdicts import LabelVerdicts
from .performance import merge_accumulators, metrics_of
from .results import BatchResult, ChallengerPartial, ObservedErrors, PerformancePartial, PerformanceWindow

__all__ = ["LabelMerge", "LabelProgress", "bound_from_json", "bound_to_json"]

_STATE_FORMAT = 1


@dataclass(frozen=True)
class LabelProgress:
    """How far one partition's labels go: its release bound, where its joins are settled, and the model's event rate it measures."""

    done_before: float | None  # labels observed before this were released (None: no observation order)
    settled_before_ms: float  # no label joins its predictions made before this any more (-inf: not yet known)
    events_per_second: float


def bound_to_json(value: float | None) -> int | str | None:
    """A bound as JSON: ``None`` for -inf, ``"end"`` for +inf (after the end of input), else the whole number."""
    if value is None or value == -math.inf:
        return None
    return "end" if value == math.inf else int(value)


def bound_from_json(value: Any) -> float:
    if value is None:
        return -math.inf
    if value == "end":
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"a bound must be a number, 'end' or null, got {value!r}")
    return float(value)


class LabelMerge:
    """Merges the label results of a split model's partitions (see the module docstring)."""

    def __init__(self, config: EngineConfig, verdicts: LabelVerdicts) -> None:
        assert config.label_horizon_ms is not None
        self.config = config
        self.verdicts = verdicts
        self.horizon_ms = int(config.label_horizon_ms)
        self.length_ms = config.window_length_ms
        self._performance: dict[int, dict[int, PerformancePartial]] = {}  # window start -> partition -> latest
        self._forgot_before = -math.inf  # performance windows before this are gone (no label can reach them)
        self._estimated_before = -math.inf  # windows before this had their estimate checked
        self._errors: dict[int, list[tuple[int, str, float]]] = {}  # partition -> released (time, id, error), in order
        self._last_error: dict[int, tuple[int, str]] = {}
        self._released_before = -math.inf  # the model's errors before this went to the concept test
        self._challenger: dict[int, dict[int, tuple[int, ...]]] = {}  # window start -> partition -> counts
        self._last_challenger: dict[int, int] = {}
        self._compared_before = -math.inf  # windows before this were compared
        self._progress: dict[int, LabelProgress] = {}
        # Errors, comparisons and performance of windows the model is past (a partition that woke from idle,
        # or restarted behind what it had already sent: what it sends again was merged before).
        self.late = 0
        self.repeats = 0

    # -- input ---------------------------------------------------------------------------------------

    def add_performance(self, partition: int, partial: PerformancePartial, result: BatchResult) -> None:
        start = partial.window_start_ms
        if start < self._forgot_before:
            self.late += 1
            return
        self._performance.setdefault(start, {})[partition] = partial
        result.performance_windows.append(self._record(start))

    def add_errors(self, partition: int, observed: ObservedErrors) -> None:
        queue = self._errors.setdefault(partition, [])
        last = self._last_error.get(partition)
        for time_ms, prediction_id, error in zip(observed.label_times_ms, observed.prediction_ids, observed.errors, strict=True):
            key = (int(time_ms), str(prediction_id))
            if last is not None and key <= last:
                self.repeats += 1
                continue
            last = key
            if time_ms < self._released_before:
                self.late += 1
                continue
            queue.append((key[0], key[1], float(error)))
        if last is not None:
            self._last_error[partition] = last

    def add_challenger(self, partition: int, partial: ChallengerPartial) -> None:
        start = partial.window_start_ms
        last = self._last_challenger.get(partition)
        if last is not None and start <= last:
            self.repeats += 1
            return
        self._last_challenger[partition] = start
        if start < self._compared_before:
            self.late += 1
            return
        self._challenger.setdefault(start, {})[partition] = tuple(partial.counts)

    def advance(self, partition: int, progress: LabelProgress) -> None:
        self._progress[partition] = progress

    # -- release -------------------------------------------------------------------------------------

    def release(self, partitions: int, idle: Mapping[int, bool], closed_before_ms: int | None, result: BatchResult) -> None:
        """Test and compare what every (active) partition has released; check the estimates of the windows now closed."""
        if closed_before_ms is not None and closed_before_ms > self._estimated_before:
            for start in sorted(s for s in self._performance if self._estimated_before <= s < closed_before_ms):
                estimate = self._estimate(start)
                if estimate is not None:
                    result.performance_windows.append(self._record(start))
                    self.verdicts.check_estimate(start, estimate, result)
            self._estimated_before = closed_before_ms
        if any(p not in self._progress for p in range(partitions)):
            return
        active = [p for p in range(partitions) if not idle.get(p, False)] or list(range(partitions))
        reach = min(self._progress[p].settled_before_ms for p in active) - self.length_ms  # as each partition forgets its windows
        if reach > self._forgot_before:
            for start in [s for s in self._performance if s < reach]:
                del self._performance[start]
            self._forgot_before = reach
        bounds = [self._progress[p].done_before for p in active]
        if any(b is None for b in bounds):
            return  # no observation order: no concept test, no challenger
        bound = min(b for b in bounds if b is not None)
        if bound > self._released_before:
            self._release_errors(bound, result)
        reach = bound - self.horizon_ms - self.length_ms  # as each partition completes its windows
        if reach > self._compared_before:
            complete = []
            for start in sorted(s for s in self._challenger if s < reach):
                parts = list(self._challenger.pop(start).values())
                complete.append((start, [sum(counts[i] for counts in parts) for i in range(5)]))
            self.verdicts.compare_challenger(complete, result)
            self._compared_before = reach

    def _release_errors(self, bound: float, result: BatchResult) -> None:
        released: list[tuple[int, str, float]] = []
        for partition, queue in self._errors.items():
            cut = 0
            while cut < len(queue) and queue[cut][0] < bound:
                cut += 1
            released.extend(queue[:cut])
            self._errors[partition] = queue[cut:]
        self._released_before = bound
        if not released or self.verdicts.concept is None:
            return
        released.sort(key=lambda item: (item[0], item[1]))  # observation order: label time, then prediction id
        rate = max(p.events_per_second for p in self._progress.values())
        self.verdicts.concept_drift(np.array([e for _, _, e in released]), [t for t, _, _ in released], rate, result)

    # -- records -------------------------------------------------------------------------------------

    def _estimate(self, start: int) -> EstimatedPerformance | None:
        sums = [p.estimate for p in self._performance.get(start, {}).values() if p.estimate is not None]
        return estimate_of_sums([sum(column) for column in zip(*sums, strict=True)]) if sums else None

    def _record(self, start: int) -> PerformanceWindow:
        accumulators = [p.realised for _, p in sorted(self._performance[start].items()) if p.realised is not None]
        return self.verdicts.performance_window(start, metrics_of(start, merge_accumulators(accumulators), self.verdicts.task),
                                                self._estimate(start))

    @property
    def released_before(self) -> float:
        """The model's errors before this went to the concept test (``-inf``: none yet)."""
        return self._released_before

    @property
    def compared_before(self) -> float:
        """Windows before this were compared (``-inf``: none yet)."""
        return self._compared_before

    @property
    def pending(self) -> int:
        """Errors and partition comparisons waiting for the other partitions."""
        return sum(len(q) for q in self._errors.values()) + sum(len(c) for c in self._challenger.values())

    # -- checkpoints ---------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "format": _STATE_FORMAT,
            "performance": [[start, partition, p.realised, p.estimate] for start, parts in sorted(self._performance.items())
                            for partition, p in sorted(parts.items())],
            "forgot_before": bound_to_json(self._forgot_before),
            "estimated_before": bound_to_json(self._estimated_before),
            "errors": [[partition, [list(item) for item in queue]] for partition, queue in sorted(self._errors.items())],
            "last_error": [[partition, list(key)] for partition, key in sorted(self._last_error.items())],
            "released_before": bound_to_json(self._released_before),
            "challenger": [[start, partition, list(counts)] for start, parts in sorted(self._challenger.items())
                           for partition, counts in sorted(parts.items())],
            "last_challenger": sorted(self._last_challenger.items()),
            "compared_before": bound_to_json(self._compared_before),
            "progress": [[partition, None if p.done_before is None else bound_to_json(p.done_before), p.done_before is not None,
                          bound_to_json(p.settled_before_ms), p.events_per_second] for partition, p in sorted(self._progress.items())],
            "verdicts": self.verdicts.to_state(),
            "late": self.late,
            "repeats": self.repeats,
        }

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"label-merge state format {state.get('format')!r} is not {_STATE_FORMAT}")
        self._performance = {}
        for start, partition, realised, estimate in state["performance"]:
            self._performance.setdefault(int(start), {})[int(partition)] = PerformancePartial(int(start), realised, estimate)
        self._forgot_before = bound_from_json(state["forgot_before"])
        self._estimated_before = bound_from_json(state["estimated_before"])
        self._errors = {int(p): [(int(t), str(i), float(e)) for t, i, e in queue] for p, queue in state["errors"]}
        self._last_error = {int(p): (int(key[0]), str(key[1])) for p, key in state["last_error"]}
        self._released_before = bound_from_json(state["released_before"])
        self._challenger = {}
        for start, partition, counts in state["challenger"]:
            self._challenger.setdefault(int(start), {})[int(partition)] = tuple(int(c) for c in counts)
        self._last_challenger = {int(p): int(s) for p, s in state["last_challenger"]}
        self._compared_before = bound_from_json(state["compared_before"])
        self._progress = {
            int(p): LabelProgress(bound_from_json(done) if ordered else None, bound_from_json(watermark), float(rate))
            for p, done, ordered, watermark, rate in state["progress"]
        }
        self.verdicts.restore(state["verdicts"])
        self.late = int(state["late"])
        self.repeats = int(state["repeats"])
