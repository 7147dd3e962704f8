"""Re-targeting a calibrated detector to another false-alarm rate per event.

The engine calibrates once (in the reference profile) and moves thresholds as it learns the model's
event rate, so a re-targeted detector must be the detector a calibration at that rate would give.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftline.detectors.adwin import ADWIN
from driftline.detectors.page_hinkley import PageHinkley
from driftline.detectors.scale import ScaleShift

REFERENCE = np.random.default_rng(11).standard_t(4, size=20_000)


@pytest.mark.parametrize("rate", [1e-4, 1e-7, 1e-11])
def test_a_retargeted_page_hinkley_has_the_threshold_of_a_calibration_at_that_rate(rate: float) -> None:
    detector = PageHinkley.calibrate(REFERENCE, false_alarm_rate=1e-6)
    detector.retarget(rate)
    assert detector.threshold == pytest.approx(PageHinkley.calibrate(REFERENCE, false_alarm_rate=rate).threshold, rel=1e-12)


def test_a_smaller_rate_moves_the_threshold_up_and_the_statistic_carries_on() -> None:
    detector = PageHinkley.calibrate(REFERENCE, false_alarm_rate=1e-6)
    detector.update_many(REFERENCE[:5_000])
    before = detector.to_state()["state"]
    loose = detector.threshold
    detector.retarget(1e-9)
    assert detector.threshold > loose
    assert detector.to_state()["state"] == before
    # The re-targeted threshold survives a state round trip.
    assert PageHinkley.from_state(detector.to_state()).threshold == detector.threshold


@pytest.mark.parametrize("rate", [1e-4, 1e-9])
def test_a_retargeted_spread_test_and_adwin_match_a_calibration_at_that_rate(rate: float) -> None:
    spread = ScaleShift.calibrate(REFERENCE, false_alarm_rate=1e-6)
    spread.retarget(rate)
    assert spread.threshold == pytest.approx(ScaleShift.calibrate(REFERENCE, false_alarm_rate=rate).threshold, rel=1e-12)
    adwin = ADWIN.calibrate(REFERENCE, false_alarm_rate=1e-6)
    adwin.retarget(rate)
    fresh = ADWIN.calibrate(REFERENCE, false_alarm_rate=rate)
    assert adwin.delta == pytest.approx(fresh.delta, rel=1e-12)
    assert ADWIN.from_state(adwin.to_state()).to_state() == fresh.to_state()


def test_uncalibrated_detectors_and_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="calibrated"):
        PageHinkley().retarget(1e-6)
    with pytest.raises(ValueError, match="calibrated"):
        ADWIN().retarget(1e-6)
    with pytest.raises(ValueError, match="false_alarm_rate"):
        PageHinkley.calibrate(REFERENCE).retarget(0.0)
