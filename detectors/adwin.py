"""ADWIN: adaptive windowing with block-vectorised cut checks and dependence-aware calibration.

Why our own and not ``river.drift.ADWIN``:

* calibration for dependence — river's cut threshold assumes independent values bounded in
  [0, 1]; on an AR(1) phi = 0.5 stream it raises about 40 false alarms per 100,000 events.  Here a
  calibrated detector compares sub-window means against the *long-run* variance of the clipped,
  robustly standardised reference, so the variance of a mean of ``n`` dependent values is right;
* batch-vectorised cut checks — river works per event.  Here values are summed into blocks of
  ``clock`` events and, for a whole batch, every block completion's cut points are checked at
  once with numpy prefix sums.

* skewness-aware cut tests — the mean of 32 values of a mostly-zero count or a rare binary event is
  far from Gaussian in its upper tail; Gaussian cut tests raised up to 2.7 times the target rate on
  such fields at 1e-5, more at smaller rates (see *Test* below).

Measured (``tests/benchmarks/detector_quality.py``, 1e-6 target, 20M events per stream): 0.05-0.2
false alarms per million events on Gaussian, Student-t(3) and AR(1) phi = 0.5 streams, where
river's ``ADWIN()`` raises 38 per 100,000 on the AR(1) stream; about 7 million values per second
in ``update_many`` on 10,000-value batches. On every kind of field of
``tests/benchmarks/discrete_calibration.py`` (continuous, heavy-tailed, AR(1), mostly-zero counts,
binary, five-valued; targets 1e-4 and 1e-5, 4 references × 1M-5M events): 0.13-0.29 of the target,
0.12-0.15 on AR(1).

Structure.  The window is a run of completed blocks ``[start, t)`` (block indices count from the
beginning of the stream) plus a partial block.  The candidate cut points at block completion
``t`` play the role of ADWIN2's exponential histogram with ``max_buckets`` buckets per size: for
each level ``i`` the ``max_buckets`` most recent *odd* multiples of ``2**i`` below ``t``.  Being
arithmetic in ``t``, they can be generated for many block completions at once, and only the
prefix sums at the positions some future check may need are kept (O(max_buckets · log t)).

Test.  At a cut ``p`` the older part ``W0 = [start, p)`` and the recent part ``W1 = [p, t)`` differ
if ``(mean1 - mean0)**2 > z_N**2 · V · (1/n0 + 1/n1)``, with ``z_N`` the Bonferroni quantile for
the ``N`` cut points checked at that block (so ``delta`` bounds the false-alarm probability of
one check, under a Gaussian approximation for block means) and ``V`` the long-run variance of the
reference (calibrated) or the window's sample variance (uncalibrated).

Calibrated, the left-hand side is multiplied by ``J(w)`` (:func:`.calibration.tail_correction`),
which turns the Gaussian statistic into the likelihood-ratio (large-deviation) statistic of the
reference's own distribution: ``mean1 - mean0`` is treated as ``c`` times the mean of ``m`` draws
with the same second and third cumulants (``m = H^3 / G^2``, ``c = H^2 / G`` with
``H = 1/n0 + 1/n1`` and ``G = 1/n1^2 - 1/n0^2``), exact when one side is much longer than the other
(the case of every check but the first few after a cut) and Gaussian when both are equally long, and
``2 m I(w)`` with ``w = (mean1 - mean0) / c`` is compared with ``z_N**2``. Where it ends: a lattice
distribution's tail is up to about twice the continuous approximation for the shortest sub-windows
(32 values), and two short sub-windows of equal length are taken as Gaussian; the Bonferroni slack
(below) absorbs both in every measurement so far.  On a cut, everything
older than the most recent violating cut point is dropped and a drift is signalled at the
value that completed the block.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from .base import DriftDetector, check_standardisation
from .calibration import VARIANCE_FLOOR, standardise_reference, tail_correction, validate_false_alarm_rate

__all__ = ["ADWIN"]

#: Calibrated detectors use delta = false_alarm_rate · clock / SAFETY_FACTOR.  The Bonferroni
#: bound over cut points is already conservative (neighbouring cut points and consecutive checks
#: are strongly correlated), so no extra margin is needed.  Measured on Gaussian noise
#: (``python tests/benchmarks/discrete_calibration.py``, 4 references, 4M and 20M events): 0.24 and 0.29
#: of the target at 1e-4 and 1e-5; 0.12-0.29 across every field kind there.  The slack is not divided
#: out: it depends on the rate (longer windows add cut points as the tails thin), and a constant
#: measured at 1e-4 would not be the one at the engine's 1e-9-1e-12.
SAFETY_FACTOR = 1.0

_MIN_CHUNK_BLOCKS = 16


class ADWIN(DriftDetector):
    """Adaptive windowing (ADWIN) change detector for the mean of a stream.

    Parameters
    ----------
    delta
        Bound on the probability that one check (one block completion) raises a false alarm.
    clock
        Values per block; cut points are checked each time a block completes.
    max_buckets
        Cut points per size level (ADWIN2's ``M``); more means finer cut positions.
    min_window_length
        Minimum number of values in each of the two sub-windows compared.
    grace_period
        Minimum number of values in the window before any check.
    center, scale, offset, clip
        Calibrated transform ``clip((x - center) / scale, -clip, clip) - offset``;
        ``center=None`` uses the raw values.
    variance
        Known (long-run) variance of the transformed values; ``None`` estimates it from the
        window, as classic ADWIN does.
    tail_points, tail_factors
        Skewness correction of the cut test (set by :meth:`calibrate`, see the module docstring):
        the factor ``J(w)`` of :func:`~driftline.detectors.calibration.tail_correction` on a grid of
        ``w``. ``None``: the Gaussian test (uncalibrated detectors, and those calibrated before it).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> detector = ADWIN.calibrate(rng.normal(size=50_000), false_alarm_rate=1e-6)
    >>> stream = np.concatenate([rng.normal(size=5_000), rng.normal(0.5, 1.0, size=5_000)])
    >>> detector.update_many(stream)
    array([5055])
    """

    state_type = "ADWIN"

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
        *,
        center: float | None = None,
        scale: float = 1.0,
        offset: float = 0.0,
        clip: float | None = None,
        variance: float | None = None,
        tail_points: list[float] | None = None,
        tail_factors: list[float] | None = None,
    ) -> None:
        super().__init__()
        if not (math.isfinite(delta) and 0.0 < delta < 1.0):
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        for name, value in (("clock", clock), ("max_buckets", max_buckets), ("min_window_length", min_window_length)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(grace_period, bool) or not isinstance(grace_period, (int, np.integer)) or grace_period < 0:
            raise ValueError(f"grace_period must be an integer >= 0, got {grace_period!r}")
        check_standardisation(center, scale, offset, clip)
        if variance is not None and not (math.isfinite(variance) and variance > 0.0):
            raise ValueError(f"variance must be None or a finite number > 0, got {variance!r}")
        if (tail_points is None) != (tail_factors is None):
            raise ValueError("tail_points and tail_factors must be given together")
        if tail_points is not None and tail_factors is not None:
            points, factors = np.asarray(tail_points, dtype=np.float64), np.asarray(tail_factors, dtype=np.float64)
            if points.ndim != 1 or points.size < 2 or points.shape != factors.shape:
                raise ValueError("tail_points and tail_factors must be lists of the same length >= 2")
            if not (np.isfinite(points).all() and (np.diff(points) > 0.0).all()):
                raise ValueError("tail_points must be finite and increasing")
            if not (np.isfinite(factors).all() and (factors > 0.0).all()):
                raise ValueError("tail_factors must be finite and > 0")
        self.delta = float(delta)
        self.clock = int(clock)
        self.max_buckets = int(max_buckets)
        self.min_window_length = int(min_window_length)
        self.grace_period = int(grace_period)
        self.center = None if center is None else float(center)
        self.scale = float(scale)
        self.offset = float(offset)
        self.clip = None if clip is None else float(clip)
        self.variance = None if variance is None else float(variance)
        self.tail_points = None if tail_points is None else [float(v) for v in tail_points]
        self.tail_factors = None if tail_factors is None else [float(v) for v in tail_factors]
        self._tail = None if self.tail_points is None else (np.asarray(self.tail_points), np.asarray(self.tail_factors))
        self._tail_largest = 1.0 if self.tail_factors is None else max(self.tail_factors)
        # Blocks each sub-window needs, and squared Bonferroni z for N = 0, 1, 2, ... cut points.
        self._min_blocks = max(1, -(-self.min_window_length // self.clock))
        self._grace_blocks = -(-self.grace_period // self.clock)
        self._z_squared = self._bonferroni_z_squared()
        # Uncalibrated sums are taken relative to the first value, so that prefix sums of data
        # with a large mean keep their precision (ADWIN's decisions are shift-invariant).
        self._origin: float | None = None
        self._buffer = np.empty(0)
        self._blocks = 0  # completed blocks since the stream began (= current block index t)
        self._start = 0  # first block of the window
        self._start_sums = (0.0, 0.0)  # prefix (sum, sum of squares) at the window start
        self._end_sums = (0.0, 0.0)  # prefix at t
        self._positions = np.empty(0, dtype=np.int64)  # kept cut points, ascending, > start
        self._prefix = np.empty((0, 2))  # prefix (sum, sum of squares) at those positions
        self._last_statistic = 0.0
        self._last_checks = 0  # cut points of the last check

    def _bonferroni_z_squared(self) -> np.ndarray:
        # ndtri(p) rather than ndtri(1 - p): budgets in time make delta tiny (~1e-10 at 1,000
        # events/s), where 1 - p would lose most of p's digits.
        checks = np.arange(1, 64 * self.max_buckets + 1, dtype=np.float64)
        return np.concatenate(([np.inf], ndtri(self.delta / (2.0 * checks)) ** 2))

    def retarget(self, false_alarm_rate: float) -> None:
        """Aim a calibrated detector at a new false-alarm rate per event, keeping its window.

        The engine re-targets its detectors as it learns the model's event rate (budgets are in
        alerts per month, so a busier model needs a smaller rate per event).
        """
        if self.center is None:
            raise ValueError("only a calibrated ADWIN (ADWIN.calibrate) can be re-targeted")
        delta = validate_false_alarm_rate(false_alarm_rate) * self.clock / SAFETY_FACTOR
        if not delta < 1.0:
            raise ValueError(f"false_alarm_rate must be below 1/{self.clock}, got {false_alarm_rate!r}")
        self.delta = delta
        self._z_squared = self._bonferroni_z_squared()

    @property
    def width(self) -> int:
        """Values in the current window (completed blocks plus the partial block)."""
        return (self._blocks - self._start) * self.clock + self._buffer.size

    @property
    def last_statistic(self) -> float:
        """Largest squared standardised mean difference over the cut points of the last check (skewness-corrected when calibrated)."""
        return self._last_statistic

    @property
    def threshold(self) -> float:
        """Squared z that ``last_statistic`` was compared with (Bonferroni over the check's cut points)."""
        return float(self._z_squared[min(self._last_checks, self._z_squared.size - 1)])

    @classmethod
    def calibrate(cls, reference_values: npt.ArrayLike, false_alarm_rate: float = 1e-6, *, clip: float = 3.0) -> ADWIN:
        """A detector calibrated on reference data to a false-alarm rate per event.

        The reference is robustly standardised and clipped (see
        :func:`driftline.detectors.calibration.standardise_reference`); cut tests use its
        long-run variance, and ``delta`` is the per-check share of the target rate.
        """
        rate = validate_false_alarm_rate(false_alarm_rate)
        reference = standardise_reference(reference_values, clip)
        points, factors = tail_correction(reference.transformed)
        clock = 32
        delta = rate * clock / SAFETY_FACTOR
        if not delta < 1.0:
            raise ValueError(f"false_alarm_rate must be below 1/{clock}, got {false_alarm_rate!r}")
        return cls(
            delta=delta,
            clock=clock,
            min_window_length=clock,
            grace_period=2 * clock,
            center=reference.center,
            scale=reference.scale,
            offset=reference.offset,
            clip=reference.clip,
            variance=reference.long_run_variance,
            tail_points=points.tolist(),
            tail_factors=factors.tolist(),
        )

    def _transform(self, values: np.ndarray) -> np.ndarray:
        if self.center is None:
            if self._origin is None:
                self._origin = float(values[0])
            return values - self._origin
        transformed = (values - self.center) / self.scale
        if self.clip is not None:
            np.clip(transformed, -self.clip, self.clip, out=transformed)
        return transformed - self.offset

    def _process(self, values: np.ndarray) -> np.ndarray:
        clock = self.clock
        carried = self._buffer.size
        pending = np.concatenate((self._buffer, self._transform(values)))
        n_blocks = pending.size // clock
        self._buffer = pending[n_blocks * clock :]
        if n_blocks == 0:
            return np.empty(0, dtype=np.int64)
        blocks = pending[: n_blocks * clock].reshape(n_blocks, clock)
        # Prefix sums continue the carried ones: prepending keeps each addition the same under
        # any split of the stream (numpy accumulates sequentially).
        sums = np.empty((n_blocks + 1, 2))
        sums[0] = self._end_sums
        sums[1:, 0] = blocks.sum(axis=1)
        sums[1:, 1] = (blocks * blocks).sum(axis=1) if self.variance is None else 0.0
        np.cumsum(sums, axis=0, out=sums)
        first = self._blocks
        positions = np.concatenate((self._positions, np.arange(first + 1, first + n_blocks + 1, dtype=np.int64)))
        prefix = np.concatenate((self._prefix, sums[1:]))
        signals: list[int] = []
        row, chunk = 0, n_blocks
        while row < n_blocks:
            stop = min(n_blocks, row + chunk)
            hit = self._check(first, row, stop, positions, prefix)
            if hit < 0:
                row, chunk = stop, chunk * 2
            else:
                signals.append((hit + 1) * clock - carried - 1)
                self._record_signal(self._last_statistic, self.threshold)
                row, chunk = hit + 1, max(_MIN_CHUNK_BLOCKS, 2 * (hit + 1 - row))
        self._blocks = first + n_blocks
        self._end_sums = (float(sums[-1, 0]), float(sums[-1, 1]))
        keep = self._kept(positions)
        self._positions, self._prefix = positions[keep], prefix[keep]
        return np.asarray(signals, dtype=np.int64)

    def _kept(self, positions: np.ndarray) -> np.ndarray:
        """Mask of positions some future check may still use as a cut point."""
        lowbit = positions & -positions
        latest = (self._blocks - 1) // lowbit
        newest_odd = latest - ((latest + 1) & 1)
        kept: np.ndarray = (positions > self._start) & (positions // lowbit >= newest_odd - 2 * (self.max_buckets - 1))
        return kept

    def _check(self, first: int, row: int, stop: int, positions: np.ndarray, prefix: np.ndarray) -> int:
        """Check block completions ``row .. stop-1`` of the batch; apply the first cut (its row) or -1."""
        ends = np.arange(first + row + 1, first + stop + 1, dtype=np.int64)[:, None]
        start = self._start
        # Every level that can hold a cut point below the last end; the per-row candidate set
        # then depends on the row alone, never on how rows were grouped into a check.
        levels = int(ends[-1, 0]).bit_length()
        shifts = np.repeat(np.arange(levels, dtype=np.int64), self.max_buckets)
        steps = 2 * np.tile(np.arange(self.max_buckets, dtype=np.int64), levels)
        latest = (ends - 1) >> shifts
        cuts = (latest - ((latest + 1) & 1) - steps) << shifts
        older = cuts - start
        recent = ends - cuts
        valid = (older >= self._min_blocks) & (recent >= self._min_blocks)
        valid &= ends - start >= max(self._grace_blocks, 2 * self._min_blocks)
        cuts = np.where(valid, cuts, ends)
        at_cut = prefix[np.searchsorted(positions, cuts)]
        at_end = prefix[np.searchsorted(positions, ends[:, 0])]
        s0 = at_cut[..., 0] - self._start_sums[0]
        s1 = at_end[:, None, 0] - at_cut[..., 0]
        n0 = np.where(valid, older, 1) * float(self.clock)
        n1 = np.where(valid, recent, 1) * float(self.clock)
        difference = s1 / n1 - s0 / n0
        if self.variance is None:
            n = (ends[:, 0] - start) * float(self.clock)
            mean = (at_end[:, 0] - self._start_sums[0]) / n
            variance = ((at_end[:, 1] - self._start_sums[1]) / n - mean * mean) * (n / np.maximum(n - 1.0, 1.0))
            variance = np.maximum(variance, VARIANCE_FLOOR)[:, None]
        else:
            variance = np.full((1, 1), self.variance)
        statistic = np.where(valid, difference * difference / (variance * (1.0 / n0 + 1.0 / n1)), 0.0)
        checks = valid.sum(axis=1)
        z_squared = self._z_squared[np.minimum(checks, self._z_squared.size - 1)]
        if self._tail is None:
            violated = statistic > z_squared[:, None]
        else:
            # Only cuts the skewness correction could lift over the threshold need it: the factor is
            # at most the table's largest (the screen is a hair looser than that, against rounding).
            # A corrected value depends on its own cut alone, so the decisions are those of
            # correcting every cut, whatever the batching.
            near = np.nonzero(statistic > z_squared[:, None] * (0.999999 / self._tail_largest))
            violated = np.zeros(statistic.shape, dtype=bool)
            violated[near] = statistic[near] * self._tail_factor(difference[near], n0[near], n1[near]) > z_squared[near[0]]
        rows = np.flatnonzero(violated.any(axis=1))
        hit = int(rows[0]) if rows.size else -1  # -1: no cut; report the last row
        reported = statistic[hit]
        if self._tail is not None:
            reported = reported * self._tail_factor(difference[hit], n0[hit], n1[hit])
        self._last_statistic = float(reported.max())
        self._last_checks = int(checks[hit])
        if hit < 0:
            return -1
        # Drop everything older than the most recent violating cut: the new window then holds
        # only values on the recent side of every boundary the test could distinguish.
        new_start = int(cuts[hit][violated[hit]].max())
        self._start = new_start
        self._start_sums = tuple(float(v) for v in prefix[np.searchsorted(positions, new_start)])  # type: ignore[assignment]
        return row + hit

    def _tail_factor(self, difference: np.ndarray, n0: np.ndarray, n1: np.ndarray) -> np.ndarray:
        """Skewness correction of cut statistics (see the module docstring)."""
        assert self._tail is not None
        # The difference of means behaves like `scale` times the mean of `size` draws with the same
        # second and third cumulants (size = harmonic^3 / skew^2, scale = harmonic^2 / skew), so the
        # Gaussian statistic times J(difference / scale) is the likelihood-ratio statistic 2 size I.
        harmonic = 1.0 / n0 + 1.0 / n1
        skew = 1.0 / (n1 * n1) - 1.0 / (n0 * n0)
        factor: np.ndarray = np.interp(difference * skew / (harmonic * harmonic), *self._tail)
        return factor

    def _params(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "clock": self.clock,
            "max_buckets": self.max_buckets,
            "min_window_length": self.min_window_length,
            "grace_period": self.grace_period,
            "center": self.center,
            "scale": self.scale,
            "offset": self.offset,
            "clip": self.clip,
            "variance": self.variance,
            "tail_points": self.tail_points,
            "tail_factors": self.tail_factors,
        }

    def _get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "buffer": self._buffer.tolist(),
            "blocks": self._blocks,
            "start": self._start,
            "start_sums": list(self._start_sums),
            "end_sums": list(self._end_sums),
            "positions": self._positions.tolist(),
            "prefix": self._prefix.ravel().tolist(),
            "last_statistic": self._last_statistic,
            "last_checks": self._last_checks,
        }
        if self._origin is not None:
            state["origin"] = self._origin
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        self._buffer = np.asarray(state["buffer"], dtype=np.float64)
        self._blocks = int(state["blocks"])
        self._start = int(state["start"])
        self._start_sums = (float(state["start_sums"][0]), float(state["start_sums"][1]))
        self._end_sums = (float(state["end_sums"][0]), float(state["end_sums"][1]))
        self._positions = np.asarray(state["positions"], dtype=np.int64)
        self._prefix = np.asarray(state["prefix"], dtype=np.float64).reshape(-1, 2)
        self._last_statistic = float(state["last_statistic"])
        self._last_checks = int(state["last_checks"])
        origin = state.get("origin")
        self._origin = None if origin is None else float(origin)
