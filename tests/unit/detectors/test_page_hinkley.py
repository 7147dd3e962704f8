"""Page–Hinkley: agreement with river and a textbook CUSUM, batching, calibration, delays."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
from detector_streams import assert_batching_invariant, piecewise_stream
from detector_streams import stationary_stream as _stream
from river import drift

import driftline.detectors.page_hinkley as page_hinkley_module
from driftline.detectors.page_hinkley import SAFETY_FACTOR, PageHinkley, cusum_average_run_length, cusum_threshold


def _drifting_stream(seed: int) -> np.ndarray:
    """Several abrupt mean changes, some close together, so one batch can hold several signals."""
    return piecewise_stream([0.0, 1.5, -1.0, 0.0, 2.5, 0.0], [1500, 120, 200, 1800, 90, 1500], seed)




@pytest.mark.parametrize(
    ("min_instances", "delta", "threshold", "direction"),
    [(30, 0.005, 50.0, "both"), (10, 0.05, 10.0, "both"), (5, 0.01, 8.0, "up"), (5, 0.01, 8.0, "down")],
)
def test_uncalibrated_matches_river_page_hinkley(min_instances: int, delta: float, threshold: float, direction: str) -> None:
    values = _drifting_stream(seed=3)
    reference = drift.PageHinkley(min_instances=min_instances, delta=delta, threshold=threshold, alpha=1.0, mode=direction)
    expected = []
    for index, value in enumerate(values):
        reference.update(float(value))
        if reference.drift_detected:
            expected.append(index)
    ours = PageHinkley(min_instances, delta, threshold, direction).update_many(values)
    assert len(expected) >= 3
    assert ours.tolist() == expected


def _textbook_cusum(values: np.ndarray, detector: PageHinkley) -> list[int]:
    """Two-sided CUSUM in its recursive form, in plain Python (independent of Page's form).

    Each side against its own threshold (a calibrated detector may have two).
    """
    assert detector.center is not None and detector.clip is not None
    threshold_down = detector.threshold if detector.threshold_down is None else detector.threshold_down
    high = low = 0.0
    hits = []
    for index, value in enumerate(values.tolist()):
        z = min(max((value - detector.center) / detector.scale, -detector.clip), detector.clip) - detector.offset
        high = max(0.0, high + z - detector.delta)
        low = max(0.0, low - z - detector.delta)
        if high > detector.threshold or low > threshold_down:
            hits.append(index)
            high = low = 0.0
    return hits


def test_calibrated_matches_textbook_cusum() -> None:
    detector = PageHinkley.calibrate(_stream("gaussian", 20_000, seed=1), false_alarm_rate=1e-3)
    values = _drifting_stream(seed=4)
    expected = _textbook_cusum(values, detector)
    assert len(expected) >= 5
    assert detector.update_many(values).tolist() == expected


@pytest.mark.parametrize("reference_kind", [None, "gaussian", "binary0.05"])
def test_update_many_equals_update_loop_for_any_split(reference_kind: str | None) -> None:
    # binary0.05: the two sides have thresholds far apart (12.9 upward, 2.3 downward).
    values = _drifting_stream(seed=5)

    def make() -> PageHinkley:
        if reference_kind is not None:
            return PageHinkley.calibrate(_stream(reference_kind, 5_000, seed=2), false_alarm_rate=1e-3)
        return PageHinkley(min_instances=10, delta=0.01, threshold=10.0)

    expected = assert_batching_invariant(make, values, cuts=12, min_signals=3)
    # one batch holding several signals
    counts = np.diff(np.searchsorted(expected, [0, 1500, 1900, values.size]))
    assert counts.max() >= 2


def test_round_trip_mid_stream_continues_identically() -> None:
    values = _drifting_stream(seed=6)
    original = PageHinkley.calibrate(_stream("student_t3", 5_000, seed=3), false_alarm_rate=1e-3)
    original.update_many(values[:1600])
    restored = PageHinkley.from_state(json.loads(json.dumps(original.to_state())))
    assert json.dumps(restored.to_state()) == json.dumps(original.to_state())
    assert restored.update_many(values[1600:]).tolist() == original.update_many(values[1600:]).tolist()
    assert json.dumps(restored.to_state()) == json.dumps(original.to_state())


def test_a_state_written_before_the_run_length_model_loads_and_behaves_as_before() -> None:
    # The layout of the previous release: one threshold for both sides, no per-side model.
    old_state = {
        "type": "PageHinkley",
        "version": 1,
        "params": {
            "min_instances": 1,
            "delta": 0.1875,
            "threshold": 9.5,
            "direction": "both",
            "center": 0.02,
            "scale": 0.98,
            "offset": 0.001,
            "clip": 3.0,
            "long_run_sigma": 1.01,
        },
        "n_seen": 0,
        "drift_detected": 0,
        "state": {"count": 0, "sum": 0.0, "cumulative": 0.0, "min_up": 0.0, "min_down": 0.0, "last_statistic": 0.0},
    }
    detector = PageHinkley.from_state(json.loads(json.dumps(old_state)))
    assert detector.threshold_down is None and detector.adjustment_up is None and detector.silent_side is None
    values = _drifting_stream(seed=7)
    expected = _textbook_cusum(values, PageHinkley.from_state(old_state))
    assert len(expected) >= 5
    assert detector.update_many(values).tolist() == expected
    # Re-targeted, it keeps one threshold, from Siegmund's approximation with the long-run sigma, as before.
    detector.retarget(1e-6)
    assert detector.threshold_down is None
    assert detector.threshold == pytest.approx(cusum_threshold(SAFETY_FACTOR * 2 / 1e-6, 0.1875, 1.01), rel=1e-12)


def test_drift_detected_is_read_only_and_tracks_last_value() -> None:
    detector = PageHinkley(min_instances=1, delta=0.0, threshold=1.0)
    detector.update(0.0)
    assert detector.drift_detected is False
    with pytest.raises(AttributeError):
        detector.drift_detected = True  # type: ignore[misc]
    detector.update_many([0.0, 0.0, 0.0, 50.0])
    assert detector.drift_detected is True
    detector.update(0.0)
    assert detector.drift_detected is False
    assert detector.n_seen == 6


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"min_instances": 0}, "min_instances"),
        ({"delta": -0.1}, "delta"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"direction": "sideways"}, "direction"),
        ({"center": 0.0, "scale": 0.0}, "scale"),
        ({"center": 0.0, "clip": -1.0}, "clip"),
        ({"clip": 3.0}, "center"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        PageHinkley(**kwargs)  # type: ignore[arg-type]


def test_calibrate_rejects_bad_arguments() -> None:
    reference = _stream("gaussian", 1_000, seed=1)
    with pytest.raises(ValueError, match="false_alarm_rate"):
        PageHinkley.calibrate(reference, false_alarm_rate=0.0)
    with pytest.raises(ValueError, match="shift"):
        PageHinkley.calibrate(reference, shift=-1.0)
    with pytest.raises(ValueError, match="reference_values"):
        PageHinkley.calibrate(reference[:10])


def test_non_finite_values_raise_naming_the_index_and_leave_state_alone() -> None:
    detector = PageHinkley()
    detector.update_many([1.0, 2.0])
    before = json.dumps(detector.to_state())
    with pytest.raises(ValueError, match=r"values\[2\]"):
        detector.update_many([1.0, 2.0, float("nan"), 3.0])
    with pytest.raises(ValueError, match="not finite"):
        detector.update(float("inf"))
    assert json.dumps(detector.to_state()) == before


def test_siegmund_run_length_matches_the_classical_table() -> None:
    # One-sided CUSUM, k = 0.5, h = 4 on N(0, 1): ARL0 ≈ 336 (Siegmund 1985; Markov-chain value 336).
    assert 325 < cusum_average_run_length(4.0, 0.5, 1.0) < 345
    # k = 0.5, h = 5: ARL0 ≈ 930.
    assert 900 < cusum_average_run_length(5.0, 0.5, 1.0) < 960


@pytest.mark.parametrize("kind", ["gaussian", "student_t3", "ar1"])
def test_calibrated_false_alarm_rate_on_stationary_streams(kind: str) -> None:
    # At a 1e-4 target, 1,000,000 events should see at most ~100 alarms (the safety margin puts
    # the expectation near 35); at 1e-6, 2,000,000 events should see at most a few.
    reference = _stream(kind, 50_000, seed=101)
    stream = _stream(kind, 2_000_000, seed=202)
    loose = PageHinkley.calibrate(reference, false_alarm_rate=1e-4)
    alarms = loose.update_many(stream[:1_000_000]).size
    assert 5 <= alarms <= 100
    strict = PageHinkley.calibrate(reference, false_alarm_rate=1e-6)
    assert strict.update_many(stream).size <= 4


@pytest.mark.parametrize(("shift", "median_bound"), [(0.5, 130), (0.25, 600)])
def test_detection_delay_after_a_mean_shift(shift: float, median_bound: int) -> None:
    detector0 = PageHinkley.calibrate(_stream("gaussian", 50_000, seed=303), false_alarm_rate=1e-6)
    state = detector0.to_state()
    delays = []
    for trial in range(60):
        values = _stream("gaussian", 8_000, seed=400 + trial)
        values[3_000:] += shift
        hits = PageHinkley.from_state(state).update_many(values)
        after = hits[hits >= 3_000]
        assert after.size, f"trial {trial} missed a {shift}-sigma shift"
        delays.append(int(after[0]) - 3_000)
    assert np.median(delays) <= median_bound
    assert min(delays) > 5  # no instant "detection": the statistic needs evidence


def test_docstring_examples_run() -> None:
    result = doctest.testmod(page_hinkley_module)
    assert result.attempted > 0 and result.failed == 0


def test_signal_statistics_and_thresholds_do_not_depend_on_batching() -> None:
    rng = np.random.default_rng(17)
    reference = rng.normal(size=20_000)
    stream = np.concatenate([rng.normal(size=3_000), rng.normal(0.8, 1.0, size=3_000)])
    whole = PageHinkley.calibrate(reference)
    hits = whole.update_many(stream)
    statistics = whole.signal_statistics
    assert len(hits) >= 3 and len(statistics) == len(hits)
    assert all(s > t for s, t in zip(statistics, whole.signal_thresholds))
    pieces = PageHinkley.calibrate(reference)
    collected: list[float] = []
    for part in np.array_split(stream, 37):
        pieces.update_many(part)
        collected.extend(pieces.signal_statistics)
    assert collected == statistics
    pieces.update_many([])
    assert pieces.signal_statistics == []
