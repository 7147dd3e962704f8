"""Two-sided Page–Hinkley / CUSUM test for a shift in the mean of a stream."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

from .base import DriftDetector, check_standardisation
from .calibration import standardise_reference, validate_false_alarm_rate

__all__ = ["PageHinkley", "cusum_average_run_length", "cusum_threshold"]

_DIRECTIONS = ("both", "up", "down")

#: Siegmund's correction for the overshoot of a Gaussian random walk over the boundary,
#: 2 × 0.583 standard deviations (Siegmund 1985, "Sequential Analysis", ch. X).
_OVERSHOOT = 1.166

#: Calibrated thresholds target an average run length this many times longer than
#: 1 / false_alarm_rate.  Why: without a margin the measured false-alarm rate was 1.05-1.2 times
#: the target on Gaussian and Student-t(3) streams and 0.75-1.1 on AR(1) phi = 0.5 (targets 1e-4
#: and 1e-5, 4M events, three references each, development seeds other than the reported ones):
#: the diffusion approximation is not exact for clipped or dependent increments, and the long-run
#: variance estimated from 50,000 values is off by ±1-2 %, which moves the run length by ±20-40 %
#: at a 1e-6 target.  The margin costs about 4 events of delay on a 0.5-sigma shift.
SAFETY_FACTOR = 3.0

#: After a signal the scan restarts on a chunk this long at least, doubling while no signal
#: is found, so a batch with many signals costs O(n log n) rather than O(n × signals).
_MIN_CHUNK = 256

#: Right after a signal, and for batches this short, values are scanned by a plain-Python loop:
#: during a large shift the test signals every few events, and a numpy call per signal (~25 µs)
#: would cap throughput far below the engine's needs.  The loop performs the same floating-point
#: operations in the same order as the numpy path, so results stay bit-identical.
_SCALAR_SPAN = 64


def cusum_average_run_length(threshold: float, allowance: float, sigma: float) -> float:
    """Average run length to a false alarm of a one-sided CUSUM on mean-zero increments.

    Siegmund's corrected diffusion approximation for ``S_t = max(0, S_{t-1} + d_t - allowance)``
    signalling when ``S_t > threshold``, with increments of (long-run) standard deviation
    ``sigma``.
    """
    k = allowance / sigma
    a = 2.0 * k * (threshold / sigma + _OVERSHOOT)
    if k == 0.0:
        b = threshold / sigma + _OVERSHOOT
        return b * b
    return (math.expm1(a) - a) / (2.0 * k * k)


def cusum_threshold(average_run_length: float, allowance: float, sigma: float) -> float:
    """Smallest threshold whose one-sided CUSUM average run length is ``average_run_length``."""
    if cusum_average_run_length(0.0, allowance, sigma) >= average_run_length:
        return 0.0
    upper = sigma
    while cusum_average_run_length(upper, allowance, sigma) < average_run_length:
        upper *= 2.0
    return float(
        brentq(lambda h: cusum_average_run_length(h, allowance, sigma) - average_run_length, 0.0, upper, xtol=1e-10)
    )


def _calibrated_threshold(false_alarm_rate: float, allowance: float, sigma: float, direction: str) -> float:
    # A two-sided test gives each side half the rate: run length 2 / rate per side. The safety
    # factor lengthens the target run length (see SAFETY_FACTOR).
    sides = 2.0 if direction == "both" else 1.0
    return max(cusum_threshold(SAFETY_FACTOR * sides / false_alarm_rate, allowance, sigma), 1e-12)


class PageHinkley(DriftDetector):
    """Two-sided Page–Hinkley (CUSUM) test for a change in the mean.

    Uncalibrated (``center=None``), it mirrors ``river.drift.PageHinkley`` with ``alpha=1``: each
    value's deviation from the running mean of the stream since the last reset, minus ``delta``,
    is accumulated, and a drift is signalled when the accumulated sum rises more than
    ``threshold`` above its running minimum (``direction="up"``), or the mirror image
    (``"down"``), or either (``"both"``), once ``min_instances`` values have been seen.

    Calibrated (``center`` given, usually through :meth:`calibrate`), the increments are
    ``d = clip((x - center) / scale, -clip, clip) - offset`` against a *known* reference, and
    ``delta`` (the allowance) and ``threshold`` are in those standardised units.

    After a signal all statistics reset and the detector continues with the next value.

    Parameters
    ----------
    min_instances
        Values since the last reset before a signal is possible.
    delta
        Allowance subtracted from every increment (>= 0).
    threshold
        Signal when the statistic exceeds this (> 0).
    direction
        ``"both"``, ``"up"`` (increases of the mean) or ``"down"``.
    center, scale, offset, clip
        Reference transform of the calibrated form; ``center=None`` selects the running mean.
    long_run_sigma
        Long-run standard deviation of the calibrated increments (set by :meth:`calibrate`): what
        :meth:`retarget` needs to move the threshold to another false-alarm rate.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> reference = rng.normal(size=50_000)
    >>> detector = PageHinkley.calibrate(reference, false_alarm_rate=1e-6)
    >>> stream = np.concatenate([rng.normal(size=5_000), rng.normal(0.5, 1.0, size=5_000)])
    >>> detector.update_many(stream)[:4]  # the shift starts at 5000; after a signal the test restarts
    array([5051, 5139, 5216, 5313])
    """

    state_type = "PageHinkley"

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        direction: str = "both",
        *,
        center: float | None = None,
        scale: float = 1.0,
        offset: float = 0.0,
        clip: float | None = None,
        long_run_sigma: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(min_instances, bool) or not isinstance(min_instances, (int, np.integer)) or min_instances < 1:
            raise ValueError(f"min_instances must be an integer >= 1, got {min_instances!r}")
        if not (math.isfinite(delta) and delta >= 0.0):
            raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")
        if not (math.isfinite(threshold) and threshold > 0.0):
            raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
        check_standardisation(center, scale, offset, clip)
        if long_run_sigma is not None and not (math.isfinite(long_run_sigma) and long_run_sigma > 0.0):
            raise ValueError(f"long_run_sigma must be None or a finite number > 0, got {long_run_sigma!r}")
        self.min_instances = int(min_instances)
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.direction = direction
        self.center = None if center is None else float(center)
        self.scale = float(scale)
        self.offset = float(offset)
        self.clip = None if clip is None else float(clip)
        self.long_run_sigma = None if long_run_sigma is None else float(long_run_sigma)
        self._reset()
        self._last_statistic = 0.0

    def _reset(self) -> None:
        # Sums since the last reset.  The CUSUM is kept in Page's form, cumulative sum minus its
        # running minimum, because cumsum / minimum.accumulate solve it for a whole batch, and
        # prepending the carried values keeps every addition identical under any batch split.
        self._count = 0
        self._sum = 0.0  # running sum of raw values (running-mean form only)
        self._cumulative = 0.0  # sum of increments d
        self._min_up = 0.0  # min over s of (cumulative_s - delta * s), s = 0 included
        self._min_down = 0.0  # min over s of (-cumulative_s - delta * s)

    @property
    def last_statistic(self) -> float:
        """CUSUM statistic after the last value (at the signal, for a signalling value)."""
        return self._last_statistic

    @classmethod
    def calibrate(
        cls,
        reference_values: npt.ArrayLike,
        false_alarm_rate: float = 1e-6,
        *,
        shift: float = 0.375,
        clip: float = 3.0,
    ) -> PageHinkley:
        """A detector calibrated on reference data to a false-alarm rate per event.

        Parameters
        ----------
        reference_values
            A stationary sample of the stream, in time order if it is autocorrelated.
        false_alarm_rate
            Target false alarms per event on a stream like the reference (two-sided: each side
            gets half).
        shift
            Mean shift the test is tuned for, in marginal standard deviations of the clipped,
            standardised reference; the allowance is half of it.
        clip
            Huber clip of the robustly standardised values.
        """
        rate = validate_false_alarm_rate(false_alarm_rate)
        if not (math.isfinite(shift) and shift > 0.0):
            raise ValueError(f"shift must be a finite number > 0, got {shift!r}")
        reference = standardise_reference(reference_values, clip)
        allowance = 0.5 * shift * math.sqrt(reference.variance)
        sigma = math.sqrt(reference.long_run_variance)
        return cls(
            min_instances=1,
            delta=allowance,
            threshold=_calibrated_threshold(rate, allowance, sigma, "both"),
            direction="both",
            center=reference.center,
            scale=reference.scale,
            offset=reference.offset,
            clip=reference.clip,
            long_run_sigma=sigma,
        )

    def retarget(self, false_alarm_rate: float) -> None:
        """Move the threshold of a calibrated detector to a new false-alarm rate per event.

        The statistic carries on: only the boundary it is compared with moves. The engine
        re-targets its detectors as it learns the model's event rate (budgets are in alerts per
        month, so a busier model needs a smaller rate per event).
        """
        if self.long_run_sigma is None:
            raise ValueError("only a calibrated Page-Hinkley test (PageHinkley.calibrate) can be re-targeted")
        rate = validate_false_alarm_rate(false_alarm_rate)
        self.threshold = _calibrated_threshold(rate, self.delta, self.long_run_sigma, self.direction)

    def _process(self, values: np.ndarray) -> np.ndarray:
        signals: list[int] = []
        position, total, chunk = 0, values.size, values.size
        scalar_span = _SCALAR_SPAN if total <= _SCALAR_SPAN else 0
        while position < total:
            if scalar_span:
                stop = min(total, position + scalar_span)
                hit = self._scan_scalar(values[position:stop])
                scalar_span = 0
            else:
                stop = min(total, position + chunk)
                hit = self._scan(values[position:stop])
                chunk *= 2
            if hit < 0:
                position = stop
            else:
                signals.append(position + hit)
                self._record_signal(self._last_statistic, self.threshold)
                self._reset()
                position += hit + 1
                chunk = max(_MIN_CHUNK, 4 * (hit + 1))
                scalar_span = _SCALAR_SPAN
        return np.asarray(signals, dtype=np.int64)

    def _scan_scalar(self, values: np.ndarray) -> int:
        """:meth:`_scan` as a Python loop: the same operations, in the same order, on floats."""
        count, total, cumulative = self._count, self._sum, self._cumulative
        min_up, min_down = self._min_up, self._min_down
        center, scale, clip, offset = self.center, self.scale, self.clip, self.offset
        delta, threshold = self.delta, self.threshold
        up_side, down_side = self.direction != "down", self.direction != "up"
        statistic = 0.0
        minimum = self.min_instances
        for index, value in enumerate(values.tolist()):
            count += 1
            if center is None:
                total = total + value
                increment = value - total / count  # int -> float is exact, as in the numpy path
            else:
                increment = (value - center) / scale
                if clip is not None:
                    if increment > clip:
                        increment = clip
                    elif increment < -clip:
                        increment = -clip
                increment = increment - offset
            cumulative = cumulative + increment
            drag = delta * count
            if up_side:
                up = cumulative - drag
                if up < min_up:
                    min_up = up
                statistic = up - min_up
            if down_side:
                down = -cumulative - drag
                if down < min_down:
                    min_down = down
                if not up_side or down - min_down > statistic:
                    statistic = down - min_down
            if statistic > threshold and count >= minimum:
                self._last_statistic = statistic
                return index
        self._count, self._sum, self._cumulative = count, total, cumulative
        self._min_up, self._min_down = min_up, min_down
        self._last_statistic = statistic
        return -1

    def _scan(self, values: np.ndarray) -> int:
        """Advance the statistics over ``values``; stop at the first signal (its offset) or -1."""
        length = values.size
        counts = np.arange(self._count + 1, self._count + length + 1, dtype=np.float64)
        if self.center is None:
            running = np.cumsum(np.concatenate(([self._sum], values)))[1:]
            increments = values - running / counts
        else:
            increments = (values - self.center) / self.scale
            if self.clip is not None:
                np.clip(increments, -self.clip, self.clip, out=increments)
            increments -= self.offset
        cumulative = np.cumsum(np.concatenate(([self._cumulative], increments)))[1:]
        drag = self.delta * counts
        statistic: np.ndarray | None = None
        up = down = None
        if self.direction != "down":
            up = cumulative - drag
            min_up = np.minimum.accumulate(np.concatenate(([self._min_up], up)))[1:]
            statistic = up - min_up
        if self.direction != "up":
            down = -cumulative - drag
            min_down = np.minimum.accumulate(np.concatenate(([self._min_down], down)))[1:]
            statistic_down = down - min_down
            statistic = statistic_down if statistic is None else np.maximum(statistic, statistic_down)
        assert statistic is not None
        alarm = statistic > self.threshold
        if self._count + 1 < self.min_instances:
            alarm[: self.min_instances - self._count - 1] = False
        hits = np.flatnonzero(alarm)
        if hits.size:
            hit = int(hits[0])
            self._last_statistic = float(statistic[hit])
            return hit
        self._count += length
        if self.center is None:
            self._sum = float(running[-1])
        self._cumulative = float(cumulative[-1])
        if up is not None:
            self._min_up = float(min_up[-1])
        if down is not None:
            self._min_down = float(min_down[-1])
        self._last_statistic = float(statistic[-1])
        return -1

    def _params(self) -> dict[str, Any]:
        return {
            "min_instances": self.min_instances,
            "delta": self.delta,
            "threshold": self.threshold,
            "direction": self.direction,
            "center": self.center,
            "scale": self.scale,
            "offset": self.offset,
            "clip": self.clip,
            "long_run_sigma": self.long_run_sigma,
        }

    def _get_state(self) -> dict[str, Any]:
        return {
            "count": self._count,
            "sum": self._sum,
            "cumulative": self._cumulative,
            "min_up": self._min_up,
            "min_down": self._min_down,
            "last_statistic": self._last_statistic,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._count = int(state["count"])
        self._sum = float(state["sum"])
        self._cumulative = float(state["cumulative"])
        self._min_up = float(state["min_up"])
        self._min_down = float(state["min_down"])
        self._last_statistic = float(state["last_statistic"])
