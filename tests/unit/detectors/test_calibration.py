"""Calibration helpers: robust scale against scipy, long-run variance against closed forms."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.stats import median_abs_deviation

import driftline.detectors.calibration as calibration_module
from driftline.detectors.calibration import (
    dependence_factor,
    huber_clip,
    long_run_variance,
    robust_center_scale,
    standardise_reference,
    validate_false_alarm_rate,
)


def _arma(ar: list[float], ma: list[float], n: int, seed: int) -> np.ndarray:
    innovations = np.random.default_rng(seed).standard_normal(n + 1_000)
    return lfilter([1.0, *ma], [1.0, *[-a for a in ar]], innovations)[1_000:]


def test_robust_center_scale_matches_scipy() -> None:
    values = np.random.default_rng(1).standard_t(3, size=10_001)
    center, scale = robust_center_scale(values)
    assert center == np.median(values)
    assert scale == pytest.approx(median_abs_deviation(values, scale="normal"), rel=1e-4)  # 1.4826 vs 1/0.67449


def test_robust_center_scale_falls_back_for_degenerate_data() -> None:
    mostly_constant = np.array([2.0] * 7 + [3.0, 5.0])  # MAD = 0: fall back to the std
    assert robust_center_scale(mostly_constant) == (2.0, pytest.approx(float(np.std(mostly_constant))))
    assert robust_center_scale([4.0, 4.0, 4.0]) == (4.0, 1.0)
    with pytest.raises(ValueError, match="empty"):
        robust_center_scale([])
    with pytest.raises(ValueError, match=r"values\[1\]"):
        robust_center_scale([1.0, np.nan])


def test_huber_clip() -> None:
    np.testing.assert_array_equal(huber_clip([-5.0, -1.0, 0.5, 7.0], 3.0), [-3.0, -1.0, 0.5, 3.0])
    np.testing.assert_array_equal(huber_clip([-5.0, 7.0], None), [-5.0, 7.0])


@pytest.mark.parametrize(
    ("ar", "ma", "expected_ratio"),
    [
        ([], [], 1.0),  # white noise
        ([0.5], [], 3.0),  # AR(1): (1 + phi) / (1 - phi)
        ([-0.5], [], 1.0 / 3.0),  # negative dependence: less long-run variance
        ([0.5, 0.2], [], None),  # AR(2): closed form below
        ([], [0.6], (1.6**2) / 1.36),  # MA(1): (1 + theta)^2 / (1 + theta^2), needs a long AR sieve
    ],
)
def test_long_run_variance_of_arma_processes(ar: list[float], ma: list[float], expected_ratio: float | None) -> None:
    series = _arma(ar, ma, 50_000, seed=2)
    if expected_ratio is None:
        phi1, phi2 = ar
        rho1 = phi1 / (1 - phi2)
        marginal = 1.0 / (1 - phi1 * rho1 - phi2 * (phi1 * rho1 + phi2))
        expected_ratio = (1.0 / (1 - phi1 - phi2) ** 2) / marginal
    ratio = long_run_variance(series) / series.var()
    assert ratio == pytest.approx(expected_ratio, rel=0.06)


def test_long_run_variance_ar1_is_accurate_across_seeds() -> None:
    ratios = [long_run_variance(s) / s.var() for s in (_arma([0.5], [], 50_000, seed) for seed in range(10))]
    assert np.mean(ratios) == pytest.approx(3.0, rel=0.02)
    assert np.std(ratios) < 0.1


def test_long_run_variance_edge_cases() -> None:
    assert long_run_variance(np.full(100, 3.0)) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        long_run_variance([1.0])
    with pytest.raises(ValueError, match="max_order"):
        long_run_variance([1.0, 2.0, 3.0], max_order=-1)


def test_standardise_reference() -> None:
    reference = np.random.default_rng(3).standard_t(3, size=20_000) * 5.0 + 100.0
    result = standardise_reference(reference, clip=3.0)
    assert abs(result.transformed.mean()) < 1e-12  # re-centred after clipping
    assert result.transformed.max() <= 3.0 - result.offset + 1e-12
    assert result.center == pytest.approx(100.0, abs=0.2)
    assert result.scale == pytest.approx(5.0 * 0.765 * 1.4826, rel=0.05)  # t3: MAD = 0.765
    assert result.dependence == pytest.approx(1.0, abs=0.06)
    with pytest.raises(ValueError, match="at least"):
        standardise_reference(reference[:50], clip=3.0)
    with pytest.raises(ValueError, match="clip"):
        standardise_reference(reference, clip=0.0)


def test_dependence_factor_of_ar1() -> None:
    assert dependence_factor(_arma([0.5], [], 50_000, seed=4)) == pytest.approx(3.0, rel=0.06)


def test_validate_false_alarm_rate() -> None:
    assert validate_false_alarm_rate(1e-6) == 1e-6
    for bad in (0.0, 1.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="false_alarm_rate"):
            validate_false_alarm_rate(bad)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(calibration_module)
    assert result.attempted > 0 and result.failed == 0
