"""Concept drift: a calibrated test on the error stream of labelled predictions.

Data-drift tests watch the inputs; when the relation between inputs and outcome changes while the
inputs stay as they were, they see nothing, and the model silently gets worse. Once labels are joined
to their predictions, each one gives an error — for classification whether the decision was wrong
(0 or 1), for regression the absolute error — and a rise in the mean error is concept drift (or a
data drift that hurts). :class:`ConceptDriftDetector` runs the calibrated Page–Hinkley test of
:mod:`driftline.detectors.page_hinkley` on that stream, calibrated on the errors of *labelled
reference data*: for classification the errors are a binary stream, which the test's run-length model
calibrates per side (measured within its target on binary fields: ``tests/benchmarks/
discrete_calibration.py``). Only a rise is reported: a model that gets better is not a page.

Order: the test sees errors in the order they are given. Labels join in the order the label and
prediction topics are read, so whoever feeds it must give it a canonical order for a replay to
reproduce a live run.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from driftline.detectors.page_hinkley import PageHinkley

from .label_join import JoinedLabels

__all__ = ["ConceptDriftDetector"]

Task = Literal["classification", "regression"]

_STATE_FORMAT = 1


class ConceptDriftDetector:
    """A calibrated, one-sided (rising error) Page–Hinkley test on the per-event error of joined labels.

    Build it with :meth:`calibrate`. ``test`` is the underlying detector; ``task`` and ``threshold``
    say how an error is computed from a score and a label.

    Examples
    --------
    >>> rng = np.random.default_rng(5)
    >>> scores = rng.random(20_000)
    >>> labels = (rng.random(20_000) < scores).astype(float)  # calibrated scores: 25 % errors
    >>> detector = ConceptDriftDetector.calibrate(scores, labels, false_alarm_rate=1e-6)
    >>> live = rng.random(4_000)
    >>> outcome = (rng.random(4_000) < live).astype(float)
    >>> outcome[2_000:] = (rng.random(2_000) < 0.5).astype(float)  # the outcome no longer follows the score
    >>> hits = detector.update_errors(detector.errors(live, outcome))
    >>> bool(hits.size) and 2_000 <= int(hits[0]) < 3_000
    True
    """

    def __init__(self, test: PageHinkley, task: Task = "classification", *, threshold: float = 0.5) -> None:
        if test.direction != "up":
            raise ValueError("the concept-drift test watches a rise of the error: direction must be 'up'")
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        if not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.test = test
        self.task: Task = task
        self.threshold = float(threshold)

    def errors(self, scores: npt.ArrayLike, labels: npt.ArrayLike, classes: npt.ArrayLike | None = None) -> np.ndarray:
        """Per-event errors: wrong decision (0/1) for classification, absolute error for regression."""
        s = np.asarray(scores, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        if s.shape != y.shape:
            raise ValueError("scores and labels must have equal lengths")
        if self.task == "regression":
            return np.abs(s - y)
        decided: np.ndarray = (s >= self.threshold) if classes is None else (np.asarray(classes) == 1)
        wrong: np.ndarray = decided.astype(np.float64) != y
        return wrong.astype(np.float64)

    @classmethod
    def calibrate(
        cls,
        reference_scores: npt.ArrayLike,
        reference_labels: npt.ArrayLike,
        false_alarm_rate: float,
        *,
        task: Task = "classification",
        threshold: float = 0.5,
        reference_classes: npt.ArrayLike | None = None,
        shift: float = 0.375,
    ) -> ConceptDriftDetector:
        """Calibrate on labelled reference data (in time order if its errors are autocorrelated).

        ``false_alarm_rate`` is per labelled event; ``shift`` the rise of the mean error the test is
        tuned for, in standard deviations of the reference's errors.
        """
        probe = cls(PageHinkley(direction="up"), task, threshold=threshold)
        errors = probe.errors(reference_scores, reference_labels, reference_classes)
        params = PageHinkley.calibrate(errors, false_alarm_rate=false_alarm_rate, shift=shift).to_state()["params"]
        test = PageHinkley(**{**params, "direction": "up"})
        test.retarget(false_alarm_rate)  # one side: the whole rate
        return cls(test, task, threshold=threshold)

    def update_errors(self, errors: npt.ArrayLike) -> np.ndarray:
        """Feed errors in order; positions (in ``errors``) where a rise of the error was signalled."""
        return self.test.update_many(errors)

    def joined_errors(self, joined: JoinedLabels) -> np.ndarray:
        """The errors of joined labels (decided by the predictions' own classes when every one carries one)."""
        classes = None
        if self.task == "classification" and len(joined) and all(c is not None for c in joined.classes):
            classes = np.asarray(joined.classes)
        return self.errors(joined.scores, joined.labels, classes)

    def update(self, joined: JoinedLabels) -> np.ndarray:
        """Feed joined labels in the order given; positions where a rise of the error was signalled."""
        if len(joined) == 0:
            return np.empty(0, dtype=np.int64)
        return self.update_errors(self.joined_errors(joined))

    def to_state(self) -> dict[str, Any]:
        """Strict-JSON state."""
        return {"format": _STATE_FORMAT, "task": self.task, "threshold": self.threshold, "test": self.test.to_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ConceptDriftDetector:
        """Restore from :meth:`to_state`."""
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"concept-drift state format {state.get('format')!r} is not {_STATE_FORMAT}")
        test = PageHinkley.from_state(state["test"])
        assert isinstance(test, PageHinkley)
        return cls(test, state["task"], threshold=state["threshold"])
