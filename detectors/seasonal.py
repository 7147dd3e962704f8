"""Daily and weekly cycles of a stream: found in a reference's timestamps, removed before the detectors.

A feature whose mean follows the time of day (traffic mix by hour, a sensor that warms up at noon)
is not drifting when it moves with the clock. Left in, the cycle is read by the calibration as
autocorrelation — thresholds rise three to four times, which slows real detection — and by the
window checks as drift at the hours far from the daily average (83 alerts a day on a ±0.3σ cycle
before this module). So a reference with timestamps is tested for a cycle, and when there is one the
detectors watch the *residual* ``x - offset[bin(t)]``: the value minus what its hour of the day (or of
the week) adds on average in the reference.

Detection, per field: the reference is binned by UTC hour of the day (24 bins) or of the week (168
bins). Under no cycle, the bin means of a stationary series differ only by noise: with ``n_b`` values
in bin ``b`` and long-run variance ``σ²_LR`` of the residual,

    Q = Σ_b n_b (m_b - m)² / σ²_LR  ~  χ²(B - 1),

(the long-run variance, not the variance, so an autocorrelated stream's slow wander is not taken for
a cycle; corrected for the bin means the fit removed, see :func:`find_cycle`). A cycle is declared
when ``Q`` is improbable (``p < 1e-6``) *and* the cycle is large enough to matter (the bin offsets'
standard deviation at least 5 % of the residual's). A weekly cycle is preferred to a daily one only
when the reference spans two weeks and the weekly bins explain significantly more than the daily
ones (the same test on the difference of the two ``Q``, with ``168 - 24`` degrees of freedom). Bin
means are taken on values clipped at five robust standard deviations, so a few outliers do not make
an hour look different. Hours are UTC hours: a cycle that follows local time moves by an hour at
daylight-saving changes, which this does not model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2

from .calibration import long_run_variance, robust_center_scale

__all__ = ["PERIODS", "SeasonalCycle", "find_cycle"]

HOUR_MS = 3_600_000

#: Bins of each period: UTC hours of the day, of the week.
PERIODS = {"daily": 24, "weekly": 168}

#: A cycle is declared below this p-value of ``Q`` ...
SIGNIFICANCE = 1e-6
#: ... and when its bin offsets vary by at least this fraction of the residual's standard deviation.
MINIMUM_EFFECT = 0.05
#: Each bin needs this many reference values, and the reference two whole periods.
MINIMUM_PER_BIN = 30
MINIMUM_PERIODS = 2
#: Values are clipped at this many robust standard deviations before bin means are taken.
CLIP = 5.0


@dataclass(frozen=True)
class SeasonalCycle:
    """What each UTC hour of the day (``daily``) or of the week (``weekly``) adds to a stream's mean.

    ``offsets[b]`` is the reference mean of bin ``b`` minus the overall mean; :meth:`remove` takes it
    away, leaving a series whose mean does not follow the clock.

    Examples
    --------
    >>> import numpy as np
    >>> hours = np.arange(24 * 14 * 60) * 60_000  # two weeks, one value a minute
    >>> rng = np.random.default_rng(1)
    >>> values = 0.3 * np.sin(2 * np.pi * (hours / 3_600_000) / 24) + rng.normal(size=hours.size)
    >>> cycle = find_cycle(values, hours)
    >>> cycle.period, round(float(np.std(cycle.offsets) * np.sqrt(2)), 1)  # a sine's amplitude from its spread
    ('daily', 0.3)
    >>> round(float(np.std(cycle.remove(values, hours))), 1)  # the residual: the noise alone
    1.0
    """

    period: str
    offsets: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"period must be one of {sorted(PERIODS)}, got {self.period!r}")
        if len(self.offsets) != PERIODS[self.period] or not all(math.isfinite(o) for o in self.offsets):
            raise ValueError(f"a {self.period} cycle needs {PERIODS[self.period]} finite offsets, got {len(self.offsets)}")

    @property
    def bins(self) -> int:
        return PERIODS[self.period]

    def bin_of(self, times_ms: npt.ArrayLike) -> np.ndarray:
        """The bin (UTC hour of the day or of the week) of each epoch-millisecond time."""
        return (np.asarray(times_ms, dtype=np.int64) // HOUR_MS) % self.bins

    def remove(self, values: npt.ArrayLike, times_ms: npt.ArrayLike) -> np.ndarray:
        """``values`` minus the offset of their time's bin."""
        residual: np.ndarray = np.asarray(values, dtype=np.float64) - np.asarray(self.offsets)[self.bin_of(times_ms)]
        return residual

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.period, "offsets": list(self.offsets)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeasonalCycle:
        return cls(str(data["period"]), tuple(float(o) for o in data["offsets"]))


def _bin_statistics(values: np.ndarray, bins: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(bins, minlength=n_bins)
    sums = np.bincount(bins, weights=values, minlength=n_bins)
    return counts, sums / np.maximum(counts, 1)


def _fit(clipped: np.ndarray, bins: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: counts and offsets (bin mean minus overall mean); and the residual, in time order."""
    counts, means = _bin_statistics(clipped, bins, n_bins)
    offsets = means - clipped.mean()
    return counts, offsets, clipped - offsets[bins]


def find_cycle(values: npt.ArrayLike, times_ms: npt.ArrayLike, period: str = "auto") -> SeasonalCycle | None:
    """The daily or weekly cycle of a reference, if it has one (``period="auto"``), or the one asked for.

    Parameters
    ----------
    values, times_ms
        Finite values and their epoch-millisecond times (any order: they are sorted by time).
    period
        ``"auto"`` (test for a weekly, then a daily cycle; ``None`` if neither is significant and large
        enough), ``"daily"`` or ``"weekly"`` (fit that cycle whatever its size), or ``"none"``.

    Raises
    ------
    ValueError
        An unknown period, values and times of different lengths, or — for a period asked for — a
        reference too short to estimate it (two whole periods, 30 values per hour bin).
    """
    if period not in ("auto", "none", *PERIODS):
        raise ValueError(f"period must be auto, none, daily or weekly, got {period!r}")
    array = np.asarray(values, dtype=np.float64)
    times = np.asarray(times_ms, dtype=np.int64)
    if array.shape != times.shape or array.ndim != 1:
        raise ValueError(f"values and times_ms must be 1-D and of one length, got {array.shape} and {times.shape}")
    if period == "none":
        return None
    order = np.argsort(times, kind="stable")
    array, times = array[order], times[order]
    center, scale = robust_center_scale(array) if array.size else (0.0, 1.0)
    clipped = np.clip(array, center - CLIP * scale, center + CLIP * scale)
    span_hours = (times[-1] - times[0]) / HOUR_MS if times.size else 0.0
    candidates = [period] if period in PERIODS else ["weekly", "daily"]
    fits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name in candidates:
        n_bins = PERIODS[name]
        bins = (times // HOUR_MS) % n_bins
        enough = span_hours >= MINIMUM_PERIODS * n_bins and np.bincount(bins, minlength=n_bins).min() >= MINIMUM_PER_BIN
        if not enough:
            if period in PERIODS:
                raise ValueError(
                    f"a {name} cycle needs a reference spanning {MINIMUM_PERIODS} whole periods with "
                    f"{MINIMUM_PER_BIN} values in every hour bin; this one spans {span_hours:.0f} hours"
                )
            continue
        fits[name] = _fit(clipped, bins, n_bins)
    if period in PERIODS:
        return SeasonalCycle(period, tuple(float(o) for o in fits[period][1]))
    if not fits:
        return None
    # The long-run variance of a fit's residual, corrected for the bin means it removed: a bin visited
    # in k periods (an hour of the day over k days) holds k runs of consecutive values, and taking its
    # mean away leaves each run's sum with (1 - 1/k) of its variance. Uncorrected, three weeks of noise
    # gave 0.78 for 0.99 with weekly bins. Each Q uses its own fit's; the weekly-against-daily test the
    # weekly one (the larger model's, as an F-test does).
    lrv: dict[str, float] = {}
    for name, (_, _, residual) in fits.items():
        periods = span_hours / PERIODS[name]
        lrv[name] = long_run_variance(residual) / max(1.0 - 1.0 / periods, 0.5)
    if not all(value > 0.0 for value in lrv.values()):
        return None
    q = {name: float(np.sum(counts * offsets**2) / lrv[name]) for name, (counts, offsets, _) in fits.items()}
    for name in ("weekly", "daily"):
        if name not in fits:
            continue
        _, offsets, residual = fits[name]
        significant = chi2.sf(q[name], PERIODS[name] - 1) < SIGNIFICANCE
        large = float(np.std(offsets[(times // HOUR_MS) % PERIODS[name]])) >= MINIMUM_EFFECT * float(np.std(residual))
        if not (significant and large):
            continue
        if name == "weekly" and "daily" in fits:
            # Weekly only if it explains significantly more than the daily cycle does.
            extra = (q["weekly"] - q["daily"] * lrv["daily"] / lrv["weekly"])
            if not chi2.sf(max(extra, 0.0), PERIODS["weekly"] - PERIODS["daily"]) < SIGNIFICANCE:
                continue
        return SeasonalCycle(name, tuple(float(o) for o in offsets))
    return None
