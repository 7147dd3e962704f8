"""Two-sided Page–Hinkley / CUSUM test for a shift in the mean of a stream."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

from .base import DriftDetector, check_standardisation
from .calibration import standardise_reference, validate_false_alarm_rate
from .run_length import RunLengthModel, one_sided_models

__all__ = ["PageHinkley", "cusum_average_run_length", "cusum_threshold"]

_DIRECTIONS = ("both", "up", "down")

#: Siegmund's correction for the overshoot of a Gaussian random walk over the boundary,
#: 2 × 0.583 standard deviations (Siegmund 1985, "Sequential Analysis", ch. X).
_OVERSHOOT = 1.166

#: Calibrated thresholds target an average run length this many times longer than
#: 1 / false_alarm_rate.  Why: a threshold is set from one reference of 50,000 values and used at
#: rates far below any that can be checked (the engine's budgets come to 1e-9-1e-12 per event), so
#: the estimation error of the reference is multiplied by ``theta * h`` (~27 at 1e-12): the long-run
#: variance is off by ±1-2 %, the mean by ±2.5 % of the allowance (Gaussian, 50,000 values), which
#: moves the run length by ±20-40 % at a 1e-6 target and up to ±70 % at 1e-12.  It was first set when
#: the diffusion approximation measured 1.05-1.2 times the target on Gaussian and Student-t(3)
#: streams (development seeds); the run-length model (:mod:`.run_length`) that replaced it is kept
#: behind the same margin.  The margin costs about 4 events of delay on a 0.5-sigma shift.
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


def _calibrated_threshold(false_alarm_rate: float, allowance: float, sigma: float, sides: float, model: RunLengthModel | None) -> float:
    # A two-sided test gives each side half the rate: run length 2 / rate per side (1 / rate when
    # the other side is silent). The safety factor lengthens the target run length (see
    # SAFETY_FACTOR). Without a fitted model of the side (detectors calibrated before there was
    # one, a side the reference never moves up), Siegmund's diffusion approximation with the
    # long-run sigma.
    run_length = SAFETY_FACTOR * sides / false_alarm_rate
    threshold = cusum_threshold(run_length, allowance, sigma) if model is None else model.threshold(run_length)
    return max(threshold, 1e-12)


class PageHinkley(DriftDetector):
    """Two-sided Page–Hinkley (CUSUM) test for a change in the mean.

    Uncalibrated (``center=None``), it mirrors ``river.drift.PageHinkley`` with ``alpha=1``: each
    value's deviation from the running mean of the stream since the last reset, minus ``delta``,
    is accumulated, and a drift is signalled when the accumulated sum rises more than
    ``threshold`` above its running minimum (``direction="up"``), or the mirror image
    (``"down"``), or either (``"both"``), once ``min_instances`` values have been seen.

    Calibrated (``center`` given, usually through :meth:`calibrate`), the increments are
    ``d = clip((x - center) / scale, -clip, clip) - offset`` against a *known* reference, and
    ``delta`` (the allowance) and the thresholds are in those standardised units. The two sides
    may have thresholds of their own: the increments of a skewed field (a count that is mostly
    zero, a rare binary event) rise in rare large jumps and fall in many small steps, so at the
    same threshold one side raises false alarms many times more often than the other.

    After a signal all statistics reset and the detector continues with the next value.

    Parameters
    ----------
    min_instances
        Values since the last reset before a signal is possible.
    delta
        Allowance subtracted from every increment (>= 0).
    threshold
        Signal when the statistic exceeds this (> 0); for ``"both"``, the upward side's threshold.
    direction
        ``"both"``, ``"up"`` (increases of the mean) or ``"down"``.
    center, scale, offset, clip
        Reference transform of the calibrated form; ``center=None`` selects the running mean.
    long_run_sigma
        Long-run standard deviation of the calibrated increments (set by :meth:`calibrate`): what
        :meth:`retarget` needs to move the threshold to another false-alarm rate.
    threshold_down
        Threshold of the downward side (> 0); ``None``: ``threshold``.
    adjustment_up, overshoot_up, adjustment_down, overshoot_down
        The fitted run-length model of each side (:class:`~driftline.detectors.run_length.RunLengthModel`
        with ``drift = delta``), set by :meth:`calibrate`; :meth:`retarget` derives each side's
        threshold from it. ``None`` (detectors calibrated before the model, or a side it could not
        be fitted to): Siegmund's diffusion approximation with ``long_run_sigma``.
    silent_side
        ``"up"`` or ``"down"``: that side never rose on the reference (its increments were all
        negative), so it cannot raise a false alarm on values in the reference's range and
        :meth:`retarget` gives the other side the whole rate; ``None``: half each.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> reference = rng.normal(size=50_000)
    >>> detector = PageHinkley.calibrate(reference, false_alarm_rate=1e-6)
    >>> stream = np.concatenate([rng.normal(size=5_000), rng.normal(0.5, 1.0, size=5_000)])
    >>> detector.update_many(stream)[:4]  # the shift starts at 5000; after a signal the test restarts
    array([5052, 5155, 5258, 5365])
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
        threshold_down: float | None = None,
        adjustment_up: float | None = None,
        overshoot_up: float | None = None,
        adjustment_down: float | None = None,
        overshoot_down: float | None = None,
        silent_side: str | None = None,
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
        if threshold_down is not None and not (math.isfinite(threshold_down) and threshold_down > 0.0):
            raise ValueError(f"threshold_down must be None or a finite number > 0, got {threshold_down!r}")
        if silent_side not in (None, "up", "down"):
            raise ValueError(f"silent_side must be None, 'up' or 'down', got {silent_side!r}")
        for side, adjustment, overshoot in (("up", adjustment_up, overshoot_up), ("down", adjustment_down, overshoot_down)):
            if (adjustment is None) != (overshoot is None):
                raise ValueError(f"adjustment_{side} and overshoot_{side} must be given together")
            if adjustment is not None and not (math.isfinite(adjustment) and adjustment > 0.0):
                raise ValueError(f"adjustment_{side} must be None or a finite number > 0, got {adjustment!r}")
            if overshoot is not None and not math.isfinite(overshoot):
                raise ValueError(f"overshoot_{side} must be None or finite, got {overshoot!r}")
        self.min_instances = int(min_instances)
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.direction = direction
        self.center = None if center is None else float(center)
        self.scale = float(scale)
        self.offset = float(offset)
        self.clip = None if clip is None else float(clip)
        self.long_run_sigma = None if long_run_sigma is None else float(long_run_sigma)
        self.threshold_down = None if threshold_down is None else float(threshold_down)
        self.adjustment_up = None if adjustment_up is None else float(adjustment_up)
        self.overshoot_up = None if overshoot_up is None else float(overshoot_up)
        self.adjustment_down = None if adjustment_down is None else float(adjustment_down)
        self.overshoot_down = None if overshoot_down is None else float(overshoot_down)
        self.silent_side = silent_side
        self._reset()
        self._last_statistic = 0.0
        self._last_threshold = self.threshold

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
        """CUSUM statistic after the last value (at the signal, for a signalling value).

        Of the side nearer its threshold (the larger statistic / threshold); with one threshold
        for both sides, the larger of the two statistics.
        """
        return self._last_statistic

    def _models(self) -> tuple[RunLengthModel | None, RunLengthModel | None]:
        up = down = None
        if self.adjustment_up is not None and self.overshoot_up is not None:
            up = RunLengthModel(self.adjustment_up, self.overshoot_up, self.delta)
        if self.adjustment_down is not None and self.overshoot_down is not None:
            down = RunLengthModel(self.adjustment_down, self.overshoot_down, self.delta)
        return up, down

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

        Each side's threshold comes from a run-length model of its CUSUM on this reference's own
        increments (:mod:`.run_length`): the adjustment coefficient of their distribution, scaled
        for dependence, and an overshoot fitted by simulating the CUSUM on a block-bootstrap
        resample (deterministic: a fixed seed). About 30 ms for 50,000 values.

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
        models = one_sided_models(reference.transformed, allowance, reference.variance / reference.long_run_variance)
        up, down = models.up, models.down
        detector = cls(
            min_instances=1,
            delta=allowance,
            direction="both",
            center=reference.center,
            scale=reference.scale,
            offset=reference.offset,
            clip=reference.clip,
            long_run_sigma=sigma,
            adjustment_up=None if up is None else up.adjustment,
            overshoot_up=None if up is None else up.overshoot,
            adjustment_down=None if down is None else down.adjustment,
            overshoot_down=None if down is None else down.overshoot,
            silent_side=models.silent,
        )
        detector.retarget(rate)
        return detector

    def retarget(self, false_alarm_rate: float) -> None:
        """Move the threshold of a calibrated detector to a new false-alarm rate per event.

        The statistic carries on: only the boundary it is compared with moves. The engine
        re-targets its detectors as it learns the model's event rate (budgets are in alerts per
        month, so a busier model needs a smaller rate per event).
        """
        if self.long_run_sigma is None:
            raise ValueError("only a calibrated Page-Hinkley test (PageHinkley.calibrate) can be re-targeted")
        rate = validate_false_alarm_rate(false_alarm_rate)
        up, down = self._models()
        if self.direction != "both":
            sides_up = sides_down = 1.0
        else:  # half the rate each, unless one side cannot raise a false alarm
            sides_up = 1.0 if self.silent_side == "down" else 2.0
            sides_down = 1.0 if self.silent_side == "up" else 2.0
        self.threshold = _calibrated_threshold(rate, self.delta, self.long_run_sigma, sides_up, up)
        # A detector written before the per-side models has one threshold for both sides, and keeps it.
        if up is not None or down is not None or self.silent_side is not None:
            self.threshold_down = _calibrated_threshold(rate, self.delta, self.long_run_sigma, sides_down, down)

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
                self._record_signal(self._last_statistic, self._last_threshold)
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
        delta, threshold_up, threshold_down = self.delta, self.threshold, self._threshold_down()
        up_side, down_side = self.direction != "down", self.direction != "up"
        statistic_up = statistic_down = 0.0
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
                statistic_up = up - min_up
            if down_side:
                down = -cumulative - drag
                if down < min_down:
                    min_down = down
                statistic_down = down - min_down
            if (statistic_up > threshold_up or statistic_down > threshold_down) and count >= minimum:
                self._note_statistic(statistic_up, statistic_down)
                return index
        self._count, self._sum, self._cumulative = count, total, cumulative
        self._min_up, self._min_down = min_up, min_down
        self._note_statistic(statistic_up, statistic_down)
        return -1

    def _threshold_down(self) -> float:
        return self.threshold if self.threshold_down is None else self.threshold_down

    def _note_statistic(self, up: float, down: float) -> None:
        """Keep the statistic of the side nearer its threshold (up on a tie), and that threshold.

        Both scans call this on Python floats, so it is the same operations whatever the batching.
        A side the direction leaves out has statistic 0.0 and is never nearer.
        """
        threshold_up, threshold_down = self.threshold, self._threshold_down()
        # With one threshold: the larger statistic, exactly as before there were two.
        nearer_down = down > up if threshold_up == threshold_down else down * threshold_up > up * threshold_down
        if self.direction == "down" or (self.direction == "both" and nearer_down):
            self._last_statistic, self._last_threshold = down, threshold_down
        else:
            self._last_statistic, self._last_threshold = up, threshold_up

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
        statistic_up = statistic_down = np.zeros(length)
        alarm = np.zeros(length, dtype=bool)
        up = down = None
        if self.direction != "down":
            up = cumulative - drag
            min_up = np.minimum.accumulate(np.concatenate(([self._min_up], up)))[1:]
            statistic_up = up - min_up
            alarm |= statistic_up > self.threshold
        if self.direction != "up":
            down = -cumulative - drag
            min_down = np.minimum.accumulate(np.concatenate(([self._min_down], down)))[1:]
            statistic_down = down - min_down
            alarm |= statistic_down > self._threshold_down()
        if self._count + 1 < self.min_instances:
            alarm[: self.min_instances - self._count - 1] = False
        hits = np.flatnonzero(alarm)
        if hits.size:
            hit = int(hits[0])
            self._note_statistic(float(statistic_up[hit]), float(statistic_down[hit]))
            return hit
        self._count += length
        if self.center is None:
            self._sum = float(running[-1])
        self._cumulative = float(cumulative[-1])
        if up is not None:
            self._min_up = float(min_up[-1])
        if down is not None:
            self._min_down = float(min_down[-1])
        self._note_statistic(float(statistic_up[-1]), float(statistic_down[-1]))
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
            "threshold_down": self.threshold_down,
            "adjustment_up": self.adjustment_up,
            "overshoot_up": self.overshoot_up,
            "adjustment_down": self.adjustment_down,
            "overshoot_down": self.overshoot_down,
            "silent_side": self.silent_side,
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
