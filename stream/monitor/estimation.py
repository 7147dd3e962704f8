"""Performance estimated before labels arrive: confidence-based performance estimation (CBPE).

Labels come late; the scores are there at once. If the model's scores were calibrated — among events
scored 0.8, 80 % turn out positive — then each event's chance of being classified correctly is
known from its score alone, and a window's expected accuracy, precision, recall and F1 follow from
the sums of those chances (NannyML's CBPE does this in batch). Scores are rarely calibrated, so
:meth:`ConfidenceEstimator.fit` learns the map from score to probability on *labelled reference
data* — isotonic regression (scipy's ``isotonic_regression``), which assumes only that a higher
score never means a lower probability — and stores it in the profile.

What it can and cannot see: a shift of the inputs toward harder (or easier) cases changes the
scores and so the estimate; a change of the relation between inputs and outcome (concept drift)
does not change the scores and is invisible to it — that is what the realised metrics and the
concept-drift detector on joined labels are for. The estimate's standard error comes with it
(the correctness of each event is a Bernoulli trial with its own probability), so a drop can be
tested against the reference's own estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import isotonic_regression

__all__ = ["ConfidenceEstimator", "EstimateWindows", "EstimatedPerformance", "estimate_of_sums"]

_STATE_FORMAT = 1

#: Least labelled reference events to fit a calibration on.
MINIMUM_LABELLED = 200


@dataclass(frozen=True)
class EstimatedPerformance:
    """Expected metrics of a set of scored events (``None`` where a ratio is undefined)."""

    count: int
    accuracy: float | None
    accuracy_standard_error: float | None
    precision: float | None
    recall: float | None
    f1: float | None


class ConfidenceEstimator:
    """Expected classification performance from scores, through a calibration fitted on labelled data.

    Parameters
    ----------
    knots, probabilities
        The calibration: increasing scores and the (non-decreasing) probability of a positive label at
        each; linear in between, constant beyond the ends.
    threshold
        Score at or above which an event without a predicted class of its own counts as positive.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.random(20_000)
    >>> labels = (rng.random(20_000) < truth).astype(float)
    >>> scores = truth ** 2  # ranks right, probabilities wrong (under-confident above 0)
    >>> estimator = ConfidenceEstimator.fit(scores, labels)
    >>> round(float(estimator.calibrate([0.25])[0]), 1)  # a score of 0.25 means about 0.5
    0.5
    """

    def __init__(self, knots: npt.ArrayLike, probabilities: npt.ArrayLike, *, threshold: float = 0.5) -> None:
        x = np.asarray(knots, dtype=np.float64)
        p = np.asarray(probabilities, dtype=np.float64)
        if x.ndim != 1 or x.size == 0 or x.shape != p.shape or not np.all(np.isfinite(x)) or not np.all(np.isfinite(p)):
            raise ValueError("knots and probabilities must be non-empty 1-D arrays of finite numbers of equal length")
        if np.any(np.diff(x) < 0) or np.any(np.diff(p) < 0) or p.min() < 0 or p.max() > 1:
            raise ValueError("knots must be sorted and probabilities non-decreasing in [0, 1]")
        if not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.knots = x
        self.probabilities = p
        self.threshold = float(threshold)

    @classmethod
    def fit(cls, scores: npt.ArrayLike, labels: npt.ArrayLike, *, threshold: float = 0.5) -> ConfidenceEstimator:
        """Fit the calibration on labelled reference events (labels 0/1)."""
        s = np.asarray(scores, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        if s.ndim != 1 or s.shape != y.shape:
            raise ValueError("scores and labels must be 1-D arrays of equal length")
        if not (np.all(np.isfinite(s)) and np.all((y == 0.0) | (y == 1.0))):
            raise ValueError("scores must be finite and labels 0 or 1")
        if s.size < MINIMUM_LABELLED:
            raise ValueError(f"{s.size} labelled events; the calibration needs at least {MINIMUM_LABELLED}")
        order = np.argsort(s, kind="stable")
        s, y = s[order], y[order]
        # Ties share one value: isotonic regression on the mean label of each distinct score.
        distinct, start = np.unique(s, return_index=True)
        counts = np.diff(np.append(start, s.size))
        means = np.add.reduceat(y, start) / counts
        fitted = isotonic_regression(means, weights=counts, increasing=True).x
        # Keep the ends of each constant block: the same function with far fewer knots.
        change = np.flatnonzero(np.diff(fitted) != 0)
        keep = np.unique(np.concatenate(([0, distinct.size - 1], change, change + 1)))
        return cls(distinct[keep], np.clip(fitted[keep], 0.0, 1.0), threshold=threshold)

    def calibrate(self, scores: npt.ArrayLike) -> np.ndarray:
        """Probability of a positive label for each score."""
        return np.interp(np.asarray(scores, dtype=np.float64), self.knots, self.probabilities)

    def terms(self, scores: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Per event, what an estimate sums: P(right), its Bernoulli variance, and the expected TP, FP, FN.

        An event is positive by its own predicted class if it carries one, else by its score.
        """
        p = self.calibrate(scores)
        positive = (scores >= self.threshold) if classes is None else (np.asarray(classes, dtype=np.float64) == 1.0)
        correct = np.where(positive, p, 1.0 - p)  # each event's chance of being classified right
        return (correct, correct * (1.0 - correct), np.where(positive, p, 0.0), np.where(positive, 1.0 - p, 0.0),
                np.where(positive, 0.0, p))

    def estimate(self, scores: npt.ArrayLike, classes: npt.ArrayLike | None = None) -> EstimatedPerformance:
        """Expected metrics of events with these scores (and predicted classes, if the events carry them)."""
        s = np.asarray(scores, dtype=np.float64)
        if s.size == 0:
            return EstimatedPerformance(0, None, None, None, None, None)
        sums = [math.fsum(term.tolist()) for term in self.terms(s, None if classes is None else np.asarray(classes))]
        return _from_sums(int(s.size), sums)

    def to_state(self) -> dict[str, Any]:
        """Strict-JSON form (for the reference profile)."""
        return {"format": _STATE_FORMAT, "knots": self.knots.tolist(), "probabilities": self.probabilities.tolist(),
                "threshold": self.threshold}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ConfidenceEstimator:
        """Restore from :meth:`to_state`."""
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"estimator state format {state.get('format')!r} is not {_STATE_FORMAT}")
        return cls(state["knots"], state["probabilities"], threshold=state["threshold"])


def _from_sums(n: int, sums: list[float]) -> EstimatedPerformance:
    """The estimate of ``n`` events from the sums of their :meth:`ConfidenceEstimator.terms`."""
    correct, variance, tp, fp, fn = sums
    return EstimatedPerformance(
        count=n, accuracy=correct / n, accuracy_standard_error=math.sqrt(max(variance, 0.0)) / n,
        precision=tp / (tp + fp) if tp + fp > 0 else None, recall=tp / (tp + fn) if tp + fn > 0 else None,
        f1=2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else None,
    )


#: Sums an estimate needs per window: Σ P(correct), Σ P(correct)(1 − P(correct)), and the expected
#: true positives, false positives and false negatives.
_SUMS = 5


class EstimateWindows:
    """Per window of prediction time, the sums :class:`ConfidenceEstimator` turns into an estimate.

    A window's estimate must be the same bits however its predictions were batched (a replay, a
    restart from a checkpoint cut batches elsewhere), and adding rounded per-batch sums is not
    (measured: the last bit of the standard error differed after ``kill -9``). So each per-event term
    — all in [0, 1] — is rounded to a multiple of :data:`_QUANTUM` (2⁻⁵⁰, about 1e-15) and the terms
    are summed as integers, exactly and in any order; the estimate moves by at most 2⁻⁵¹ per event
    against an exact sum of the unrounded terms. (Shewchuk partials per event, as the realised
    metrics keep, cost a Python call per term: too slow for every prediction.)
    """

    def __init__(self, estimator: ConfidenceEstimator, window_length_ms: int) -> None:
        self.estimator = estimator
        self.window_length_ms = int(window_length_ms)
        self._windows: dict[int, list[int]] = {}  # start -> [count, sum of each term in quanta × _SUMS]

    def add(self, times_ms: np.ndarray, scores: np.ndarray, classes: np.ndarray | None) -> None:
        """Account accepted predictions (their event times, scores and decided classes, if any)."""
        times = np.asarray(times_ms, dtype=np.int64)
        if times.size == 0:
            return
        s = np.asarray(scores, dtype=np.float64)
        usable = np.isfinite(s)
        columns = [np.rint(column * _SCALE).astype(np.int64) for column in self.estimator.terms(np.where(usable, s, 0.0), classes)]
        starts = times - times % self.window_length_ms
        for start in np.unique(starts[usable]).tolist():
            rows = usable & (starts == start)
            acc = self._windows.get(start)
            if acc is None:
                acc = self._windows[start] = [0] * (1 + _SUMS)
            acc[0] += int(rows.sum())
            for j, column in enumerate(columns):
                acc[1 + j] += _integer_sum(column[rows])

    def windows(self) -> list[int]:
        return sorted(self._windows)

    def estimate(self, start_ms: int) -> EstimatedPerformance | None:
        """The window's estimate (``None`` if it had no prediction)."""
        return estimate_of_sums(self._windows.get(start_ms))

    def sums(self, start_ms: int) -> list[int] | None:
        """The window's integer sums (a copy), for a merger to add to other partitions' (then :func:`estimate_of_sums`)."""
        acc = self._windows.get(start_ms)
        return None if acc is None else list(acc)

    def forget(self, starts: list[int]) -> None:
        for start in starts:
            self._windows.pop(start, None)

    def to_state(self) -> list[list[Any]]:
        return [[start, *acc] for start, acc in sorted(self._windows.items())]

    def restore(self, state: list[list[Any]]) -> None:
        # A state written before the sums were integers holds Shewchuk partials: their sum, in quanta.
        self._windows = {
            int(start): [int(acc[0]), *(int(v) if isinstance(v, int) else round(math.fsum(v) * _SCALE) for v in acc[1:])]
            for start, *acc in state
        }


def estimate_of_sums(acc: list[int] | None) -> EstimatedPerformance | None:
    """The estimate of a window from its sums (:meth:`EstimateWindows.sums`, or several partitions' added); ``None``: no prediction."""
    if acc is None or acc[0] == 0:
        return None
    return _from_sums(acc[0], [total / _SCALE for total in acc[1:]])  # int / float: correctly rounded


#: The resolution of the per-window sums of :class:`EstimateWindows`.
_QUANTUM = 2.0**-50
_SCALE = 2.0**50
#: Terms summed at once in int64: 4096 of at most 2^50 stay below 2^63.
_INT_CHUNK = 4096


def _integer_sum(quanta: np.ndarray) -> int:
    return sum(int(quanta[i:i + _INT_CHUNK].sum()) for i in range(0, quanta.size, _INT_CHUNK))
