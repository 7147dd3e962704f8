"""Reference profiles: what a model's inputs and outputs looked like when it was trained.

A profile is built once per model version from reference data (``driftline baseline`` reads it from
Parquet) and stored with that version. It holds, per contract field, everything the engine compares
live windows with — quantile bin edges and reference counts, categories and their counts, the
calibrated weights of the windows' PSI threshold — and the calibrated streaming detectors' initial
states, so a worker never re-calibrates on the hot path. Every stored field is read by the engine
(or, ``source`` and ``contract_version``, by the shells that load profiles).

Calibration note: the detectors' thresholds account for heavy tails and autocorrelation *as seen in
the reference data*. Training sets are usually shuffled, which hides the autocorrelation of the live
stream; calibrate from a time-ordered stretch of production data when the stream is autocorrelated.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.detectors import distances, sketches
from driftline.detectors.adwin import ADWIN
from driftline.detectors.calibration import MINIMUM_REFERENCE_LENGTH
from driftline.detectors.distances import quantile_bin_edges
from driftline.detectors.joint import JointShift
from driftline.detectors.page_hinkley import PageHinkley
from driftline.detectors.psi import WindowPSIThreshold
from driftline.detectors.scale import ScaleShift
from driftline.detectors.seasonal import PERIODS, SeasonalCycle, find_cycle
from driftline.schemas.contract import Contract, FieldContract
from driftline.schemas.errors import DriftlineError

from .budget import joint_field_names, reference_event_rate
from .concept import ConceptDriftDetector
from .estimation import MINIMUM_LABELLED, ConfidenceEstimator
from .performance import label_task

__all__ = ["FeatureProfile", "ProfileError", "ReferenceProfile", "build_reference_profile"]

#: Format 3: the reference's event rate, and detectors that carry what re-targeting them needs
#: (budgets in time: the engine aims them at the model's false alarms per month). Format 2 had PSI
#: weights from the reference (the calibrated window threshold) instead of format 1's dependence factor.
PROFILE_FORMAT = 3

#: The false-alarm rate per event the stored detectors are calibrated at. It is only where they start:
#: the engine re-targets them to the model's budget (:mod:`~driftline.stream.monitor.budget`).
NOMINAL_FALSE_ALARM_RATE = 1e-8

#: Pseudo-window length of the bootstrap that calibrates the windows' PSI threshold (capped at half
#: the reference): windows of a thousand events carry the short-range dependence of the stream.
PSI_CALIBRATION_WINDOW = 1000


class ProfileError(DriftlineError):
    """A reference profile cannot be built or read."""


@dataclass(frozen=True)
class FeatureProfile:
    """Reference summary of one field."""

    name: str
    kind: str  # "numeric" | "categorical"
    rows: int  # reference values summarised (non-null, finite / known)
    null_fraction: float
    counts: tuple[int, ...]  # per bin (numeric) or per category + a final "unseen" bucket (categorical)
    bin_edges: tuple[float, ...] = ()  # numeric: inner edges; the outer edges are -inf/+inf
    categories: tuple[str, ...] = ()
    mean: float | None = None
    std: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    psi_weights: tuple[float, ...] = ()  # n·PSI ≈ (1 + n/rows) · Σ w_j χ²(1) under the reference (detectors/psi.py)
    page_hinkley: dict[str, Any] | None = None
    adwin: dict[str, Any] | None = None
    scale_shift: dict[str, Any] | None = None  # the spread test (absent from profiles written before it)
    cycle: dict[str, Any] | None = None  # the daily or weekly cycle of the mean (detectors/seasonal.py), if any
    seasonal_counts: tuple[tuple[int, ...], ...] = ()  # with a cycle: the bin counts of each hour of the day/week

    @functools.cached_property
    def full_bin_edges(self) -> np.ndarray:
        """Histogram edges with the unbounded outer bins (numeric fields)."""
        return np.concatenate(([-np.inf], np.asarray(self.bin_edges, dtype=np.float64), [np.inf]))

    @functools.cached_property
    def bin_points(self) -> np.ndarray:
        """Where each bin's mass sits for the Wasserstein distance; the outer bins at the reference's extremes."""
        extremes = None if self.minimum is None or self.maximum is None else (self.minimum, self.maximum)
        return distances.bin_points(self.full_bin_edges, len(self.counts), extremes)

    @functools.cached_property
    def counts_array(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=np.int64)

    @functools.cached_property
    def seasonal_cycle(self) -> SeasonalCycle | None:
        return None if self.cycle is None else SeasonalCycle.from_dict(self.cycle)

    def at_time(self, time_ms: int) -> FeatureProfile:
        """The reference a window starting at ``time_ms`` is compared with: that hour's, for a field with a cycle."""
        cycle = self.seasonal_cycle
        if cycle is None or not self.seasonal_counts:
            return self
        index = int(cycle.bin_of(time_ms))
        view = self._hour_views.get(index)
        if view is None:
            counts = self.seasonal_counts[index]
            view = self._hour_views[index] = dataclasses.replace(
                self, counts=counts, rows=max(sum(counts), 1), seasonal_counts=(), cycle=None
            )
        return view

    @functools.cached_property
    def _hour_views(self) -> dict[int, FeatureProfile]:
        return {}

    @functools.cached_property
    def window_psi(self) -> WindowPSIThreshold:
        # The reference proportions let small windows use the exact null of n·PSI (detectors/psi.py).
        total = sum(self.counts)
        proportions = tuple(c / total for c in self.counts) if self.psi_weights and total else ()
        return WindowPSIThreshold(self.psi_weights, max(self.rows, 1), proportions)

    def psi_threshold(self, window_count: int, false_alarm_rate: float) -> float:
        """PSI above which a window of ``window_count`` values is improbable under the reference.

        The calibrated, statistically tested threshold of ``detectors/psi.py``
        (:class:`~driftline.detectors.psi.WindowPSIThreshold`), with the weights the reference's
        own bootstrap gave: it accounts for the bins' sampling error, the reference's size and the
        stream's autocorrelation.
        """
        return self.window_psi.threshold(window_count, false_alarm_rate)


@dataclass(frozen=True)
class ReferenceProfile:
    """Reference profile of one model version."""

    model: str
    model_version: str
    contract_version: int
    rows: int
    features: dict[str, FeatureProfile]
    source: str = ""  # where the reference data came from (logged when a worker loads the profile)
    events_per_second: float | None = None  # the reference's event rate (from its timestamps), if it has any
    joint_fields: tuple[str, ...] = ()  # the numeric features the joint-drift test watches, in its column order
    joint: dict[str, Any] | None = None  # the joint-drift test's calibrated state (None: too few features or rows)
    # From labelled reference data (None without labels): the task, the reference's error, the
    # concept-drift test's calibrated state and (classification) the score calibration for estimates.
    labels: dict[str, Any] | None = None

    def check_covers(self, contract: Contract) -> None:
        """Raise :class:`ProfileError` unless every field ``contract`` monitors has a summary here."""
        missing = [f.name for f in contract.monitored_fields if f.name not in self.features]
        if self.model != contract.model or missing:
            raise ProfileError(
                f"the reference profile of {self.model} {self.model_version} (built for contract version "
                f"{self.contract_version}) does not cover contract {contract.label}"
                + (f": no summary of {', '.join(missing)}" if missing else "")
                + "; run `driftline baseline` for it"
            )

    def to_json(self) -> str:
        data = {
            "format": PROFILE_FORMAT,
            "model": self.model,
            "model_version": self.model_version,
            "contract_version": self.contract_version,
            "rows": self.rows,
            "source": self.source,
            "events_per_second": self.events_per_second,
            "joint_fields": list(self.joint_fields),
            "joint": self.joint,
            "labels": self.labels,
            "features": {name: _feature_to_dict(f) for name, f in sorted(self.features.items())},
        }
        return json.dumps(data, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        try:
            data = json.loads(text)
            if data.get("format") != PROFILE_FORMAT:
                raise ProfileError(
                    f"reference profile format {data.get('format')!r} is not this driftline's ({PROFILE_FORMAT}); "
                    "run `driftline baseline` again to rebuild it"
                )
            features = {name: _feature_from_dict(name, f) for name, f in data["features"].items()}
            return cls(
                model=str(data["model"]),
                model_version=str(data["model_version"]),
                contract_version=int(data["contract_version"]),
                rows=int(data["rows"]),
                features=features,
                source=str(data.get("source", "")),
                events_per_second=None if data.get("events_per_second") is None else float(data["events_per_second"]),
                joint_fields=tuple(str(name) for name in data.get("joint_fields", ())),
                joint=data.get("joint"),
                labels=data.get("labels"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"malformed reference profile: {exc}") from exc


def _feature_to_dict(profile: FeatureProfile) -> dict[str, Any]:
    return {
        "kind": profile.kind,
        "rows": profile.rows,
        "null_fraction": profile.null_fraction,
        "counts": list(profile.counts),
        "bin_edges": list(profile.bin_edges),
        "categories": list(profile.categories),
        "mean": profile.mean,
        "std": profile.std,
        "minimum": profile.minimum,
        "maximum": profile.maximum,
        "psi_weights": list(profile.psi_weights),
        "page_hinkley": profile.page_hinkley,
        "adwin": profile.adwin,
        "scale_shift": profile.scale_shift,
        "cycle": profile.cycle,
        "seasonal_counts": [list(row) for row in profile.seasonal_counts],
    }


def _feature_from_dict(name: str, data: dict[str, Any]) -> FeatureProfile:
    return FeatureProfile(
        name=name,
        kind=str(data["kind"]),
        rows=int(data["rows"]),
        null_fraction=float(data["null_fraction"]),
        counts=tuple(int(c) for c in data["counts"]),
        bin_edges=tuple(float(e) for e in data["bin_edges"]),
        categories=tuple(str(c) for c in data["categories"]),
        mean=data.get("mean"),
        std=data.get("std"),
        minimum=data.get("minimum"),
        maximum=data.get("maximum"),
        psi_weights=tuple(float(w) for w in data["psi_weights"]),
        page_hinkley=data.get("page_hinkley"),
        adwin=data.get("adwin"),
        scale_shift=data.get("scale_shift"),
        cycle=data.get("cycle"),
        seasonal_counts=tuple(tuple(int(c) for c in row) for row in data.get("seasonal_counts", ())),
    )


def build_reference_profile(
    contract: Contract,
    columns: dict[str, np.ndarray],
    *,
    model_version: str,
    event_times_ms: np.ndarray | None = None,
    n_bins: int = 20,
    source: str = "",
    seasonality: str = "auto",
    labels: np.ndarray | None = None,
) -> ReferenceProfile:
    """Summarise reference data and calibrate the streaming detectors for one model version.

    Parameters
    ----------
    contract
        The model's contract; every monitored field must be present in ``columns``.
    columns
        Reference data in time order if it has any: float64 arrays (NaN = missing) for numeric
        fields, object arrays of ``str`` (``None`` = missing) for categorical fields.
    model_version
        The version the profile belongs to.
    event_times_ms
        Event times of the rows (epoch milliseconds), if the reference has them: the rows are put in
        time order, the profile keeps the reference's event rate (which the engine spreads the model's
        false-alarm budget over), and numeric fields are tested for a daily or weekly cycle.
    seasonality
        ``auto`` (a cycle where the reference shows one), ``daily`` or ``weekly`` (fit that cycle on
        every numeric field), ``none``. A cycle needs event times spanning two whole periods.
    n_bins
        Quantile bins per numeric feature for PSI, Jensen–Shannon, KS and Wasserstein.
    labels
        The observed outcome of each row (NaN where unknown), if the reference is labelled: the
        concept-drift test is calibrated on the model's errors there, and for a classifier the
        calibration of its scores that estimates performance before labels arrive.
    """
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    fields = contract.monitored_fields
    missing = [f.name for f in fields if f.name not in columns]
    if missing:
        raise ProfileError(f"reference data lacks contract fields: {', '.join(missing)}")
    rows = {len(columns[f.name]) for f in fields}
    if len(rows) != 1:
        raise ProfileError(f"reference columns differ in length: {sorted(rows)}")
    total = rows.pop()
    if total < 1000:
        raise ProfileError(f"reference data has {total} rows; at least 1000 are needed to calibrate")
    if seasonality not in ("auto", "none", *PERIODS):
        raise ValueError(f"seasonality must be auto, none, daily or weekly, got {seasonality!r}")
    outcome: np.ndarray | None = None
    if labels is not None:
        outcome = np.asarray(labels, dtype=np.float64)
        if outcome.shape != (total,):
            raise ProfileError(f"reference labels ({outcome.size}) and columns ({total}) differ in length")
    times: np.ndarray | None = None
    if event_times_ms is not None:
        if len(event_times_ms) != total:
            raise ProfileError(f"reference event times ({len(event_times_ms)}) and columns ({total}) differ in length")
        order = np.argsort(np.asarray(event_times_ms, dtype=np.int64), kind="stable")  # the detectors calibrate in time order
        times = np.asarray(event_times_ms, dtype=np.int64)[order]
        columns = {f.name: np.asarray(columns[f.name])[order] for f in fields}
        outcome = None if outcome is None else outcome[order]
    elif seasonality in PERIODS:
        raise ProfileError(f"a {seasonality} cycle needs the reference's event times")
    features: dict[str, FeatureProfile] = {}
    residuals: dict[str, np.ndarray] = {}  # numeric columns with their cycle taken away
    for spec in fields:
        if spec.kind == "categorical":
            features[spec.name] = _categorical_profile(spec, columns[spec.name])
        else:
            features[spec.name], residuals[spec.name] = _numeric_profile(
                spec, columns[spec.name], NOMINAL_FALSE_ALARM_RATE, n_bins, times, "none" if times is None else seasonality
            )
    joint_fields, joint = _joint_profile(fields, residuals)
    return ReferenceProfile(
        model=contract.model,
        model_version=model_version,
        contract_version=contract.version,
        rows=total,
        features=features,
        source=source,
        events_per_second=reference_event_rate(event_times_ms),
        joint_fields=joint_fields,
        joint=joint,
        labels=None if outcome is None else _label_profile(contract, columns, outcome),
    )


def _label_profile(contract: Contract, columns: dict[str, np.ndarray], outcome: np.ndarray) -> dict[str, Any]:
    """What labelled reference rows give the engine: the error rate, the concept-drift test, the score calibration."""
    task = label_task(contract)
    score, decision = contract.find_role("prediction_score"), contract.find_role("prediction_class")
    if score is None:
        raise ProfileError(f"labels need a prediction_score field, and contract {contract.label} has none")
    scores = np.asarray(columns[score.name], dtype=np.float64)
    classes = None if decision is None else np.asarray(columns[decision.name], dtype=np.float64)
    usable = np.isfinite(outcome) & np.isfinite(scores) & (True if classes is None else np.isfinite(classes))
    if task == "classification":
        invalid = usable & ~np.isin(outcome, (0.0, 1.0))
        if invalid.any():
            raise ProfileError(f"labels of a classifier must be 0 or 1; {int(invalid.sum())} reference labels are not")
    if int(usable.sum()) < MINIMUM_LABELLED:
        raise ProfileError(f"{int(usable.sum())} labelled reference rows; at least {MINIMUM_LABELLED} are needed")
    y, s = outcome[usable], scores[usable]
    c = None if classes is None else classes[usable]
    concept = ConceptDriftDetector.calibrate(s, y, NOMINAL_FALSE_ALARM_RATE, task=task, reference_classes=c)
    errors = concept.errors(s, y, c)
    estimator = ConfidenceEstimator.fit(s, y) if task == "classification" else None
    # What the estimate says of the reference itself: what a live window's estimate is held against.
    expected = None if estimator is None else estimator.estimate(s, c).accuracy
    return {"task": task, "rows": int(usable.sum()), "mean_error": float(errors.mean()),
            "concept": concept.to_state(), "estimator": None if estimator is None else estimator.to_state(),
            "estimated_accuracy": expected}


def _joint_profile(fields: tuple[FieldContract, ...], columns: dict[str, np.ndarray]) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    """The joint-drift test calibrated on the reference rows where every numeric feature is present."""
    names = joint_field_names(fields)
    if len(names) < 2:
        return (), None
    matrix = np.column_stack([np.asarray(columns[name], dtype=np.float64) for name in names])
    complete = matrix[np.isfinite(matrix).all(axis=1)]
    try:
        test = JointShift.calibrate(complete, false_alarm_rate=NOMINAL_FALSE_ALARM_RATE)
    except ValueError:  # too few complete rows to calibrate on: the model runs without the joint test
        return (), None
    return names, test.to_state()


def _numeric_profile(
    spec: FieldContract, raw: np.ndarray, false_alarm_rate: float, n_bins: int, times: np.ndarray | None, seasonality: str
) -> tuple[FeatureProfile, np.ndarray]:
    """The field's profile, and its values with the cycle (if any) taken away (NaN where missing)."""
    values = np.asarray(raw, dtype=np.float64)
    present = np.isfinite(values)
    finite = values[present]
    if finite.size < 1000:
        raise ProfileError(f"field {spec.name!r} has only {finite.size} finite reference values; need >= 1000")
    edges = quantile_bin_edges(finite, n_bins)
    # Binned by the window sketch itself, so reference and window counts share one definition of a bin.
    counts = sketches.numeric_add(sketches.numeric_initialize(edges), finite).histogram
    # Bin of each value in time order (the sketch's own rule: bin i holds edges[i] <= v < edges[i + 1]).
    bins = np.searchsorted(edges[1:-1], finite, side="right")
    value_times = None if times is None else times[present]
    try:
        cycle = None if value_times is None else find_cycle(finite, value_times, seasonality)
    except ValueError as exc:
        raise ProfileError(f"field {spec.name!r}: {exc}") from exc
    # The detectors watch what the clock does not explain: calibrated on the residual of the cycle.
    residual = finite
    seasonal_counts: tuple[tuple[int, ...], ...] = ()
    if cycle is not None and value_times is not None:
        residual = cycle.remove(finite, value_times)
        hour_bins = cycle.bin_of(value_times)
        table = np.zeros((cycle.bins, len(counts)), dtype=np.int64)
        np.add.at(table, (hour_bins, bins), 1)
        seasonal_counts = tuple(tuple(int(c) for c in row) for row in table)
    detector = PageHinkley.calibrate(residual, false_alarm_rate=false_alarm_rate)
    adwin = ADWIN.calibrate(residual, false_alarm_rate=false_alarm_rate) if spec.role == "prediction_score" else None
    spread = ScaleShift.calibrate(residual, false_alarm_rate=false_alarm_rate)
    residuals = np.full(values.shape, np.nan)
    residuals[present] = residual
    profile = FeatureProfile(
        name=spec.name,
        kind="numeric",
        rows=int(finite.size),
        null_fraction=float(1.0 - finite.size / values.size),
        counts=tuple(int(c) for c in counts),
        bin_edges=tuple(float(e) for e in edges[1:-1]),
        mean=float(finite.mean()),
        std=float(finite.std(ddof=1)),
        minimum=float(finite.min()),
        maximum=float(finite.max()),
        psi_weights=_psi_weights(bins, len(counts)),
        page_hinkley=detector.to_state(),
        adwin=None if adwin is None else adwin.to_state(),
        scale_shift=spread.to_state(),
        cycle=None if cycle is None else cycle.to_dict(),
        seasonal_counts=seasonal_counts,
    )
    return profile, residuals


def _categorical_profile(spec: FieldContract, raw: np.ndarray) -> FeatureProfile:
    values = np.asarray(raw, dtype=object)
    present = values[np.array([v is not None for v in values], dtype=bool)]
    categories = tuple(spec.categories) if spec.categories else tuple(sorted({str(v) for v in present}))
    index = {c: i for i, c in enumerate(categories)}
    # Bucket of each value in time order; the last bucket holds values outside the categories.
    bins = np.fromiter((index.get(str(v), len(categories)) for v in present), dtype=np.int64, count=present.size)
    counts = np.bincount(bins, minlength=len(categories) + 1)
    return FeatureProfile(
        name=spec.name,
        kind="categorical",
        rows=int(present.size),
        null_fraction=float(1.0 - present.size / max(values.size, 1)),
        counts=tuple(int(c) for c in counts),
        categories=categories,
        psi_weights=_psi_weights(bins, len(counts)),
    )


def _psi_weights(bins: np.ndarray, n_bins: int) -> tuple[float, ...]:
    """Calibrated weights of the windows' PSI threshold; none (never tested) for a reference too small to tell."""
    if bins.size < MINIMUM_REFERENCE_LENGTH:
        return ()
    return WindowPSIThreshold.calibrate(bins, n_bins, window_size=PSI_CALIBRATION_WINDOW).weights
