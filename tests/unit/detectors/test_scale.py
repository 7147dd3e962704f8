"""ScaleShift: batching, state, calibration on several kinds of stream, power against a doubled variance."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from detector_streams import assert_batching_invariant
from detector_streams import stationary_stream as _stream

import driftline.detectors.scale as scale_module
from driftline.detectors.scale import ScaleShift

#: The engine's real per-event shares of the default budget (1 false alarm per model per month, a
#: month of 30 days) over the credit-risk contract's 61 tests, at 10 and at 1,000 events/s.
ENGINE_SHARES = {"10/s": 1.0 / (61 * 30 * 86_400 * 10), "1000/s": 1.0 / (61 * 30 * 86_400 * 1_000)}


def _spread_changes(seed: int) -> np.ndarray:
    """Unit variance, then the variance doubled, back, then halved, back: several signals in one stream."""
    rng = np.random.default_rng(seed)
    sigmas, lengths = [1.0, np.sqrt(2.0), 1.0, np.sqrt(0.5), 1.0, 2.0, 1.0], [1500, 700, 1500, 1500, 1500, 300, 1500]
    return np.concatenate([rng.normal(0.0, s, size=k) for s, k in zip(sigmas, lengths)])


def test_update_many_equals_update_loop_for_any_split() -> None:
    reference = _stream("gaussian", 5_000, seed=1)
    assert_batching_invariant(lambda: ScaleShift.calibrate(reference, false_alarm_rate=1e-4), _spread_changes(2),
                              cuts=40, min_signals=3)


def test_round_trip_mid_stream_continues_identically() -> None:
    detector = ScaleShift.calibrate(_stream("gaussian", 5_000, seed=3), false_alarm_rate=1e-4)
    values = _spread_changes(4)
    detector.update_many(values[:2_000])
    restored = ScaleShift.from_state(detector.to_state())
    assert restored.update_many(values[2_000:]).tolist() == detector.update_many(values[2_000:]).tolist()
    assert restored.to_state() == detector.to_state()


def test_the_first_value_has_no_difference_and_cannot_signal() -> None:
    detector = ScaleShift.calibrate(_stream("gaussian", 5_000, seed=5), false_alarm_rate=1e-4)
    assert detector.update_many([1e6]).size == 0 and detector.n_seen == 1
    hits = detector.update_many([-1e6] * 50)  # from here on the differences are enormous
    assert hits.size and hits[0] >= 0


@pytest.mark.parametrize("kind", ["gaussian", "student_t3", "ar1"])
def test_calibrated_false_alarm_rate_on_stationary_streams(kind: str) -> None:
    # At 2e-4, 1,000,000 events would see 200 alarms at the target rate; the calibration's safety
    # margin puts the expectation lower. Within 1.5x of the target, and not so low that the test is blind.
    reference = _stream(kind, 50_000, seed=101)
    stream = _stream(kind, 1_000_000, seed=202)
    alarms = ScaleShift.calibrate(reference, false_alarm_rate=2e-4).update_many(stream).size
    assert 10 <= alarms <= 300, alarms
    strict = ScaleShift.calibrate(reference, false_alarm_rate=1e-6)
    assert strict.update_many(stream).size <= 4


@pytest.mark.parametrize("share", sorted(ENGINE_SHARES))
def test_a_doubled_variance_is_found_quickly_at_the_engine_share_of_the_budget(share: str) -> None:
    state = ScaleShift.calibrate(_stream("gaussian", 50_000, seed=303), false_alarm_rate=ENGINE_SHARES[share]).to_state()
    delays = []
    for trial in range(200):
        values = _stream("gaussian", 5_000, seed=1_000 + trial)
        values[1_000:] *= np.sqrt(2.0)
        hits = ScaleShift.from_state(state).update_many(values)
        assert not (hits < 1_000).any(), f"trial {trial}: a false alarm before the change"
        after = hits[hits >= 1_000]
        delays.append(int(after[0]) - 1_000 if after.size else 10**9)
    found = np.asarray(delays) < 4_000
    assert found.mean() >= 0.95
    # Measured: median 204 (10/s) and 261 (1000/s), 200 of 200 found each. With Page–Hinkley's
    # default Huber clip on the squared differences they were 415 and 535 (the clip cut the upper
    # tail, where a wider spread shows); the issue asks for a median of at most 300.
    assert np.median(delays) <= 300


def test_a_mean_shift_alone_does_not_look_like_a_change_of_spread() -> None:
    state = ScaleShift.calibrate(_stream("gaussian", 50_000, seed=404), false_alarm_rate=1e-6).to_state()
    fired = 0
    for trial in range(100):
        values = _stream("gaussian", 4_000, seed=2_000 + trial)
        values[1_000:] += 1.0
        fired += ScaleShift.from_state(state).update_many(values).size > 0
    assert fired <= 5


def test_calibrate_rejects_bad_arguments() -> None:
    reference = _stream("gaussian", 1_000, seed=6)
    with pytest.raises(ValueError, match="factor"):
        ScaleShift.calibrate(reference, factor=1.0)
    with pytest.raises(ValueError, match="more than 200"):
        ScaleShift.calibrate(reference[:150])
    with pytest.raises(ValueError, match="not finite"):
        ScaleShift.calibrate(np.r_[reference, np.nan])
    with pytest.raises(ValueError, match="scale"):
        ScaleShift(scale=0.0)
    with pytest.raises(ValueError, match="cap"):
        ScaleShift(cap=-1.0)


def test_a_constant_reference_calibrates_and_any_spread_is_a_change() -> None:
    detector = ScaleShift.calibrate(np.full(1_000, 3.0), false_alarm_rate=1e-6)
    assert detector.update_many(np.full(500, 3.0)).size == 0
    assert detector.update_many(_stream("gaussian", 500, seed=7) + 3.0).size > 0


def test_docstring_examples_run() -> None:
    result = doctest.testmod(scale_module)
    assert result.attempted > 0 and result.failed == 0
