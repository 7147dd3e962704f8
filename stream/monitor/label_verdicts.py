"""What labels make of a model: performance records, the concept-drift test, the estimate's drop test and the challenger's verdict.

A model on one partition has them from its engine; a model split over partitions from its merger,
which sums the partitions' accumulators and merges their error streams
(:class:`~driftline.stream.monitor.label_merge.LabelMerge`). Both decide through this one class, so
a split model's records and alerts are those of one engine that saw all its labels: the same
budget (the concept test, the estimate's drop test and the challenger's comparison each take a
share of the model's), the same thresholds, the same messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

from driftline.schemas.contract import Contract

from .budget import AlarmBudget
from .challenger import mcnemar_p_value
from .closing import WindowCloser
from .concept import ConceptDriftDetector
from .config import EngineConfig
from .estimation import EstimatedPerformance
from .performance import PerformanceMetrics, label_task
from .profile import ReferenceProfile
from .results import LABELS_FEATURE, AlertKind, BatchResult, ChallengerWindow, DetectorSignal, PerformanceWindow, iso_time

__all__ = ["MIN_ACCURACY_DROP", "LabelVerdicts", "model_budget"]

#: Smallest fall of the estimated accuracy worth a ``performance_drop`` alert, however significant.
MIN_ACCURACY_DROP = 0.02


def model_budget(contract: Contract, config: EngineConfig, labelled: dict[str, Any] | None) -> AlarmBudget:
    """The model's false-alarm budget, shared by its fields' tests and, with labels, the label tests."""
    budget = AlarmBudget.for_fields(contract.monitored_fields, config.false_alarms_per_month)
    extra = 0
    if config.label_horizon_ms is not None and labelled is not None:
        # The concept-drift test is one more test sharing the model's budget; so is the estimate's
        # per-window test of a drop (a classifier's profile has the score calibration for it).
        extra += 2 if labelled.get("estimator") is not None else 1
    if config.challenger is not None:
        extra += 1  # its per-window comparison
    return AlarmBudget(budget.false_alarms_per_month, budget.tests + extra) if extra else budget


class LabelVerdicts:
    """The records and alerts of a model's labels (see the module docstring).

    Parameters
    ----------
    contract, config
        The model's contract and tunables.
    profile_for, default_version
        The reference profiles (by version) and the version whose labelled reference calibrates the tests.
    closer
        The model's window closer: its alert gate keeps one episode per alert kind.
    """

    def __init__(
        self, contract: Contract, config: EngineConfig, profile_for: Callable[[str], ReferenceProfile], default_version: str,
        closer: WindowCloser,
    ) -> None:
        self.contract = contract
        self.config = config
        self.default_version = default_version
        self.closer = closer
        self.labelled = profile_for(default_version).labels
        self.budget = model_budget(contract, config, self.labelled)
        self.task = label_task(contract)
        self.concept: ConceptDriftDetector | None = None
        if config.label_horizon_ms is not None and self.labelled is not None:
            self.concept = ConceptDriftDetector.from_state(self.labelled["concept"])
        self.labels_scored = 0  # labels the concept-drift test has seen

    def performance_window(self, start: int, m: PerformanceMetrics, estimate: EstimatedPerformance | None) -> PerformanceWindow:
        """The window's record: realised metrics from its labels so far, and the estimate from its scores."""
        return PerformanceWindow(
            model=self.contract.model, task=self.task, window_start_ms=start,
            window_length_ms=self.config.window_length_ms, count=m.count, invalid_labels=m.invalid_labels,
            accuracy=m.accuracy, precision=m.precision, recall=m.recall, f1=m.f1, log_loss=m.log_loss,
            true_positives=m.true_positives, false_positives=m.false_positives, true_negatives=m.true_negatives,
            false_negatives=m.false_negatives, mae=m.mae, rmse=m.rmse,
            predictions=0 if estimate is None else estimate.count,
            estimated_accuracy=None if estimate is None else estimate.accuracy,
            estimated_accuracy_se=None if estimate is None else estimate.accuracy_standard_error,
            estimated_f1=None if estimate is None else estimate.f1,
        )

    def check_estimate(self, start: int, estimate: EstimatedPerformance, result: BatchResult) -> None:
        """At a window's close: alert if its estimated accuracy fell significantly below the reference's."""
        expected = (self.labelled or {}).get("estimated_accuracy")
        if expected is None or estimate.accuracy is None or not estimate.accuracy_standard_error:
            return
        if estimate.count < self.config.min_window_count:
            return
        drop = expected - estimate.accuracy
        threshold = float(norm.isf(self.budget.per_window_rate(self.config.window_length_ms))) * estimate.accuracy_standard_error
        # Significant at the window's share of the budget, and at least MIN_ACCURACY_DROP: a drop
        # too small to matter is not a page, however many predictions make it certain.
        if drop > max(threshold, MIN_ACCURACY_DROP):
            self.closer.gated_alert(
                result, self.default_version, AlertKind.PERFORMANCE_DROP, None, "cbpe", episode="performance_drop",
                window_start_ms=start, event_time_ms=start + self.config.window_length_ms, score=drop,
                threshold=max(threshold, MIN_ACCURACY_DROP),
                message=(f"[{iso_time(start)}] accuracy estimated from the scores of {estimate.count} predictions fell to "
                         f"{estimate.accuracy:.3f} ± {estimate.accuracy_standard_error:.3f} (reference {expected:.3f}), "
                         "before their labels: the inputs moved toward cases the model gets wrong more often"),
            )

    def concept_drift(self, errors: np.ndarray, label_times_ms: Sequence[int], events_per_second: float, result: BatchResult) -> None:
        """Run the concept-drift test on the next errors, in observation order; signal and alert on a rise."""
        assert self.concept is not None
        if len(errors) == 0:
            return
        self.concept.test.retarget(self.budget.per_event_rate(events_per_second))  # a share per labelled event
        hits = self.concept.update_errors(errors)
        statistics, thresholds = self.concept.test.signal_statistics, self.concept.test.signal_thresholds
        labelled = self.labelled or {}
        for hit, statistic, threshold in zip(hits.tolist(), statistics, thresholds, strict=True):
            time_ms = int(label_times_ms[hit])
            signal = DetectorSignal(
                model=self.contract.model, model_version=self.default_version, feature=LABELS_FEATURE,
                detector="concept_error", event_index=self.labels_scored + hit, event_time_ms=time_ms, statistic=statistic,
            )
            result.signals.append(signal)
            self.closer.gated_alert(
                result, self.default_version, AlertKind.CONCEPT_DRIFT, None, "concept_error", episode="concept_drift",
                window_start_ms=None, event_time_ms=time_ms, score=statistic, threshold=threshold,
                message=(f"the errors of labelled predictions rose (labelled event {self.labels_scored + hit}; "
                         f"reference mean error {labelled.get('mean_error', float('nan')):.3g}): the outcome no longer "
                         "follows the model as it did"),
            )
        self.labels_scored += len(errors)

    def compare_challenger(self, complete: Sequence[tuple[int, Sequence[int]]], result: BatchResult) -> None:
        """Each window no label can still reach: McNemar on champion and challenger; a recommendation if it wins."""
        length = self.config.window_length_ms
        alpha = self.budget.per_window_rate(length)
        for start, (count, champion_right, challenger_right, champion_only, challenger_only) in complete:
            p_value = mcnemar_p_value(champion_only, challenger_only)
            better = p_value < alpha and challenger_only > champion_only
            window = ChallengerWindow(
                model=self.contract.model, window_start_ms=start, window_length_ms=length, count=count,
                champion_accuracy=champion_right / count if count else None,
                challenger_accuracy=challenger_right / count if count else None,
                champion_only=champion_only, challenger_only=challenger_only, p_value=p_value, alpha=alpha,
                challenger_better=better,
            )
            result.challenger_windows.append(window)
            if better:
                self.closer.gated_alert(
                    result, self.default_version, AlertKind.CHALLENGER_BETTER, None, "mcnemar", episode="challenger_better",
                    window_start_ms=start, event_time_ms=start + length, score=-math.log10(max(p_value, 1e-300)),
                    threshold=-math.log10(alpha),
                    message=(f"[{iso_time(start)}] the online challenger was right on {window.challenger_accuracy:.3f} of {count} "
                             f"labelled predictions, the production model on {window.champion_accuracy:.3f} (alone right: "
                             f"{challenger_only} vs {champion_only}; McNemar p = {p_value:.2g} < {alpha:.2g}): a recommendation "
                             "to retrain or replace the model — production is unchanged"),
                )

    def to_state(self) -> dict[str, Any]:
        return {"concept": None if self.concept is None else self.concept.to_state(), "labels_scored": self.labels_scored}

    def restore(self, state: dict[str, Any]) -> None:
        if self.concept is not None and state.get("concept") is not None:
            self.concept = ConceptDriftDetector.from_state(state["concept"])
        self.labels_scored = int(state.get("labels_scored", 0))
