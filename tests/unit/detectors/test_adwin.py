"""ADWIN: a naive reference implementation, batching, calibration, delays, river comparison."""

from __future__ import annotations

import bisect
import doctest
import json
import math

import numpy as np
import pytest
from detector_streams import assert_batching_invariant, piecewise_stream
from detector_streams import stationary_stream as _stream
from river import drift
from scipy.stats import norm

import driftline.detectors.adwin as adwin_module
from driftline.detectors.adwin import ADWIN


def _drifting_stream(seed: int) -> np.ndarray:
    return piecewise_stream([0.0, 1.5, -1.0, 0.5, 2.5, 0.0], [3000, 700, 500, 2500, 900, 3000], seed)


def _tail_factor(detector: ADWIN, w: float) -> float:
    """The skewness correction at ``w``: linear interpolation in the detector's table, 1 without one."""
    if detector.tail_points is None or detector.tail_factors is None:
        return 1.0
    points, factors = detector.tail_points, detector.tail_factors
    if w <= points[0]:
        return factors[0]
    if w >= points[-1]:
        return factors[-1]
    right = bisect.bisect_right(points, w)
    fraction = (w - points[right - 1]) / (points[right] - points[right - 1])
    return factors[right - 1] + fraction * (factors[right] - factors[right - 1])


def _naive_adwin(values: np.ndarray, detector: ADWIN) -> list[int]:
    """ADWIN by its definition, in plain Python: all block sums kept, cut points enumerated.

    Cut points at block completion t: for every level i, the ``max_buckets`` most recent odd
    multiples of 2**i below t that leave at least ``min_window_length`` values on each side.
    """
    clock, buckets = detector.clock, detector.max_buckets
    min_blocks = max(1, math.ceil(detector.min_window_length / clock))
    grace_blocks = math.ceil(detector.grace_period / clock)
    origin = None
    block_sums: list[float] = [0.0]  # block_sums[b] = sum of block b - 1 (1-based); index 0 unused
    block_squares: list[float] = [0.0]
    start, hits, partial = 0, [], []
    for index, value in enumerate(values.tolist()):
        if detector.center is None:
            origin = value if origin is None else origin
            partial.append(value - origin)
        else:
            z = (value - detector.center) / detector.scale
            z = min(max(z, -detector.clip), detector.clip) if detector.clip is not None else z
            partial.append(z - detector.offset)
        if len(partial) < clock:
            continue
        block_sums.append(sum(partial))
        block_squares.append(sum(v * v for v in partial))
        partial = []
        t = len(block_sums) - 1
        if t - start < max(grace_blocks, 2 * min_blocks):
            continue
        candidates = []
        for level in range(t.bit_length()):
            q = (t - 1) >> level
            q = q if q % 2 else q - 1
            for _ in range(buckets):
                p = q << level
                if q >= 1 and p - start >= min_blocks and t - p >= min_blocks:
                    candidates.append(p)
                q -= 2
        if not candidates:
            continue
        n = (t - start) * clock
        window_sum = sum(block_sums[start + 1 : t + 1])
        if detector.variance is None:
            window_squares = sum(block_squares[start + 1 : t + 1])
            variance = max((window_squares / n - (window_sum / n) ** 2) * n / (n - 1), 1e-12)
        else:
            variance = detector.variance
        z2 = norm.isf(detector.delta / (2 * len(candidates))) ** 2
        violating = []
        for p in candidates:
            n0, n1 = (p - start) * clock, (t - p) * clock
            s0 = sum(block_sums[start + 1 : p + 1])
            difference = (window_sum - s0) / n1 - s0 / n0
            harmonic = 1 / n0 + 1 / n1
            factor = _tail_factor(detector, difference * (1 / n1**2 - 1 / n0**2) / harmonic**2)
            if difference * difference * factor > z2 * variance * harmonic:
                violating.append(p)
        if violating:
            hits.append(index)
            start = max(violating)
    return hits


@pytest.mark.parametrize(
    "make",
    [
        lambda: ADWIN(),
        lambda: ADWIN(delta=0.05, clock=8, max_buckets=3, min_window_length=16),
        lambda: ADWIN.calibrate(_stream("gaussian", 5_000, seed=1), false_alarm_rate=1e-5),
        # A count field: the skewness correction of the cut test far from 1.
        lambda: ADWIN.calibrate(_stream("zero_inflated", 5_000, seed=1), false_alarm_rate=1e-5),
    ],
    ids=["defaults", "small-clock", "calibrated", "calibrated-count"],
)
def test_matches_naive_reference_implementation(make: object) -> None:
    values = _drifting_stream(seed=11)
    detector = make()  # type: ignore[operator]
    expected = _naive_adwin(values, detector)
    assert len(expected) >= 4
    assert detector.update_many(values).tolist() == expected


@pytest.mark.parametrize("calibrated", [False, True])
def test_update_many_equals_update_loop_for_any_split(calibrated: bool) -> None:
    values = _drifting_stream(seed=12)

    def make() -> ADWIN:
        if calibrated:
            return ADWIN.calibrate(_stream("gaussian", 5_000, seed=2), false_alarm_rate=1e-4)
        return ADWIN(delta=0.01, clock=8, max_buckets=2)

    assert_batching_invariant(make, values, cuts=10, min_signals=4)


def test_round_trip_mid_stream_continues_identically() -> None:
    values = _drifting_stream(seed=13)
    original = ADWIN.calibrate(_stream("ar1", 5_000, seed=3), false_alarm_rate=1e-4)
    original.update_many(values[:3333])
    restored = ADWIN.from_state(json.loads(json.dumps(original.to_state())))
    assert json.dumps(restored.to_state()) == json.dumps(original.to_state())
    assert restored.update_many(values[3333:]).tolist() == original.update_many(values[3333:]).tolist()
    assert json.dumps(restored.to_state()) == json.dumps(original.to_state())


def test_state_stays_small_on_a_long_stationary_stream() -> None:
    detector = ADWIN.calibrate(_stream("gaussian", 5_000, seed=4), false_alarm_rate=1e-6)
    assert detector.update_many(_stream("gaussian", 1_000_000, seed=5)).size == 0
    assert detector.width == 1_000_000  # no cut: the window holds everything
    assert len(detector.to_state()["state"]["positions"]) < 5 * 20  # O(max_buckets · log t)


def test_cut_drops_the_older_part_of_the_window() -> None:
    detector = ADWIN.calibrate(_stream("gaussian", 5_000, seed=6), false_alarm_rate=1e-6)
    values = np.concatenate([np.zeros(4_000), np.full(400, 3.0)])
    hits = detector.update_many(values)
    # The first block made only of post-change values ends at 4031; the cut falls at the change
    # (block boundary 4000), so afterwards the window holds exactly the 400 post-change values.
    assert hits.tolist() == [4_031]
    assert detector.width == 400


def test_drift_detected_is_read_only_and_tracks_last_value() -> None:
    values = np.concatenate([_stream("gaussian", 2_000, seed=9), _stream("gaussian", 500, seed=10) + 3.0])
    signal = int(ADWIN().update_many(values)[0])
    assert signal >= 2_000 and (signal + 1) % 32 == 0  # checks happen when a block completes
    detector = ADWIN()
    detector.update_many(values[:signal])
    assert detector.drift_detected is False
    with pytest.raises(AttributeError):
        detector.drift_detected = True  # type: ignore[misc]
    detector.update(float(values[signal]))
    assert detector.drift_detected is True
    detector.update(float(values[signal + 1]))
    assert detector.drift_detected is False


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.5}, "delta"),
        ({"clock": 0}, "clock"),
        ({"max_buckets": 0}, "max_buckets"),
        ({"min_window_length": 0}, "min_window_length"),
        ({"grace_period": -1}, "grace_period"),
        ({"center": 0.0, "scale": -1.0}, "scale"),
        ({"variance": 0.0}, "variance"),
        ({"offset": 1.0}, "center"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ADWIN(**kwargs)  # type: ignore[arg-type]


def test_non_finite_values_raise_naming_the_index() -> None:
    detector = ADWIN()
    with pytest.raises(ValueError, match=r"values\[1\]"):
        detector.update_many([0.0, float("-inf")])
    assert detector.n_seen == 0
    with pytest.raises(ValueError, match="false_alarm_rate"):
        ADWIN.calibrate(_stream("gaussian", 1_000, seed=1), false_alarm_rate=2.0)


@pytest.mark.parametrize("kind", ["gaussian", "student_t3", "ar1"])
def test_calibrated_false_alarm_rate_on_stationary_streams(kind: str) -> None:
    # Target 1e-4 per event: at most 100 alarms in 1,000,000 events (measured ~25: the
    # Bonferroni bound is conservative), and none at the product's 1e-6 target.
    reference = _stream(kind, 50_000, seed=101)
    stream = _stream(kind, 1_000_000, seed=202)
    loose = ADWIN.calibrate(reference, false_alarm_rate=1e-4)
    alarms = sum(loose.update_many(stream[i : i + 100_000]).size for i in range(0, stream.size, 100_000))
    assert 3 <= alarms <= 100
    assert ADWIN.calibrate(reference, false_alarm_rate=1e-6).update_many(stream).size <= 2


def test_river_adwin_floods_autocorrelated_streams_where_ours_does_not() -> None:
    stream = _stream("ar1", 100_000, seed=7)
    river_adwin = drift.ADWIN()
    river_alarms = 0
    for value in stream.tolist():
        river_adwin.update(value)
        river_alarms += river_adwin.drift_detected
    ours = ADWIN.calibrate(_stream("ar1", 50_000, seed=8), false_alarm_rate=1e-6).update_many(stream).size
    assert river_alarms >= 10
    assert ours == 0


@pytest.mark.parametrize(("kind", "shift", "median_bound"), [("gaussian", 0.5, 160), ("gaussian", 0.25, 600), ("ar1", 0.5, 400)])
def test_detection_delay_after_a_mean_shift(kind: str, shift: float, median_bound: int) -> None:
    sigma = 1.0 if kind == "gaussian" else math.sqrt(4.0 / 3.0)
    state = ADWIN.calibrate(_stream(kind, 50_000, seed=303), false_alarm_rate=1e-6).to_state()
    delays = []
    for trial in range(40):
        values = _stream(kind, 10_000, seed=500 + trial)
        values[4_000:] += shift * sigma
        hits = ADWIN.from_state(state).update_many(values)
        after = hits[hits >= 4_000]
        assert after.size, f"trial {trial} missed"
        delays.append(int(after[0]) - 4_000)
    assert np.median(delays) <= median_bound


def test_docstring_examples_run() -> None:
    result = doctest.testmod(adwin_module)
    assert result.attempted > 0 and result.failed == 0
