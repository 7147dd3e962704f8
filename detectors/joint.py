"""A calibrated test for a change in the joint (correlation) structure of a model's numeric features.

The per-feature tests watch marginals: the mean (:mod:`.page_hinkley`) and the spread
(:mod:`.scale`) of each feature on its own. A correlation that flips from +0.7 to -0.7 leaves every
marginal as it was, and they stay silent. This test watches the directions in which the reference's
correlations *suppress* variance. Fitted on the reference:

1. each feature is standardised robustly (median, 1.4826·MAD, the fallbacks of
   :func:`.calibration.robust_center_scale`), Huber-clipped at ``clip`` and re-centred;
2. a PCA (numpy SVD) of that matrix splits its principal components into *retained* ones (variance at
   least ``minor_variance_ratio`` times the average component variance, at least one) and the
   *watched* minor ones (the rest, at least one). Two features with correlation rho give a component
   of variance about ``1 - |rho|`` along their difference (or sum): that is where a change of rho
   shows most.

Per event, the statistic is the root mean square of the event's coordinates on the watched
components, each divided by its reference standard deviation (whitened),

    s_t = sqrt(|u_t|^2 / m),    u_t = W' (clip((x_t - center) / scale) - offset),

and a change in the mean of ``s`` is what the two-sided, calibrated Page–Hinkley test of
:mod:`.page_hinkley` detects (robust standardisation, Huber clip, long-run variance of the reference
series taken in time order, the same safety factor). A flip or a weakening of a correlation raises
``s``; a strengthening lowers it.

Choices, and the measurements behind them. Streams: those of ``tests/unit/detectors/test_joint.py``
(6 features: an AR(1) feature and a Gaussian partner with rho = 0.7, a Student-t(3), a Gaussian pair
with rho = 0.5, an independent Gaussian; reference of 50,000 events, seed 1); target 1e-6 / 13 per
event, a 1e-6 budget shared by this test and a mean and a spread test per feature; 40 trials per
change, 1,000 events before it; median delays in events, every change found in 40 of 40 unless
said. The alternatives were variants of this module run on the same streams during development.

* *Watched components by variance ratio, not by a share of explained variance.* Keeping the
  components that explain 90 % of the variance left only the rho = 0.7 pair's direction watched: a
  flip of the rho = 0.5 pair (to -0.5) or a weakening of it (to 0.2) was found in 0 of 40 trials.
  With ``minor_variance_ratio = 0.9`` both pairs are watched: the flips are found in 46 and 81
  events, rho = 0.7 going to 0.4 in 162, to 0.95 in 124, rho = 0.5 going to 0.2 in 361. The price is
  on the first pair, watched alone by the 90 % rule: 40, 109 and 62 there.
* *Whitened, not the plain reconstruction error.* The plain squared residual weights a direction by
  its reference variance, so the most suppressed direction, where a correlation change shows most,
  counts least. For a near-redundant pair (a reference with rho = 0.98) going to 0.9 the whitened test
  took 54 events, the plain one 1,596 (found in 36 of 40); to 0.95, 110 events against never. On the
  streams above the two are close (plain: 52, 217 and 170 on the rho = 0.7 pair, better on the
  rho = 0.5 pair with 69 and 282).
* *Square root of the mean square.* A sum of a few squares is right-skewed, and the Huber clip of
  the Page–Hinkley calibration discards part of the upper tail, where the evidence is; its square
  root is nearly symmetric (Fisher's approximation). Against the raw sum: delays 1-14 % shorter on
  four of the five changes (4 % longer on the fifth), and 25 false alarms per million events at a
  1e-4 target against 34.

Where it is blind: a change inside the retained components. Chiefly, a *new* correlation between
features that were uncorrelated in the reference (0 to 0.6, or 0.3, between the fourth and the
sixth feature above) was found in 0 of 40 trials: in the reference, the sum and the difference of
the two both have about the average variance, so both lie among the retained components, and the
new correlation moves variance from one to the other without touching a watched one. One
Page–Hinkley test per product of two
standardised features (each at the rate divided by the number of pairs) found it in 40 of 40, in
114 and 420 events median, but that is one test per pair, 136 for 17 features. The test also
responds to a mean shift of a feature that loads on a watched component, which the per-feature tests
report as well.

Cost (``python tests/benchmarks/joint_cost.py``: one core, batches of 50,000 events × 17 features,
9 components watched, best of 3 passes over 1,000,000 events, 2026-11-29 16:04 UTC): 2.4 million
events/s on a stream like the reference (79.3 million for one one-feature Page–Hinkley test in the
same run); 1.4 million while it signals every 68 events; the checkpointed state is about 6.5 kB of
JSON. Keeping each feature's share of the departure (:meth:`JointShift.contributions`) costs most of
it: the statistic alone runs at 11.3 million (6.1 million with the shares by loadings it replaced).

Rows with a NaN or an infinity are skipped (counted in :attr:`JointShift.n_skipped`) rather than
imputed: a missing value replaced by the reference median sits off the correlation the other features
keep, so imputing would turn missing data into evidence of joint drift.

The statistic of each event depends on that event alone, and the Page–Hinkley test is batching
invariant, so any split of a stream into batches gives the same signals and the same state; the
projection is summed feature by feature, in a fixed order, rather than by a BLAS product whose
summation order can depend on the batch's size.
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from .base import DriftDetector
from .calibration import MINIMUM_REFERENCE_LENGTH, VARIANCE_FLOOR, robust_center_scale, validate_false_alarm_rate
from .page_hinkley import PageHinkley

__all__ = ["JointShift"]

#: A principal component is watched when its reference variance is below this fraction of the
#: average component variance (1 for standardised, uncorrelated features). 0.9 rather than 1: the
#: components of uncorrelated features scatter around the average by sampling noise, and watching
#: them adds noise without adding a direction a correlation change would show in. With 1 on the
#: streams of the module docstring, the independent feature's component (variance 0.985) was watched
#: too and the five delays were 8-56 % longer (measured on a development variant of the statistic,
#: the cube root of the mean square).
DEFAULT_MINOR_VARIANCE_RATIO = 0.9

#: Huber clip of the robustly standardised features, in robust standard deviations: one extreme
#: value of one feature moves the statistic by a bounded amount.
DEFAULT_CLIP = 3.0

#: Time constant, in events, of the exponential forgetting behind :meth:`JointShift.contributions`:
#: of the order of the delays measured for the changes in the module docstring (46-361 events).
DEFAULT_MEMORY = 200.0

#: Watched variances are floored at this fraction of the average component variance. An exact
#: linear relation between features (a total and its parts) leaves a direction of zero variance;
#: whitening it at face value would turn rounding noise into evidence.
WHITENING_FLOOR = 1e-6

#: Reference events needed per feature besides MINIMUM_REFERENCE_LENGTH: a covariance of p features
#: has p (p + 1) / 2 entries to estimate.
MINIMUM_EVENTS_PER_FEATURE = 10


def _vector(values: npt.ArrayLike, name: str, size: int | None = None) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    if array.ndim != 1 or (size is not None and array.size != size):
        expected = "one-dimensional" if size is None else f"one-dimensional of length {size}"
        raise ValueError(f"{name} must be {expected}, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def _positive(value: float, name: str, minimum: float = 0.0) -> float:
    number = float(value)
    if not (math.isfinite(number) and number > minimum):
        raise ValueError(f"{name} must be a finite number > {minimum:g}, got {value!r}")
    return number


class JointShift(DriftDetector):
    """Two-sided test for a change in the correlation structure of several features (see the module docstring).

    Unlike the one-stream detectors, it consumes *rows*: :meth:`update` takes one event (a vector of
    ``n_features`` values), :meth:`update_many` a 2-D array, events × features, in arrival order.
    Signal indices are row indices.

    Parameters
    ----------
    center, scale, offset
        Per feature: the standardisation ``clip((x - center) / scale, -clip, clip) - offset``.
    components
        Watched principal components of the standardised reference, ``n_features × m`` with
        orthonormal columns, ``1 <= m < n_features``.
    variances
        Reference variance of each watched component (> 0), which whitens it.
    clip
        Huber clip of the standardised features (> 0).
    memory
        Time constant of :meth:`contributions`, in events (> 1).
    test
        Constructor parameters of the Page–Hinkley test on the statistic (as ``PageHinkley(**test)``);
        ``None``: an uncalibrated ``PageHinkley()``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(5)
    >>> def events(n, rho):  # two features with correlation rho, and an independent third
    ...     a, b, c = rng.standard_normal((3, n))
    ...     return np.column_stack([a, rho * a + np.sqrt(1 - rho**2) * b, c])
    >>> detector = JointShift.calibrate(events(20_000, 0.7), false_alarm_rate=1e-6)
    >>> int(detector.update_many(events(5_000, 0.7)).size)  # the reference's structure: no alarm
    0
    >>> hits = detector.update_many(events(2_000, -0.7))  # the correlation flips; each marginal stays N(0, 1)
    >>> 0 <= int(hits[0]) < 100  # found within a few dozen events
    True
    >>> shares = detector.signal_contributions[0]  # the first two features carry the change
    >>> bool(shares[0] + shares[1] > 0.95), bool(shares[2] < 0.05)
    (True, True)
    """

    state_type = "JointShift"

    def __init__(
        self,
        center: npt.ArrayLike,
        scale: npt.ArrayLike,
        offset: npt.ArrayLike,
        components: npt.ArrayLike,
        variances: npt.ArrayLike,
        clip: float = DEFAULT_CLIP,
        memory: float = DEFAULT_MEMORY,
        *,
        test: dict[str, Any] | None = None,
        feature_baseline: npt.ArrayLike | None = None,
    ) -> None:
        super().__init__()
        self.center = _vector(center, "center")
        features = self.center.size
        if features < 2:
            raise ValueError(f"center must hold at least 2 features, got {features}")
        self.scale = _vector(scale, "scale", features)
        if not (self.scale > 0.0).all():
            raise ValueError("scale must be > 0 for every feature")
        self.offset = _vector(offset, "offset", features)
        self.components = np.array(components, dtype=np.float64, order="C")
        if self.components.ndim != 2 or self.components.shape[0] != features or not 1 <= self.components.shape[1] < features:
            raise ValueError(f"components must have shape ({features}, m) with 1 <= m < {features}, got {self.components.shape}")
        if not np.isfinite(self.components).all():
            raise ValueError("components must be finite")
        self.variances = _vector(variances, "variances", self.components.shape[1])
        if not (self.variances > 0.0).all():
            raise ValueError("variances must be > 0")
        self.clip = _positive(clip, "clip")
        self.memory = _positive(memory, "memory", 1.0)
        self._test = PageHinkley(**(test or {}))
        self._whitening = self.components / np.sqrt(self.variances)
        self._loadings = self.components**2  # each column sums to 1: how a component's change splits over features
        self._decay = 1.0 - 1.0 / self.memory
        self._excess = np.zeros(self.components.shape[1])  # forgetting sums of (u_a^2 - 1), per watched component
        # Each feature's reference mean of its term of |u|^2 (see contributions); None in detectors
        # calibrated before it existed, which then split the components' departure by loadings.
        self.feature_baseline = None if feature_baseline is None else _vector(feature_baseline, "feature_baseline", features)
        self._feature_excess = np.zeros(features)  # forgetting sums of (c_j - baseline_j), per feature
        self._n_skipped = 0
        self._signal_contributions: list[np.ndarray] = []

    @property
    def n_features(self) -> int:
        """Width of an event."""
        return int(self.center.size)

    @property
    def n_skipped(self) -> int:
        """Rows skipped since construction because a value was NaN or infinite (counted in ``n_seen``)."""
        return self._n_skipped

    @property
    def threshold(self) -> float:
        """The threshold of the underlying Page–Hinkley test (in its standardised units)."""
        return self._test.threshold

    @property
    def signal_contributions(self) -> list[np.ndarray]:
        """:meth:`contributions` as they were at each signal of the last ``update``/``update_many`` call."""
        return [shares.copy() for shares in self._signal_contributions]

    def contributions(self) -> np.ndarray:
        """Share of each feature in the recent departure of the watched components from the reference.

        The squared norm of an event's whitened coordinates splits exactly over the features:
        ``|u|^2 = sum_j c_j`` with ``c_j = z_j * (P z)_j``, ``P = W diag(1/var) W'`` and ``z`` the
        standardised event. Each feature's departure is the exponentially forgotten sum (time constant
        ``memory`` events) of ``c_j`` minus its reference mean; the shares are their absolute values,
        normalised (all zeros before any departure). A feature whose mean shifts takes the share of
        its own term, not of the features it loads with; for a flipped correlation between two
        features, the two share most of it. (Detectors calibrated before this split the components'
        departure by their squared loadings.)
        """
        if self.feature_baseline is not None:
            weights = np.abs(self._feature_excess)
            total = float(weights.sum())
            return weights / total if total > 0.0 else np.zeros(self.n_features)
        weights = np.abs(self._excess)
        total = float(weights.sum())
        if not total > 0.0:
            return np.zeros(self.n_features)
        # Component by component, in a fixed order (not a BLAS product): a restored detector, whose arrays
        # may sit differently in memory, gives the same shares to the last bit.
        shares: np.ndarray = self._loadings[:, 0] * (weights[0] / total)
        for component in range(1, weights.size):
            shares += self._loadings[:, component] * (weights[component] / total)
        return shares

    def _feature_terms(self, coordinates: np.ndarray, by_feature: np.ndarray) -> np.ndarray:
        """``c_j`` of each event (features × events): the feature's term of the squared whitened norm."""
        # g = W diag(1/sqrt(var)) u, component by component in a fixed order (not a BLAS product).
        pulled: np.ndarray = self._whitening[:, 0:1] * coordinates[0]
        for component in range(1, coordinates.shape[0]):
            pulled += self._whitening[:, component : component + 1] * coordinates[component]
        pulled *= by_feature
        return pulled

    def retarget(self, false_alarm_rate: float) -> None:
        """Aim the test at a new false-alarm rate per event, keeping the fitted statistic and the state.

        Delegated to :meth:`PageHinkley.retarget` of the underlying test: the statistic's calibration
        (centre, scale, long-run variance) does not depend on the rate, only the threshold does.
        """
        self._test.retarget(false_alarm_rate)

    @classmethod
    def calibrate(
        cls,
        reference: npt.ArrayLike,
        false_alarm_rate: float = 1e-6,
        *,
        minor_variance_ratio: float = DEFAULT_MINOR_VARIANCE_RATIO,
        clip: float = DEFAULT_CLIP,
        shift: float = 0.375,
        memory: float = DEFAULT_MEMORY,
    ) -> JointShift:
        """A detector calibrated on reference events to a false-alarm rate per event.

        Parameters
        ----------
        reference
            Events × features: a stationary stretch of the stream, in time order (the test's
            threshold accounts for the autocorrelation it sees there).
        false_alarm_rate
            Target false alarms per event on a stream like the reference (two-sided: a rise and a
            fall of the statistic each get half).
        minor_variance_ratio
            A principal component is watched when its variance is below this fraction of the average
            component variance (in (0, 1]); at least one is watched and at least one retained.
        clip
            Huber clip of the robustly standardised features.
        shift
            Change of the statistic's mean the test is tuned for, in its reference standard
            deviations (as in :meth:`PageHinkley.calibrate`).
        memory
            Time constant of :meth:`contributions`, in events.

        Raises
        ------
        ValueError
            A reference that is not 2-D, has fewer than 2 features, holds a NaN or an infinity, or
            is too short (more than 200 events and at least 10 per feature are needed); or a bad
            parameter, named in the message.
        """
        rate = validate_false_alarm_rate(false_alarm_rate)
        ratio = _positive(minor_variance_ratio, "minor_variance_ratio")
        if ratio > 1.0:
            raise ValueError(f"minor_variance_ratio must be in (0, 1], got {minor_variance_ratio!r}")
        clip = _positive(clip, "clip")
        rows = np.asarray(reference, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] < 2:
            raise ValueError(f"reference must be two-dimensional (events × features) with at least 2 features, got shape {rows.shape}")
        events, features = rows.shape
        needed = max(MINIMUM_REFERENCE_LENGTH + 1, MINIMUM_EVENTS_PER_FEATURE * features)
        if events < needed:
            raise ValueError(f"reference has {events} events; calibration on {features} features needs at least {needed}")
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():
            raise ValueError(f"reference row {int(np.argmin(finite))} is not finite; drop such events before calibrating")
        center, scale = np.array([robust_center_scale(column) for column in rows.T]).T
        standardised = np.clip((rows - center) / scale, -clip, clip)
        offset = standardised.mean(axis=0)
        _, singular, directions = np.linalg.svd(standardised - offset, full_matrices=False)
        variances = singular**2 / events
        average = float(variances.mean())
        retained = min(max(int(np.count_nonzero(variances >= ratio * average)), 1), features - 1)
        watched = np.maximum(variances[retained:], max(WHITENING_FLOOR * average, VARIANCE_FLOOR))
        arguments: dict[str, Any] = {
            "center": center, "scale": scale, "offset": offset, "components": directions[retained:].T,
            "variances": watched, "clip": clip, "memory": memory,
        }
        fitted = cls(**arguments)
        series = fitted.statistic(rows)
        coordinates, by_feature = fitted._coordinates(rows)
        baseline = fitted._feature_terms(coordinates, by_feature).mean(axis=1)
        test = PageHinkley.calibrate(series, false_alarm_rate=rate, shift=shift)
        return cls(**arguments, test=test.to_state()["params"], feature_baseline=baseline)

    def _coordinates(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whitened coordinates on the watched components (components × events), and the standardised events (features × events)."""
        standardised = np.clip((rows - self.center) / self.scale, -self.clip, self.clip)
        standardised -= self.offset
        by_feature = np.ascontiguousarray(standardised.T)  # features × events: the sums below run along contiguous rows
        # Feature by feature, in a fixed order: each event's sum is the same whatever the batch size,
        # which a BLAS product does not promise (it was 3.1 ms against 5.2 ms per 50,000 events × 17 features).
        coordinates: np.ndarray = np.multiply.outer(self._whitening[0], by_feature[0])
        term = np.empty_like(coordinates)
        for feature in range(1, self.n_features):
            np.multiply(self._whitening[feature][:, np.newaxis], by_feature[feature], out=term)
            coordinates += term
        return coordinates, by_feature

    def _squared_coordinates(self, rows: np.ndarray) -> np.ndarray:
        """Squared whitened coordinates on the watched components, components × events."""
        coordinates, _ = self._coordinates(rows)
        coordinates *= coordinates
        return coordinates

    @staticmethod
    def _root_mean(squared: np.ndarray) -> np.ndarray:
        total = squared[0].copy()
        for component in range(1, squared.shape[0]):
            total += squared[component]
        root: np.ndarray = np.sqrt(total / squared.shape[0])
        return root

    def statistic(self, values: npt.ArrayLike) -> np.ndarray:
        """The per-event statistic ``s_t`` of finite events (events × features); no state changes."""
        return self._root_mean(self._squared_coordinates(self._as_rows(values)))

    def _as_rows(self, values: npt.ArrayLike) -> np.ndarray:
        rows = np.asarray(values, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"values must be two-dimensional, events × {self.n_features} features, got shape {rows.shape}")
        return rows

    def update(self, x: npt.ArrayLike) -> Self:
        """Process one event (``n_features`` values); afterwards ``drift_detected`` tells whether it signalled.

        Raises
        ------
        ValueError
            If ``x`` is not a vector of ``n_features`` values. A NaN or infinity is not an error: the
            event is skipped (see :attr:`n_skipped`).
        """
        row = np.asarray(x, dtype=np.float64)
        if row.ndim != 1:
            raise ValueError(f"x must be one event, a vector of {self.n_features} values, got shape {row.shape}")
        self.update_many(row[np.newaxis, :])
        return self

    def update_many(self, values: npt.ArrayLike) -> np.ndarray:
        """Process events in order; exactly equivalent to calling :meth:`update` on each row in turn.

        Parameters
        ----------
        values
            Events × ``n_features``. Rows holding a NaN or an infinity are skipped.

        Returns
        -------
        numpy.ndarray
            int64 indices of the rows at which drift was signalled.

        Raises
        ------
        ValueError
            If ``values`` is not 2-D with ``n_features`` columns; the state is unchanged then.
        """
        rows = self._as_rows(values)
        self._signal_statistics, self._signal_thresholds, self._signal_contributions = [], [], []
        if rows.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        skipped = 0
        if np.isfinite(rows).all():  # the common case, checked without a per-row pass
            indices = self._process(rows)
        else:
            kept = np.flatnonzero(np.isfinite(rows).all(axis=1))
            skipped = rows.shape[0] - kept.size
            indices = kept[self._process(rows[kept])] if kept.size else np.empty(0, dtype=np.int64)
        self._n_seen += rows.shape[0]
        self._n_skipped += skipped
        self._drift_detected = bool(indices.size) and int(indices[-1]) == rows.shape[0] - 1
        return np.asarray(indices, dtype=np.int64)

    def _process(self, values: np.ndarray) -> np.ndarray:
        """Consume finite events (events × features); return the signalling rows."""
        coordinates, by_feature = self._coordinates(values)
        terms = None
        if self.feature_baseline is not None:
            terms = self._feature_terms(coordinates, by_feature)
            terms -= self.feature_baseline[:, np.newaxis]
        squared = coordinates * coordinates
        indices = self._test.update_many(self._root_mean(squared))
        # excess_t = decay * excess_{t-1} + (u_t^2 - 1), one recursion per component, carried across batches.
        squared -= 1.0
        excess, _ = lfilter([1.0], [1.0, -self._decay], squared, axis=1, zi=(self._decay * self._excess)[:, np.newaxis])
        feature_excess = None
        if terms is not None:  # the same recursion per feature, on c_j minus its reference mean
            feature_excess, _ = lfilter(
                [1.0], [1.0, -self._decay], terms, axis=1, zi=(self._decay * self._feature_excess)[:, np.newaxis]
            )
        for index, statistic, threshold in zip(indices, self._test.signal_statistics, self._test.signal_thresholds, strict=True):
            self._record_signal(statistic, threshold)
            self._excess = excess[:, index]
            if feature_excess is not None:
                self._feature_excess = feature_excess[:, index]
            self._signal_contributions.append(self.contributions())
        self._excess = np.array(excess[:, -1], dtype=np.float64)
        if feature_excess is not None:
            self._feature_excess = np.array(feature_excess[:, -1], dtype=np.float64)
        return indices

    def _params(self) -> dict[str, Any]:
        return {
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "offset": self.offset.tolist(),
            "components": self.components.tolist(),
            "variances": self.variances.tolist(),
            "clip": self.clip,
            "memory": self.memory,
            "test": self._test.to_state()["params"],
            **({} if self.feature_baseline is None else {"feature_baseline": self.feature_baseline.tolist()}),
        }

    def _get_state(self) -> dict[str, Any]:
        return {
            "excess": self._excess.tolist(),
            "feature_excess": self._feature_excess.tolist(),
            "n_skipped": self._n_skipped,
            "test": self._test.to_state(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        excess = _vector(state["excess"], "state excess", self.components.shape[1])
        self._excess = excess
        if "feature_excess" in state:
            self._feature_excess = _vector(state["feature_excess"], "state feature_excess", self.n_features)
        self._n_skipped = int(state["n_skipped"])
        self._test = PageHinkley.from_state(state["test"])
