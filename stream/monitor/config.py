"""The engine's tunables, all in event time: windows, lateness, the false-alarm budget, alert episodes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EngineConfig"]


@dataclass(frozen=True)
class EngineConfig:
    """Tunables of the engine (all times are event time, in milliseconds).

    Parameters
    ----------
    window_length_ms
        Length of the tumbling event-time windows.
    allowed_lateness_ms
        How long after the largest event time seen a window stays open for late events.
    false_alarms_per_month
        The model's false-alarm budget: alerts per 30 days on a stream like its reference, shared by
        all of its streaming detectors and window checks (:mod:`~driftline.stream.monitor.budget`).
    events_per_second
        The model's event rate the budget is spread over; ``None``: the reference profile's own rate
        (from its timestamps). Either way it is a floor: a busier live stream tightens the thresholds.
    partitions
        The model's topic partitions, when this engine watches one of them (``partial_windows``): the
        live rate it measures is scaled by this to the model's.
    min_psi
        Smallest PSI worth an alert, however significant (an effect-size floor: 0.1 is the usual
        "some shift" mark in credit-risk practice).
    min_window_count
        Windows with fewer values than this are summarised but not tested.
    max_unseen_fraction, max_invalid_fraction, max_rejected_fraction
        Data-quality budgets per window (unseen categories; NaN/inf or out-of-range values;
        rejected events). Null budgets come from each field's ``max_null_fraction`` in the contract.
    alert_cooldown_ms
        The quiet period of an incident: signals of the same kind on the same field closer than this
        belong to one incident, which resolves once this much event time passed without one
        (:mod:`~driftline.stream.monitor.alerts`).
    max_live_versions
        The most model versions whose streaming detectors are kept; the least recently seen goes
        first (see :class:`~driftline.stream.monitor.tracks.DetectorTracks`).
    label_horizon_ms
        Join late ground-truth labels to predictions that far back in event time
        (:mod:`~driftline.stream.monitor.label_join`); ``None``: no labels (the engine holds no
        predictions for them).
    label_grace_ms
        How far out of event-time order predictions may arrive before a waiting label is given up.
    label_capacity
        Most predictions and waiting labels the join holds (they are part of the engine's state).
    challenger
        Run an online challenger beside a binary classifier (needs a label horizon): ``"default"``
        (a River logistic regression, :func:`~driftline.stream.monitor.challenger.default_classifier`)
        or ``"module:factory"`` returning a River classifier; ``None``: none.
    challenger_sample
        Share of predictions the challenger scores and learns from (by a hash of the id); the rest
        cost nothing. Its held features are part of the engine's state.
    partial_windows
        The engine watches one partition of a model split over several: its closed windows become
        :class:`~driftline.stream.monitor.results.WindowPartial` records (merged into the model's
        windows by :class:`~driftline.stream.monitor.merge.WindowMerger`), not summaries and verdicts;
        schema changes are recorded without an alert (the merger raises it once for the model).
    """

    window_length_ms: int = 60_000
    allowed_lateness_ms: int = 120_000
    false_alarms_per_month: float = 1.0
    events_per_second: float | None = None
    partitions: int = 1
    min_psi: float = 0.1
    min_window_count: int = 50
    max_unseen_fraction: float = 0.02
    max_invalid_fraction: float = 0.01
    max_rejected_fraction: float = 0.02
    alert_cooldown_ms: int = 15 * 60_000
    max_live_versions: int = 16
    partial_windows: bool = False
    label_horizon_ms: int | None = None
    label_grace_ms: int = 3_600_000
    label_capacity: int = 200_000
    challenger: str | None = None
    challenger_sample: float = 1.0

    def __post_init__(self) -> None:
        for name in ("window_length_ms", "min_window_count", "max_live_versions", "partitions"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.label_horizon_ms is not None and self.label_horizon_ms <= 0:
            raise ValueError(f"label_horizon_ms must be positive, got {self.label_horizon_ms}")
        if self.challenger is not None and self.label_horizon_ms is None:
            raise ValueError("a challenger learns from labels: it needs label_horizon_ms")
        if not 0.0 < self.challenger_sample <= 1.0:
            raise ValueError(f"challenger_sample must be in (0, 1], got {self.challenger_sample}")
        if self.label_capacity <= 0:
            raise ValueError(f"label_capacity must be positive, got {self.label_capacity}")
        for name in ("allowed_lateness_ms", "alert_cooldown_ms", "label_grace_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("false_alarms_per_month", "events_per_second"):
            value = getattr(self, name)
            if value is not None and not (0.0 < value < float("inf")):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name in ("max_unseen_fraction", "max_invalid_fraction", "max_rejected_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value}")
