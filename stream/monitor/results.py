"""Plain result records produced by the monitor engine.

These are the only types the shells (embedded runner, Faust worker, replay) and the sinks exchange
with the engine. They are frozen dataclasses of plain values so that they serialise canonically
(:func:`to_canonical_json`) — the determinism guarantee of the engine is stated on that form.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Alert",
    "AlertKind",
    "AlertResolution",
    "BatchResult",
    "ChallengerPartial",
    "ChallengerWindow",
    "Checkpoint",
    "DetectorSignal",
    "FeatureWindow",
    "ModelWindow",
    "ObservedErrors",
    "PartialSignal",
    "PerformancePartial",
    "PerformanceWindow",
    "SchemaChangeRecord",
    "WindowPartial",
    "alert_identifier",
    "describe_alert",
    "iso_time",
    "to_canonical_json",
]


@dataclass(frozen=True)
class FeatureWindow:
    """Aggregate of one feature (or prediction field) over one closed event-time window.

    ``quantiles`` come from a datasketches KLL sketch: approximate, and — because the library's
    compaction uses an unseeded random generator — not bit-identical between two runs over the same
    events. Every other field is exact and deterministic.
    """

    model: str
    model_version: str
    feature: str
    kind: str  # "numeric" | "categorical"
    window_start_ms: int
    window_length_ms: int
    count: int  # values summarised (accepted events with a valid value)
    nulls: int
    non_finite: int
    out_of_range: int
    unseen: int
    minimum: float | None
    maximum: float | None
    mean: float | None
    variance: float | None
    psi: float | None
    jensen_shannon: float | None
    ks: float | None
    wasserstein: float | None
    psi_threshold: float | None
    top_items: tuple[tuple[str, int], ...] = ()
    quantiles: dict[str, float] = field(default_factory=dict)

    def deterministic_dict(self) -> dict[str, Any]:
        """All fields except the KLL quantiles (see class docstring)."""
        data = dataclasses.asdict(self)
        data.pop("quantiles")
        return data


@dataclass(frozen=True)
class ModelWindow:
    """Event counts of one model over one closed event-time window."""

    model: str
    model_version: str
    window_start_ms: int
    window_length_ms: int
    events: int  # decoded events whose event time falls in the window (accepted + rejected)
    accepted: int
    rejected: int
    rejected_by_reason: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class PerformanceWindow:
    """Realised performance of one event-time window of predictions, from the labels joined so far.

    A window's labels keep arriving up to the label horizon after it, so the same window is reported
    again, with larger counts, whenever a label lands in it: the latest record replaces the earlier
    ones (the key is model and window start).
    """

    model: str
    task: str  # "classification" | "regression"
    window_start_ms: int
    window_length_ms: int
    count: int  # labelled predictions
    invalid_labels: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    log_loss: float | None
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    mae: float | None
    rmse: float | None
    # Estimated from the window's scores before (and beside) its labels (CBPE; classification with a
    # labelled reference): accepted predictions, expected accuracy with its standard error, expected F1.
    predictions: int = 0
    estimated_accuracy: float | None = None
    estimated_accuracy_se: float | None = None
    estimated_f1: float | None = None


@dataclass(frozen=True)
class ChallengerWindow:
    """Champion and challenger on the same labelled predictions of one window, once no label can still come.

    McNemar's exact test (one-sided): ``p_value`` is the chance that the challenger, no better than
    the champion, is right alone on at least ``challenger_only`` of the events where exactly one of
    them is right; ``challenger_better`` when it is below ``alpha`` (the window's share of the
    model's false-alarm budget).
    """

    model: str
    window_start_ms: int
    window_length_ms: int
    count: int  # labelled predictions both models decided
    champion_accuracy: float | None
    challenger_accuracy: float | None
    champion_only: int  # right, where the challenger was wrong
    challenger_only: int  # right, where the champion was wrong
    p_value: float
    alpha: float
    challenger_better: bool


@dataclass(frozen=True)
class DetectorSignal:
    """A streaming detector fired on one event."""

    model: str
    model_version: str
    feature: str
    detector: str
    event_index: int  # position of the event in the model's accepted stream (0-based)
    event_time_ms: int
    statistic: float
    # The joint-drift test's signal: the features that changed most, with their shares, largest first.
    evidence: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorSignal:
        """The signal of ``dataclasses.asdict`` (through JSON: lists back to tuples)."""
        return cls(
            model=str(data["model"]),
            model_version=str(data["model_version"]),
            feature=str(data["feature"]),
            detector=str(data["detector"]),
            event_index=int(data["event_index"]),
            event_time_ms=int(data["event_time_ms"]),
            statistic=float(data["statistic"]),
            evidence=tuple((str(name), float(share)) for name, share in data.get("evidence", ())),
        )


#: The ``feature`` of a joint-drift signal (it is about how the numeric features vary together).
JOINT_FEATURE = "(joint)"

#: Why a label was not joined (the keys of ``LabelJoin.label_counts`` besides ``joined`` and ``early``).
LABEL_REASONS = ("duplicate", "after_horizon", "before_prediction", "unknown_prediction", "evicted")

#: What became of a prediction (the keys of ``LabelJoin.prediction_counts``).
PREDICTION_OUTCOMES = ("joined", "unlabelled", "duplicate_prediction", "evicted")

#: The ``feature`` of a concept-drift signal (it is about the labelled predictions' errors).
LABELS_FEATURE = "(labels)"


class AlertKind(enum.StrEnum):
    """What an alert is about: the one list of alert kinds (metric labels, docs and rules derive from it)."""

    MEAN_SHIFT = "mean_shift"  # Page-Hinkley on a numeric field or the score
    DISTRIBUTION_DRIFT = "distribution_drift"  # a closed window's PSI against the reference
    SCORE_CHANGE = "score_change"  # ADWIN on the prediction score
    SPREAD_CHANGE = "spread_change"  # the spread test (ScaleShift) on a numeric field or the score
    SCHEMA_CHANGE = "schema_change"  # a writer schema that differs from the contract
    DATA_QUALITY = "data_quality"  # a window over a data-quality budget
    NO_DATA = "no_data"  # windows without a usable event
    JOINT_DRIFT = "joint_drift"  # the joint-drift test (JointShift) on the model's numeric features
    CONCEPT_DRIFT = "concept_drift"  # the error of labelled predictions rose (ConceptDriftDetector)
    PERFORMANCE_DROP = "performance_drop"  # a window's accuracy estimated from its scores fell (CBPE)
    CHALLENGER_BETTER = "challenger_better"  # the online challenger beat the production model (McNemar), a recommendation


@dataclass(frozen=True)
class Alert:
    """Something on-call should look at. ``alert_id`` is deterministic (see :func:`alert_identifier`)."""

    alert_id: str
    model: str
    model_version: str
    kind: str  # an AlertKind value
    feature: str | None
    detector: str
    severity: str  # "warning" | "critical"
    window_start_ms: int | None
    event_time_ms: int
    score: float
    threshold: float
    message: str


@dataclass(frozen=True)
class SchemaChangeRecord:
    """A writer schema that differs from the contract, reported once per writer schema."""

    model: str
    writer_id: str
    compatible: bool
    missing_fields: tuple[str, ...]
    new_fields: tuple[str, ...]
    type_changes: tuple[str, ...]
    description: str
    first_seen_event_time_ms: int | None


@dataclass(frozen=True)
class WindowPartial:
    """One partition's share of a closed window of a model split over partitions: mergeable, not yet compared.

    A model whose topic has several partitions gets one engine per partition; each closes its windows
    into partials (counts, and per field the window state of :mod:`~driftline.stream.monitor.window_state`
    as ``to_state()`` gives it), which :class:`~driftline.stream.monitor.merge.WindowMerger` merges into
    the model's windows. ``undated`` counts rejected events without an event time that the partition
    attributes to this window (they explain a gap).
    """

    model: str
    model_version: str
    window_start_ms: int
    window_length_ms: int
    events: int
    accepted: int
    rejected_by_reason: tuple[tuple[str, int], ...]
    undated: int
    fields: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class PartialSignal:
    """A detector signal of one partition of a split model, for the merger to turn into (gated) alerts.

    ``row`` is the event's position among the partition's decoded events: with the detector and the
    field it orders a partition's signals, so the merger recognises one sent again after a restart.
    """

    signal: DetectorSignal
    threshold: float
    row: int


@dataclass(frozen=True)
class AlertResolution:
    """The end of an incident: the alert that opened it is resolved (see :mod:`~driftline.stream.monitor.alerts`).

    ``resolved_at_ms`` is event time: the quiet period after ``last_signal_ms``, the incident's last
    signal; ``signals`` counts the signals (and failed window checks) it gathered.
    """

    alert: Alert  # the alert that opened the incident
    resolved_at_ms: int
    last_signal_ms: int
    signals: int

    @property
    def alert_id(self) -> str:
        return self.alert.alert_id

    @property
    def kind(self) -> str:
        return self.alert.kind


@dataclass(frozen=True)
class PerformancePartial:
    """One partition's label accumulators of a window of a split model (the merger sums the partitions').

    ``realised`` is the window's accumulator of :class:`~driftline.stream.monitor.performance.PerformanceWindows`
    (counts, confusion matrix and exact float sums), ``estimate`` that of
    :class:`~driftline.stream.monitor.estimation.EstimateWindows` (integer sums), both as they stand
    now: a later partial of the same window and partition replaces this one. Both are exact sums, so
    the model's metrics are the same bits as one engine's on all the labels.
    """

    window_start_ms: int
    realised: list[Any] | None
    estimate: list[int] | None


@dataclass(frozen=True)
class ObservedErrors:
    """One partition's labels released in observation order (label time, prediction id), with their errors.

    The merger merges the partitions' streams in the same order for the model's concept-drift test.
    """

    label_times_ms: list[int]
    prediction_ids: list[str]
    errors: list[float]


@dataclass(frozen=True)
class ChallengerPartial:
    """One partition's comparison of champion and its challenger on a window no label can still reach.

    ``counts``: compared, champion right, challenger right, only the champion right, only the challenger right.
    """

    window_start_ms: int
    counts: tuple[int, int, int, int, int]


@dataclass
class BatchResult:
    """Everything one call into the engine produced."""

    feature_windows: list[FeatureWindow] = field(default_factory=list)
    model_windows: list[ModelWindow] = field(default_factory=list)
    signals: list[DetectorSignal] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    resolved_alerts: list[AlertResolution] = field(default_factory=list)
    # The model's open incidents after this call, (alert id, kind, field or None) each (None: this call
    # cannot tell, e.g. one partition of a split model, whose merger keeps the incidents).
    open_alerts: list[tuple[str, str, str | None]] | None = None
    schema_changes: list[SchemaChangeRecord] = field(default_factory=list)
    window_partials: list[WindowPartial] = field(default_factory=list)
    partial_signals: list[PartialSignal] = field(default_factory=list)
    performance_windows: list[PerformanceWindow] = field(default_factory=list)
    challenger_windows: list[ChallengerWindow] = field(default_factory=list)
    # One partition of a split model: its label accumulators, released errors and comparisons, for the merger.
    performance_partials: list[PerformancePartial] = field(default_factory=list)
    observed_errors: list[ObservedErrors] = field(default_factory=list)
    challenger_partials: list[ChallengerPartial] = field(default_factory=list)
    accepted: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    late_events: int = 0
    # Labels: what became of the labels and predictions of this call (label_join's reasons and outcomes).
    label_counts: dict[str, int] = field(default_factory=dict)

    def extend(self, other: BatchResult) -> None:
        """Append ``other``'s records and add its counters to this result."""
        self.feature_windows.extend(other.feature_windows)
        self.model_windows.extend(other.model_windows)
        self.signals.extend(other.signals)
        self.alerts.extend(other.alerts)
        self.resolved_alerts.extend(other.resolved_alerts)
        if other.open_alerts is not None:
            self.open_alerts = other.open_alerts
        self.schema_changes.extend(other.schema_changes)
        self.window_partials.extend(other.window_partials)
        self.partial_signals.extend(other.partial_signals)
        self.accepted += other.accepted
        for reason, count in other.rejected_by_reason.items():
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + count
        self.late_events += other.late_events
        self.performance_windows.extend(other.performance_windows)
        self.challenger_windows.extend(other.challenger_windows)
        self.performance_partials.extend(other.performance_partials)
        self.observed_errors.extend(other.observed_errors)
        self.challenger_partials.extend(other.challenger_partials)
        for key, count in other.label_counts.items():
            self.label_counts[key] = self.label_counts.get(key, 0) + count

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


_MAX_BIGINT = 2**63 - 1
_MAX_PARTITION = 2**31 - 1


@dataclass(frozen=True)
class Checkpoint:
    """How far a worker got in one partition, with the engine state that goes with that offset.

    A checkpoint store (``driftline.stream.runner.CheckpointStore``) commits it in the transaction of the
    results it accounts for, and loads it back when a runner (re)starts on the partition.

    Parameters
    ----------
    consumer_group, topic, partition
        The key: one checkpoint per partition of a topic per consumer group.
    next_offset
        Offset of the first message whose effects are not in the tables (last processed + 1).
    engine_state
        ``MonitorEngine.to_state()``, JSON-serialisable. Stored as zlib of its UTF-8 JSON, and read
        back as JSON gives it: tuples return as lists, dictionary keys as strings.
    consumed, accepted, dead_lettered
        Cumulative message counts of the partition; ``consumed == accepted + dead_lettered``.

    Raises
    ------
    ValueError
        A key field is empty, a number is negative or beyond its column (partition: 32 bits,
        offsets and counts: 64 bits), or the counts do not reconcile.

    Examples
    --------
    >>> Checkpoint("driftline", "predictions.churn", 0, next_offset=120, engine_state={},
    ...     consumed=120, accepted=118, dead_lettered=3)
    Traceback (most recent call last):
    ...
    ValueError: consumed must equal accepted + dead_lettered, got 120 != 118 + 3
    """

    consumer_group: str
    topic: str
    partition: int
    next_offset: int
    engine_state: dict[str, Any]
    consumed: int
    accepted: int
    dead_lettered: int

    def __post_init__(self) -> None:
        for name in ("consumer_group", "topic"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if not 0 <= self.partition <= _MAX_PARTITION:
            raise ValueError(f"partition must be in [0, 2**31 - 1], got {self.partition}")
        for name in ("next_offset", "consumed", "accepted", "dead_lettered"):
            if not 0 <= getattr(self, name) <= _MAX_BIGINT:
                raise ValueError(f"{name} must be in [0, 2**63 - 1], got {getattr(self, name)}")
        if self.consumed != self.accepted + self.dead_lettered:
            raise ValueError(
                f"consumed must equal accepted + dead_lettered, got {self.consumed} != "
                f"{self.accepted} + {self.dead_lettered}"
            )
        if not isinstance(self.engine_state, dict):
            raise ValueError(f"engine_state must be a dict, got {type(self.engine_state).__name__}")



def describe_alert(alert: Alert) -> str:
    """One line for a terminal or a log: when, what, which feature, how strong, why.

    >>> describe_alert(Alert("a1", "churn", "v1", "mean_shift", "age", "page_hinkley", "warning", None,
    ...     1_767_225_600_000, 12.5, 10.0, "Page-Hinkley detected a mean shift in age"))  # doctest: +NORMALIZE_WHITESPACE
    'ALERT WARNING  2026-01-01T00:00:00Z mean_shift  age  page_hinkley score=12.5 threshold=10 :: Page-Hinkley detected a mean shift in age'
    """
    where = alert.feature or "-"
    return (
        f"ALERT {alert.severity.upper():8s} {iso_time(alert.event_time_ms)} {alert.kind:18s} {where:22s} "
        f"{alert.detector} score={alert.score:.4g} threshold={alert.threshold:.4g} :: {alert.message}"
    )


def iso_time(ms: int) -> str:
    """UTC ISO-8601 time of a millisecond timestamp, to the second."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def alert_identifier(*parts: object) -> str:
    """A stable id from the alert's natural key, so re-processing upserts instead of duplicating."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8"))
    return digest.hexdigest()[:24]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, FeatureWindow):
            return _plain(value.deterministic_dict())
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        # repr() of a float is exact and round-trips; NaN/inf become strings so the JSON is valid.
        return value if value == value and abs(value) != float("inf") else repr(value)
    return value


def to_canonical_json(records: Any) -> str:
    """Canonical JSON of engine results: sorted keys, exact floats, KLL quantiles left out."""
    return json.dumps(_plain(records), sort_keys=True, separators=(",", ":"))
