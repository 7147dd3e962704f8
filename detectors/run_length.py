"""Average run length of a one-sided CUSUM on increments of any distribution, and its inverse.

A one-sided CUSUM ``S_t = max(0, S_{t-1} + d_t - k)`` signals when ``S_t > h``.  For Gaussian
increments Siegmund's corrected diffusion approximation gives its average run length (ARL) to a
false alarm; for the increments of a count, binary or low-cardinality field it does not: there the
steps are a few large jumps and many small ones, and the ARL grows with ``h`` at a rate the variance
alone does not determine. With the diffusion approximation, Page–Hinkley raised 1.5-3.1 times its
target at 1e-4 and 1e-5 on a binary field with p = 0.05 and 0.8-1.7 times on mostly-zero counts,
2.4-9 times the rate it aimed at (target / SAFETY_FACTOR), and the ratio grew as the target fell
(``tests/benchmarks/discrete_calibration.py --before``).

The model here keeps Siegmund's form and replaces its two Gaussian constants::

    ARL(h) = (exp(x) - x - 1) / (theta * k),      x = theta * (h + overshoot)

* ``theta`` (the *adjustment coefficient*, Cramér–Lundberg) is the root ``theta > 0`` of
  ``E[exp(theta * (d - k))] = 1`` for the increments' own distribution.  Renewal theory gives
  ``P(a CUSUM excursion exceeds h) ~ C * exp(-theta * h)`` for any increment distribution with a
  negative mean and a finite exponential moment (Feller, vol. II, XII.6; Siegmund 1985, ch. VIII;
  on a lattice, up to a factor that oscillates with ``h`` within ``exp(theta * span)``), so
  ``log ARL`` is asymptotically linear in ``h`` with slope ``theta``.  For Gaussian increments
  ``theta = 2k / sigma^2``, Siegmund's value.  The increments of a calibrated detector are
  Huber-clipped, hence bounded, so the root exists whenever some increment is positive.  For a
  dependent series ``theta`` is scaled by ``variance / long-run variance``, which is exact for
  Gaussian processes (``log E exp(theta * S_n) / n -> -theta k + theta^2 lrv / 2``).
* ``overshoot`` (Siegmund's ``1.166 sigma`` for Gaussian increments) collects the constant ``C``.
  It is fitted by simulating the CUSUM on a block-bootstrap resample of the reference's
  increments, at thresholds where ``theta * h`` is 2 to 4 (run lengths ~10^2 to 10^4, cheap to
  simulate with many exceedances), and then extrapolated with the slope ``theta``.

Checked against exact run lengths (``tests/unit/detectors/test_run_length.py``): on steps of +9 or
-1 (a lattice walk, like a count field's) the model fitted at ``h <= 83`` is within 1 % of the exact
ARL from 1.4e4 to 1.9e7 (h = 100-250), where the diffusion approximation is 1.7-4.7 times too
long; on Gaussian steps it is within 0.3 % of Brook and Evans' Markov chain at h = 6-10.

Why the fit stops at ``theta * h = 4``: above it a bootstrap of 50,000 reference values thins the
tail of sums of neighbouring values (an excursion to a high threshold needs a run of the largest
values, and the resample can only combine what the reference holds). With 32-value blocks this
pushed the fitted overshoot up by 0.1-0.5 at ``theta * h`` = 5-9 for Student-t(3) and zero-inflated
counts. With independent resampling it stayed flat (within ±0.05, 16M simulated values) from 2 to 9
on Gaussian, Student-t(3), Poisson, zero-inflated and binary increments.

Where it ends:

* dependence other than Gaussian-like: for clustered jumps (the spread test of a binary field,
  whose squared differences come in pairs) the true slope was ~9 % steeper than the scaled
  ``theta``: conservative, 0.8 of the aimed rate at 1e-4 and 1e-5, and more conservative at
  smaller rates;
* the reference: ``theta`` and the long-run variance are estimated from it, and their errors
  are multiplied by ``theta * h`` when a threshold is extrapolated (the reason for Page–Hinkley's
  ``SAFETY_FACTOR``), and a stream that is not stationary, or whose reference is not in time
  order, is outside any of this;
* rare values: the simulation needs some excursions to reach ``theta * h = 2``. A side whose
  increments are never positive in the reference is *silent* (it cannot signal on values the
  reference holds); a side with too few exceedances gets no model and falls back to the diffusion
  approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

__all__ = [
    "RunLengthModel",
    "TwoSidedModels",
    "adjustment_coefficient",
    "block_bootstrap",
    "fit_run_length_model",
    "lindley_path",
    "one_sided_models",
    "simulated_average_run_lengths",
]

#: Values simulated per calibration (both sides of a two-sided test share one resample). At 2^19
#: values the fitted ``theta * overshoot`` had a standard deviation of 0.010-0.033 between resampling
#: seeds (eight seeds; Gaussian, AR(1), zero-inflated, binary and five-valued references), which moves
#: the run length by 1-3 %; 2^20 values brought that to 0.008-0.028 at twice the cost (~50 ms).
SIMULATED_LENGTH = 2**19

#: Block length of the circular block bootstrap: long enough to keep the short-range dependence of
#: the reference (AR(1) phi = 0.5: the resample's long-run variance is ~4 % below the reference's),
#: short enough that the reference holds ~1,500 disjoint blocks to draw tails from (see the module docstring).
BLOCK_LENGTH = 32

#: Range of ``theta * h`` over which the overshoot is fitted (see the module docstring).
FIT_RANGE = (2.0, 4.0)

#: Thresholds in the fit range, and the fewest exceedances a threshold needs to enter the fit.
FIT_POINTS = 5
MINIMUM_EXCEEDANCES = 30

#: The resample is seeded: calibration is deterministic, the same reference gives the same detector.
SEED = 20_240_917


def adjustment_coefficient(increments: npt.ArrayLike) -> float | None:
    """The root ``theta > 0`` of ``mean(exp(theta * increments)) = 1`` (Cramér–Lundberg).

    ``increments`` must have a negative mean. ``None`` when no increment is positive: the walk then
    never rises, and no threshold is ever crossed.

    Examples
    --------
    Steps of -1 and +1 with probabilities 2/3 and 1/3: ``(2/3) e^-t + (1/3) e^t = 1`` at ``e^t = 2``.

    >>> round(adjustment_coefficient([-1.0, -1.0, 1.0]), 12) == round(math.log(2.0), 12)
    True
    """
    values = np.asarray(increments, dtype=np.float64)
    top = float(values.max())
    if not top > 0.0:
        return None
    mean = float(values.mean())
    if not mean < 0.0:
        raise ValueError(f"increments must have a negative mean, got {mean!r}")

    def log_mgf(theta: float) -> tuple[float, float]:
        """log mean exp(theta * values) and its derivative (the mean under the tilted law)."""
        # Factor out the largest exponent: exp(theta * (values - top)) <= 1 never overflows.
        weights = np.exp(theta * (values - top))
        total = float(weights.sum())
        return theta * top + math.log(total / values.size), float(np.sum(weights * values)) / total

    # log_mgf is convex, 0 at 0 with slope `mean` < 0, and grows like theta * max(values): one root
    # above 0. From any point above the root Newton's steps descend monotonically onto it; the
    # Gaussian value 2|mean| / variance, doubled until above, is such a point.
    theta = max(2.0 * -mean / max(float(values.var()), 1e-300), 1e-12)
    value, slope = log_mgf(theta)
    while value <= 0.0:
        theta *= 2.0
        value, slope = log_mgf(theta)
    for _ in range(100):
        step = value / slope
        theta -= step
        if step <= 1e-13 * theta:
            break
        value, slope = log_mgf(theta)
    return float(theta)


def block_bootstrap(values: np.ndarray, length: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """A circular block bootstrap resample of ``values``: ``length`` values in blocks of ``block``."""
    blocks = -(-length // block)
    starts = rng.integers(0, values.size, size=blocks)
    positions = (starts[:, None] + np.arange(block)[None, :]) % values.size
    resample: np.ndarray = values[positions.ravel()[:length]]
    return resample


def lindley_path(increments: np.ndarray) -> np.ndarray:
    """``S_t = max(0, S_{t-1} + increments_t)`` from ``S_0 = 0``, never reset (Page's form: a cumulative sum minus its running minimum)."""
    walk = np.cumsum(increments)
    return walk - np.minimum(np.minimum.accumulate(walk), 0.0)


def simulated_average_run_lengths(path: np.ndarray, thresholds: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Average run length to ``S > h`` for each threshold ``h``, estimated from one Lindley path.

    The path splits into cycles at its zeros; a CUSUM reset after a signal starts a new cycle. So
    the run length to a signal is the time of the cycles that stay at or below ``h`` plus the time
    to the crossing in the first one that exceeds it, and the average run length is estimated by
    (path time - time after the crossings in the exceeding cycles) / (exceeding cycles). Exact in
    the limit for independent increments (cycles are then independent); for dependent ones it is
    the long-run time between signals of a CUSUM that restarts at each.

    Returns
    -------
    (average_run_lengths, exceedances)
        ``inf`` where no cycle exceeded the threshold; exceedances counts the cycles that did.
    """
    zeros = np.flatnonzero(path == 0.0)
    levels = np.asarray(thresholds, dtype=np.float64)
    run_lengths = np.full(levels.size, np.inf)
    exceedances = np.zeros(levels.size, dtype=np.int64)
    if zeros.size == 0 or levels.size == 0:
        return run_lengths, exceedances
    end = int(zeros[-1]) + 1  # only complete cycles
    # Positions above the lowest level, once: each level then searches a small part of the path.
    candidates = np.flatnonzero(path[:end] > levels.min())
    heights = path[candidates]
    for index, level in enumerate(levels):
        above = candidates[heights > level]
        if above.size == 0:
            continue
        cycle = np.searchsorted(zeros, above)  # the cycle ends at its first zero after the crossing
        first = np.r_[True, cycle[1:] != cycle[:-1]]
        after = float(np.sum(zeros[cycle[first]] - above[first]))
        exceedances[index] = int(first.sum())
        run_lengths[index] = (end - after) / exceedances[index]
    return run_lengths, exceedances


@dataclass(frozen=True)
class RunLengthModel:
    """``ARL(h) = (exp(x) - x - 1) / (adjustment * drift)``, ``x = adjustment * (h + overshoot)``.

    Attributes
    ----------
    adjustment
        Slope of ``log ARL`` in ``h`` (the adjustment coefficient, scaled for dependence).
    overshoot
        Threshold offset that collects the renewal constant.
    drift
        Minus the mean increment (the CUSUM's allowance on mean-zero data).

    Examples
    --------
    Siegmund's approximation is the Gaussian case, ``adjustment = 2k / sigma^2`` and
    ``overshoot = 1.166 sigma``: ``k = 0.5``, ``h = 4`` on N(0, 1) gives 338 (Markov chain: 336).

    >>> model = RunLengthModel(adjustment=1.0, overshoot=1.166, drift=0.5)
    >>> round(model.average_run_length(4.0))
    338
    >>> round(model.threshold(model.average_run_length(4.0)), 9)
    4.0
    """

    adjustment: float
    overshoot: float
    drift: float

    def average_run_length(self, threshold: float) -> float:
        x = self.adjustment * (threshold + self.overshoot)
        if x <= 0.0:
            return 0.0
        return (math.expm1(x) - x) / (self.adjustment * self.drift)

    def threshold(self, average_run_length: float) -> float:
        """Smallest threshold (>= 0) whose average run length is ``average_run_length``."""
        if self.average_run_length(0.0) >= average_run_length:
            return 0.0
        target = average_run_length * self.adjustment * self.drift
        # expm1(x) - x is increasing for x > 0; log1p(target) <= x <= log1p(target) + log1p(log1p(target)) + 1.
        upper = math.log1p(target) + math.log1p(math.log1p(target)) + 1.0
        x = float(brentq(lambda x: math.expm1(x) - x - target, 0.0, upper, xtol=1e-13, rtol=1e-14))
        return max(x / self.adjustment - self.overshoot, 0.0)


def fit_run_length_model(path: np.ndarray, adjustment: float, drift: float) -> RunLengthModel | None:
    """Fit the overshoot of a :class:`RunLengthModel` with a given slope to a simulated Lindley path.

    Thresholds are placed where ``adjustment * h`` spans :data:`FIT_RANGE`; at each the overshoot
    that reproduces the simulated run length is solved for, and the solutions are averaged with
    weights equal to the exceedances behind them (the inverse variance of a log run length).
    ``None`` if no threshold had :data:`MINIMUM_EXCEEDANCES`.
    """
    levels = np.linspace(*FIT_RANGE, FIT_POINTS) / adjustment
    run_lengths, exceedances = simulated_average_run_lengths(path, levels)
    total, weighted = 0, 0.0
    for level, run_length, count in zip(levels.tolist(), run_lengths.tolist(), exceedances.tolist()):
        if count < MINIMUM_EXCEEDANCES:
            continue
        # The overshoot at which the model's ARL(level) equals the simulated one.
        reach = RunLengthModel(adjustment, 0.0, drift).threshold(run_length)
        total += count
        weighted += count * (reach - level)
    if total == 0:
        return None
    return RunLengthModel(adjustment=adjustment, overshoot=weighted / total, drift=drift)


@dataclass(frozen=True)
class TwoSidedModels:
    """Run-length models of the two sides of a CUSUM on a calibrated reference.

    Attributes
    ----------
    up, down
        ``None`` for a side no model was fitted to; its caller falls back to the diffusion
        approximation.
    silent
        ``"up"`` or ``"down"`` when that side's increments were never positive in the reference (a
        count field's downward side whose allowance exceeds its mean, the spread test of a rare
        binary event): on values in the reference's range its statistic never leaves zero, so it
        cannot raise a false alarm and the other side may have the whole rate. ``None`` otherwise.
    """

    up: RunLengthModel | None
    down: RunLengthModel | None
    silent: str | None


def one_sided_models(transformed: np.ndarray, allowance: float, dependence: float) -> TwoSidedModels:
    """Run-length models of the upward and the downward CUSUM on a calibrated reference.

    Parameters
    ----------
    transformed
        The reference after the detector's transform (mean zero), in time order.
    allowance
        The CUSUM's allowance ``k``: the upward side's increments are ``d - k``, the downward's ``-d - k``.
    dependence
        Marginal over long-run variance of ``transformed`` (1 for independent values).

    A side gets no model when the reference never moves it up (see :class:`TwoSidedModels`), when
    the allowance is not positive, or when too few simulated excursions reach the fit range.
    """
    resample = block_bootstrap(transformed, SIMULATED_LENGTH, BLOCK_LENGTH, np.random.default_rng(SEED))
    models: list[RunLengthModel | None] = []
    silent: list[str] = []
    for side, sign in (("up", 1.0), ("down", -1.0)):
        increments = sign * transformed - allowance
        if not (allowance > 0.0 and float(increments.mean()) < 0.0):
            models.append(None)
            continue
        adjustment = adjustment_coefficient(increments)
        if adjustment is None:
            silent.append(side)
            models.append(None)
            continue
        models.append(fit_run_length_model(lindley_path(sign * resample - allowance), adjustment * dependence, allowance))
    # Both sides silent: a constant reference; keep the diffusion thresholds on both, half the rate each.
    return TwoSidedModels(up=models[0], down=models[1], silent=silent[0] if len(silent) == 1 else None)
