"""Performance per window from labels joined to their predictions, on the prediction's event time.

:class:`PerformanceWindows` takes the rows :class:`~.label_join.LabelJoin` joins and keeps, per window
of prediction event time, what the metrics need: for classification the confusion matrix and the sum of
log losses; for regression the sums of absolute and squared errors. A window's figures grow while its
labels arrive (up to the join's horizon after it), so they are re-read whenever a label lands in it.

Exact whatever the order: sums of floats are kept as Shewchuk's non-overlapping partials (the
algorithm behind :func:`math.fsum`), so a window's metrics are the correctly rounded values of its
labels' sums, the same bits whichever order the labels were joined in (which depends on how the
prediction and label topics interleave). Checked against scikit-learn's metrics in
``tests/unit/stream/monitor/test_performance.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from driftline.schemas.contract import Contract

from .label_join import JoinedLabels

__all__ = ["PerformanceMetrics", "PerformanceWindows", "label_task", "merge_accumulators", "metrics_of"]

Task = Literal["classification", "regression"]

_STATE_FORMAT = 1

#: Probabilities are clipped to [eps, 1 - eps] for the log loss, as scikit-learn does for float64.
_EPS = float(np.finfo(np.float64).eps)


def add_exact(partials: list[float], value: float) -> None:
    """Add ``value`` to a sum kept as non-overlapping partials (Shewchuk; the ``msum`` recipe)."""
    i = 0
    for y in partials:
        if abs(value) < abs(y):
            value, y = y, value
        high = value + y
        low = y - (high - value)
        if low:
            partials[i] = low
            i += 1
        value = high
    partials[i:] = [value]


@dataclass(frozen=True)
class PerformanceMetrics:
    """One window's realised performance (``None``: undefined, e.g. precision with no positive prediction)."""

    window_start_ms: int
    count: int  # labelled predictions in the window
    invalid_labels: int  # classification labels other than 0 and 1 (not in the metrics)
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    log_loss: float | None = None
    true_positives: int = 0
    false_positives: int = 0
    true_negatives: int = 0
    false_negatives: int = 0
    mae: float | None = None
    rmse: float | None = None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


class PerformanceWindows:
    """Per-window performance accumulators; see the module docstring.

    Parameters
    ----------
    window_length_ms
        Length of the tumbling windows of prediction event time (the engine's window length).
    task
        ``"classification"`` (labels 0/1, the score a probability of 1) or ``"regression"`` (the
        score is the predicted value).
    threshold
        Classification: the score at or above which the prediction is 1 when the event carries no
        predicted class of its own.

    Examples
    --------
    >>> from driftline.stream.monitor.label_join import LabelJoin
    >>> join = LabelJoin(horizon_ms=3_600_000)
    >>> join.add_predictions(["a", "b", "c"], [1_000, 2_000, 61_000], [0.9, 0.4, 0.8], [1, 0, 1])
    >>> windows = PerformanceWindows(60_000, "classification")
    >>> windows.add(join.add_labels(["a", "b", "c"], [9_000, 9_000, 99_000], [1, 1, 0]))
    [0, 60000]
    >>> m = windows.metrics(0)
    >>> (m.count, m.accuracy, m.precision, m.recall)
    (2, 0.5, 1.0, 0.5)
    """

    def __init__(self, window_length_ms: int, task: Task, *, threshold: float = 0.5) -> None:
        if isinstance(window_length_ms, bool) or not isinstance(window_length_ms, (int, np.integer)) or window_length_ms <= 0:
            raise ValueError(f"window_length_ms must be a whole number > 0, got {window_length_ms!r}")
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        if not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.window_length_ms = int(window_length_ms)
        self.task: Task = task
        self.threshold = float(threshold)
        # window start -> [count, invalid, tp, fp, tn, fn, partials of log loss | abs error, partials of squared error]
        self._windows: dict[int, list[Any]] = {}

    def add(self, joined: JoinedLabels | None) -> list[int]:
        """Account joined labels; returns the starts of the windows they changed, in order."""
        if joined is None or len(joined) == 0:
            return []
        touched: set[int] = set()
        length = self.window_length_ms
        for time_ms, score, klass, label in zip(joined.prediction_times_ms, joined.scores, joined.classes, joined.labels,
                                                strict=True):
            start = time_ms - time_ms % length
            acc = self._windows.get(start)
            if acc is None:
                acc = self._windows[start] = [0, 0, 0, 0, 0, 0, [], []]
            touched.add(start)
            if self.task == "regression":
                acc[0] += 1
                error = score - label
                add_exact(acc[6], abs(error))
                add_exact(acc[7], error * error)
                continue
            if label not in (0.0, 1.0):
                acc[1] += 1
                continue
            acc[0] += 1
            predicted = (score >= self.threshold) if klass is None else klass == 1
            positive = label == 1.0
            acc[2 + (0 if predicted and positive else 1 if predicted else 3 if positive else 2)] += 1
            p = min(max(score, _EPS), 1.0 - _EPS)
            add_exact(acc[6], -math.log(p if positive else 1.0 - p))
        return sorted(touched)

    def windows(self) -> list[int]:
        """Starts of the windows with any joined label, in time order."""
        return sorted(self._windows)

    def metrics(self, window_start_ms: int) -> PerformanceMetrics:
        """The window's metrics now (a window without labels: count 0, every metric ``None``)."""
        return metrics_of(window_start_ms, self._windows.get(window_start_ms), self.task)

    def accumulator(self, window_start_ms: int) -> list[Any] | None:
        """The window's accumulator (a copy, strict JSON), for a merger to sum with other partitions' (:func:`merge_accumulators`)."""
        acc = self._windows.get(window_start_ms)
        return None if acc is None else [*acc[:6], list(acc[6]), list(acc[7])]

    def forget(self, window_starts: Iterable[int]) -> None:
        """Drop windows whose labels can no longer arrive (past the join's horizon): bounded memory."""
        for start in window_starts:
            self._windows.pop(start, None)

    def to_state(self) -> dict[str, Any]:
        """Strict-JSON state (floats as their exact ``repr``; JSON round-trips them bit for bit)."""
        return {"format": _STATE_FORMAT, "window_length_ms": self.window_length_ms, "task": self.task,
                "threshold": self.threshold, "windows": [[start, *acc] for start, acc in sorted(self._windows.items())]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PerformanceWindows:
        """Restore from :meth:`to_state`."""
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"performance state format {state.get('format')!r} is not {_STATE_FORMAT}")
        windows = cls(state["window_length_ms"], state["task"], threshold=state["threshold"])
        for start, *acc in state["windows"]:
            windows._windows[int(start)] = [*(int(v) for v in acc[:6]), [float(v) for v in acc[6]], [float(v) for v in acc[7]]]
        return windows


def merge_accumulators(accumulators: Iterable[list[Any]]) -> list[Any] | None:
    """The sum of several partitions' accumulators of one window (exact: the float sums' partials are added exactly)."""
    total: list[Any] | None = None
    for acc in accumulators:
        if total is None:
            total = [0, 0, 0, 0, 0, 0, [], []]
        for i in range(6):
            total[i] += int(acc[i])
        for i in (6, 7):
            for value in acc[i]:
                add_exact(total[i], float(value))
    return total


def metrics_of(window_start_ms: int, acc: list[Any] | None, task: Task) -> PerformanceMetrics:
    """A window's metrics from its accumulator (``None``: no label yet)."""
    if acc is None:
        return PerformanceMetrics(window_start_ms, 0, 0)
    count, invalid, tp, fp, tn, fn = acc[:6]
    if task == "regression":
        return PerformanceMetrics(window_start_ms, count, invalid, mae=_ratio(math.fsum(acc[6]), count),
                                  rmse=math.sqrt(math.fsum(acc[7]) / count) if count else None)
    return PerformanceMetrics(
        window_start_ms, count, invalid,
        accuracy=_ratio(tp + tn, count), precision=_ratio(tp, tp + fp), recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn), log_loss=_ratio(math.fsum(acc[6]), count),
        true_positives=tp, false_positives=fp, true_negatives=tn, false_negatives=fn,
    )


def label_task(contract: Contract) -> Task:
    """``"classification"`` when the model decides a class or scores a probability, else ``"regression"``."""
    if contract.find_role("prediction_class") is not None:
        return "classification"
    score = contract.find_role("prediction_score")
    if score is not None and score.range is not None and score.range[0] >= 0.0 and score.range[1] <= 1.0:
        return "classification"
    return "regression"
