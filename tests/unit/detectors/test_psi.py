"""PSI: the formula against scipy, streaming windows against a plain loop, calibration, the window checks' null."""

from __future__ import annotations

import bisect
import doctest
import functools
import json
import math

import numpy as np
import pytest
from detector_streams import assert_batching_invariant, piecewise_stream
from detector_streams import stationary_stream as _stream
from scipy.stats import chi2, entropy, multinomial

import driftline.detectors.psi as psi_module
from driftline.detectors.distances import quantile_bin_edges
from driftline.detectors.psi import (
    PSI,
    SAFETY_FACTOR,
    WindowPSIThreshold,
    _bootstrap_weights,
    _psi_rows,
    multinomial_psi_isf,
    population_stability_index,
    weighted_chi_square_isf,
)


def _drifting_stream(seed: int) -> np.ndarray:
    return piecewise_stream([0.0, 0.6, 0.0, -0.4, 0.0], [2_350, 1_700, 900, 2_600, 1_450], seed)


def test_population_stability_index_is_the_symmetrised_kullback_leibler_divergence() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        reference, actual = rng.dirichlet(np.ones(8)), rng.dirichlet(np.ones(8))
        expected = entropy(actual, reference) + entropy(reference, actual)
        assert population_stability_index(reference, actual) == pytest.approx(expected, rel=1e-12)
    # empty bins are floored at epsilon: finite and large
    assert population_stability_index([0.5, 0.5], [1.0, 0.0], epsilon=1e-4) == pytest.approx(
        (1.0 - 0.5) * np.log(1.0 / 0.5) + (1e-4 - 0.5) * np.log(1e-4 / 0.5)
    )
    with pytest.raises(ValueError, match="epsilon"):
        population_stability_index([0.5, 0.5], [0.5, 0.5], epsilon=0.0)
    with pytest.raises(ValueError, match="equal length"):
        population_stability_index([0.5, 0.5], [1.0])


def _loop_psi(values: np.ndarray, detector: PSI) -> tuple[list[int], list[float]]:
    """Plain-Python windows: bisect for bins, scipy for the divergence."""
    inner = detector.bin_edges[1:-1].tolist()
    reference = np.maximum(detector.reference_proportions, detector.epsilon)
    counts = [0] * len(reference)
    hits, scores = [], []
    for index, value in enumerate(values.tolist()):
        counts[bisect.bisect_right(inner, value)] += 1
        if sum(counts) == detector.window_size:
            actual = np.maximum(np.array(counts) / detector.window_size, detector.epsilon)
            # entropy() renormalises its inputs; PSI does not, so take the terms directly
            score = float(np.sum((actual - reference) * np.log(actual / reference)))
            scores.append(score)
            if score > detector.threshold:
                hits.append(index)
            counts = [0] * len(reference)
    return hits, scores


def test_streaming_windows_match_a_plain_loop() -> None:
    detector = PSI.calibrate(_stream("gaussian", 20_000, seed=2), false_alarm_rate=1e-5, window_size=500, n_bins=8)
    values = _drifting_stream(seed=3)
    expected, scores = _loop_psi(values, detector)
    assert len(expected) >= 3
    assert detector.update_many(values).tolist() == expected
    assert detector.last_statistic == pytest.approx(scores[-1], rel=1e-12)


def test_update_many_equals_update_loop_for_any_split() -> None:
    values = _drifting_stream(seed=4)

    def make() -> PSI:
        return PSI.calibrate(_stream("gaussian", 20_000, seed=5), false_alarm_rate=1e-5, window_size=300)

    expected = assert_batching_invariant(make, values, cuts=8, min_signals=3)
    assert np.diff(expected).min() == 300  # consecutive windows signal inside one batch


def test_round_trip_mid_stream_is_strict_json_and_continues_identically() -> None:
    values = _drifting_stream(seed=6)
    original = PSI.calibrate(_stream("gaussian", 20_000, seed=7), false_alarm_rate=1e-5, window_size=400)
    original.update_many(values[:1234])
    text = json.dumps(original.to_state(), allow_nan=False)  # infinite outer edges are encoded
    restored = PSI.from_state(json.loads(text))
    assert np.isinf(restored.bin_edges[[0, -1]]).all()
    assert restored.update_many(values[1234:]).tolist() == original.update_many(values[1234:]).tolist()
    assert json.dumps(restored.to_state()) == json.dumps(original.to_state())


def test_calibrated_bins_are_reference_quantiles() -> None:
    reference = _stream("student_t3", 50_000, seed=8)
    detector = PSI.calibrate(reference, n_bins=10)
    assert detector.bin_edges.size == 11
    np.testing.assert_allclose(detector.reference_proportions, 0.1, atol=1e-4)
    np.testing.assert_allclose(detector.bin_edges[1:-1], np.quantile(reference, np.arange(1, 10) / 10))


def test_bootstrap_weights_recover_known_dependence() -> None:
    # iid: Pearson's chi-square, all weights 1.  AR(1) phi = 0.5, ten bins: by simulation of
    # 20,000 independent windows the weights are about 2.9, 1.5, 1.1, 1.0 ... (largest first).
    for kind, largest in (("gaussian", (0.85, 1.3)), ("ar1", (2.4, 3.4))):
        reference = _stream(kind, 50_000, seed=9)
        inner = np.quantile(reference, np.arange(1, 10) / 10)
        bins = np.searchsorted(inner, reference, side="right")
        proportions = np.bincount(bins, minlength=10) / reference.size
        weights = np.sort(_bootstrap_weights(bins, proportions, 1000, 1e-4, seed=0))[::-1]
        assert weights[-1] < 0.05  # proportions sum to one: one direction carries no variance
        assert largest[0] < weights[0] < largest[1]
        assert weights[-2] > 0.7 and weights[1] < (1.3 if kind == "gaussian" else 1.9)


def test_weighted_chi_square_quantile() -> None:
    for probability in (1e-2, 1e-3, 1e-5):
        assert weighted_chi_square_isf(probability, [1.0] * 9) == pytest.approx(chi2.isf(probability, 9), rel=1e-3)
        assert weighted_chi_square_isf(probability, [2.5] * 4) == pytest.approx(2.5 * chi2.isf(probability, 4), rel=1e-3)
    weights = np.array([2.9, 1.5, 1.1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    samples = (np.random.default_rng(10).chisquare(1.0, size=(400_000, weights.size)) * weights).sum(axis=1)
    assert weighted_chi_square_isf(1e-2, weights) == pytest.approx(np.quantile(samples, 0.99), rel=0.02)


@pytest.mark.parametrize("kind", ["gaussian", "student_t3", "ar1"])
def test_calibrated_false_alarm_rate_on_stationary_streams(kind: str) -> None:
    # Target 1e-5 per event with 1000-event windows = 1 % of windows: at most 30 alarms in
    # 3,000 windows (the safety margin puts the expectation near 12).
    detector = PSI.calibrate(_stream(kind, 50_000, seed=101), false_alarm_rate=1e-5)
    alarms = detector.update_many(_stream(kind, 3_000_000, seed=202)).size
    assert 2 <= alarms <= 30


def test_detects_a_half_sigma_shift_within_two_windows() -> None:
    state = PSI.calibrate(_stream("gaussian", 50_000, seed=11), false_alarm_rate=1e-6).to_state()
    for trial in range(30):
        values = _stream("gaussian", 6_000, seed=600 + trial)
        values[2_500:] += 0.5
        hits = PSI.from_state(state).update_many(values)
        assert hits.size and 2_500 <= hits[0] < 4_000  # the first full post-change window ends at 3999


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        (([0.0, 0.0, 1.0], [0.5, 0.5]), {}, "bin_edges"),
        (([0.0, -np.inf, 1.0], [0.5, 0.5]), {}, "bin_edges"),
        (([0.0, 1.0, 2.0], [0.5, 0.4]), {}, "reference_proportions"),
        (([0.0, 1.0, 2.0], [1.0]), {}, "reference_proportions"),
        (([0.0, 1.0, 2.0], [0.5, 0.5]), {"window_size": 0}, "window_size"),
        (([0.0, 1.0, 2.0], [0.5, 0.5]), {"threshold": -1.0}, "threshold"),
        (([0.0, 1.0, 2.0], [0.5, 0.5]), {"epsilon": 0.0}, "epsilon"),
    ],
)
def test_bad_arguments_name_the_parameter(args: tuple[list[float], list[float]], kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        PSI(*args, **kwargs)  # type: ignore[arg-type]


def test_calibrate_rejects_bad_arguments_and_non_finite_values() -> None:
    reference = _stream("gaussian", 5_000, seed=12)
    with pytest.raises(ValueError, match="n_bins"):
        PSI.calibrate(reference, n_bins=1)
    with pytest.raises(ValueError, match="false_alarm_rate"):
        PSI.calibrate(reference, false_alarm_rate=1e-2)  # 10 per 1000-event window
    reference[17] = np.nan
    with pytest.raises(ValueError, match=r"reference_values\[17\]"):
        PSI.calibrate(reference)
    detector = PSI([-np.inf, 0.0, np.inf], [0.5, 0.5], window_size=2)
    with pytest.raises(ValueError, match=r"values\[0\]"):
        detector.update_many([np.inf])


def test_drift_detected_is_read_only_and_only_at_window_ends() -> None:
    detector = PSI([-np.inf, 0.0, np.inf], [0.5, 0.5], window_size=4, threshold=0.1)
    with pytest.raises(AttributeError):
        detector.drift_detected = True  # type: ignore[misc]
    assert detector.update_many([1.0, 1.0, 1.0]).size == 0
    assert detector.update(1.0).drift_detected is True  # window [1, 1, 1, 1] vs 50/50
    assert detector.update(-1.0).drift_detected is False
    assert detector.update_many([1.0, -1.0, 1.0]).size == 0  # balanced window: PSI 0
    assert detector.last_statistic == 0.0


def test_docstring_examples_run() -> None:
    result = doctest.testmod(psi_module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("smallest", "largest"), [(50, 300), (300, 1_000), (1_000, 5_000), (5_000, 20_000)])
def test_the_window_threshold_holds_its_false_alarm_rate_for_windows_of_any_size(smallest: int, largest: int) -> None:
    """The engine's window check: windows of varying size against one calibrated reference (20 quantile bins).

    Sizes vary as window counts do, across the cache's buckets (exact sizes up to 1,000, 1 % steps
    above); forty sizes, so that the exact nulls stay few.
    """
    rng = np.random.default_rng(smallest)
    reference = rng.normal(size=50_000)
    inner = quantile_bin_edges(reference, 20)[1:-1]
    bins = np.searchsorted(inner, reference, side="right")
    n_bins = inner.size + 1
    calibrated = WindowPSIThreshold.calibrate(bins, n_bins)
    proportions = np.bincount(bins, minlength=n_bins) / reference.size
    target, windows = 1e-2, 3_000
    sizes = rng.choice(np.unique(np.geomspace(smallest, largest - 1, 40).astype(int)), size=windows)
    alarms = 0
    for size in np.unique(sizes).tolist():
        count = int((sizes == size).sum())
        values = rng.normal(size=(count, size))
        window = np.stack([np.bincount(row, minlength=n_bins) for row in np.searchsorted(inner, values, side="right")]) / size
        alarms += sum(population_stability_index(proportions, row) > calibrated.threshold(size, target) for row in window)
    # Expected about target / SAFETY_FACTOR (10 of 3,000); at most 1.5 x the target, and the margin
    # must not make the check blind either.
    assert 2 <= alarms <= 1.5 * target * windows, alarms


def _enumerated_psi_null(proportions: list[float], window_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Every value ``n · PSI`` of a window (two or three bins) can take, and its probability (scipy's multinomial)."""
    n = window_count
    if len(proportions) == 2:
        counts = np.stack([n - np.arange(n + 1), np.arange(n + 1)], axis=1)
    else:
        first, second = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        possible = first + second <= n
        counts = np.stack([first[possible], second[possible], n - first[possible] - second[possible]], axis=1)
    statistic = n * _psi_rows(counts.astype(np.float64), np.maximum(proportions, 1e-4), n, 1e-4)
    values, index = np.unique(np.round(statistic, 9), return_inverse=True)
    return values, np.bincount(index.ravel(), weights=multinomial.pmf(counts, n, proportions), minlength=values.size)


@pytest.mark.parametrize(
    ("proportions", "window_count"),
    [
        ([0.9, 0.1], 8),
        ([0.9, 0.1], 50),
        ([0.5, 0.5], 300),
        ([0.9, 0.09, 0.01], 50),
        ([0.7, 0.29995, 0.00005], 120),  # a bin below the epsilon floor
        ([0.6, 0.3, 0.1], 300),
    ],
)
def test_exact_window_null_equals_enumeration(proportions: list[float], window_count: int) -> None:
    """The exact null of small windows against every window that can occur, weighted by scipy's multinomial.

    The statistic takes few values here, so a threshold anywhere between two of them is the same
    test: the computed one must exceed its level by no more than the grid allows (an atom within a
    cell), and miss no more than a tenth of the level that the exact quantile would flag.
    """
    values, probability = _enumerated_psi_null(proportions, window_count)
    above = probability.sum() - np.cumsum(probability)  # above[i]: probability of a value beyond values[i]
    for level in (1e-2, 1e-4, 1e-6):
        exact = values[np.argmax(above <= level)]  # the smallest value that at most `level` of windows exceed
        computed = multinomial_psi_isf(level, proportions, window_count)
        rate = probability[values > computed].sum()
        assert rate <= 1.1 * level, (level, computed, exact, rate)
        assert probability[values > exact].sum() - rate <= 0.1 * level, (level, computed, exact, rate)


#: The engine's fields, as the engine bins them: numeric ones in 20 quantile bins of their reference
#: (``quantile_bin_edges``: the zero-inflated count keeps 3 bins, the 5-valued field 4, the binary
#: one 2), the categorical one in its categories (one of them 0.1 %, one 0.02 %) and an "unseen"
#: bucket the reference never filled.
_FIELD_STREAMS = {"gaussian": "gaussian", "ar1": "ar1", "count": "zero_inflated", "binary": "binary0.1", "five_values": "lowcard5"}
_CATEGORY_SHARES = (0.5, 0.3, 0.15, 0.0488, 0.001, 0.0002)


@functools.cache
def _field_reference(kind: str) -> tuple[WindowPSIThreshold, np.ndarray]:
    """The calibrated window threshold of a seeded reference of ``kind`` and its inner bin edges (none if categorical)."""
    if kind == "categorical":
        bins = np.random.default_rng(31).choice(len(_CATEGORY_SHARES), size=50_000, p=_CATEGORY_SHARES)
        return WindowPSIThreshold.calibrate(bins, len(_CATEGORY_SHARES) + 1), np.empty(0)
    values = _stream(_FIELD_STREAMS[kind], 200_000 if kind == "ar1" else 50_000, seed=32)
    inner = quantile_bin_edges(values, 20)[1:-1]
    return WindowPSIThreshold.calibrate(np.searchsorted(inner, values, side="right"), inner.size + 1), inner


_WINDOW_SIZES = [50, 100, 300, 1_000, 10_000, 100_000]


@pytest.mark.parametrize("size", _WINDOW_SIZES)
@pytest.mark.parametrize("kind", ["gaussian", "count", "binary", "five_values", "categorical"])
def test_window_threshold_false_alarm_rate_of_independent_fields(kind: str, size: int) -> None:
    """Windows of 50 to 100,000 independent values drawn from the reference's own bin proportions.

    The reference is taken as exact (no sampling error of its own: ``reference_size`` 1e12), so the
    rate measures the window's null alone.  With the weights of independent values the threshold is
    the exact null's quantile; with the bootstrap's weights it may only be higher (the dependence
    factor is at least 1), by the bootstrap's noise.
    """
    calibrated, _ = _field_reference(kind)
    proportions = np.array(calibrated.reference_proportions)
    occupied = int((proportions > 0).sum())  # Pearson's chi-square: weight 1 per degree of freedom
    independent_weights = (0.0,) * (proportions.size - occupied + 1) + (1.0,) * (occupied - 1)
    exact = WindowPSIThreshold(independent_weights, 10**12, calibrated.reference_proportions)
    bootstrapped = WindowPSIThreshold(calibrated.weights, 10**12, calibrated.reference_proportions)
    target, windows = 3e-2, 20_000
    counts = np.random.default_rng(size).multinomial(size, proportions, size=windows).astype(np.float64)
    psi = _psi_rows(counts, np.maximum(proportions, 1e-4), size, 1e-4)  # the engine's own computation
    alarms = int((psi > exact.threshold(size, target)).sum())
    # Expected 20,000 x 3e-2 / SAFETY_FACTOR = 200 (Poisson 95 % interval 173-228); a threshold 1.5
    # times too permissive gives about 300, too strict about 133: both fall outside 154-260.
    expected = windows * target / SAFETY_FACTOR
    assert expected / 1.3 <= alarms <= 1.3 * expected, alarms
    # The bootstrap's weights: never more alarms, never grossly fewer (measured 0.41-1.04 of 200).
    assert expected / 3.0 <= int((psi > bootstrapped.threshold(size, target)).sum()) <= alarms


@pytest.mark.parametrize(
    ("size", "target", "windows"), [(50, 1e-2, 60_000), (100, 1e-2, 60_000), (300, 1e-2, 60_000), (1_000, 3e-2, 20_000), (10_000, 0.3, 2_000)]
)
def test_window_threshold_false_alarm_rate_of_an_autocorrelated_field(size: int, target: float, windows: int) -> None:
    """AR(1) with phi = 0.5: consecutive windows of one stream against a time-ordered reference of 200,000 values.

    The dependence factor (the bootstrap's weighted chi-square over Pearson's, measured on windows of
    a thousand) holds the rate from 300 values on; at 50-100 values it is conservative (0.16-0.70 of
    the intended rate at 1e-2 and 1e-3 per window; measured, 30 references), hence the wider lower
    bound there.
    """
    calibrated, inner = _field_reference("ar1")
    proportions = np.array(calibrated.reference_proportions)
    bins = np.searchsorted(inner, _stream("ar1", windows * size, seed=size), side="right").reshape(windows, size)
    counts = np.stack([np.bincount(row, minlength=inner.size + 1) for row in bins]).astype(np.float64)
    psi = _psi_rows(counts, np.maximum(proportions, 1e-4), size, 1e-4)
    alarms = int((psi > calibrated.threshold(size, target)).sum())
    # Expected 200 (Poisson 95 % interval 173-228); 1.5 times too permissive gives about 300.
    expected = windows * target / SAFETY_FACTOR
    assert expected / (3.0 if size <= 100 else 1.3) <= alarms <= 1.3 * expected, alarms


def test_window_threshold_without_proportions_is_the_weighted_chi_square() -> None:
    """Older callers (weights only) keep the large-window threshold; bad shares name the parameter."""
    weights = (0.0, 1.0, 1.0, 1.0)
    assert WindowPSIThreshold(weights, 50_000).threshold(1_000, 1e-3) == pytest.approx(
        chi2.isf(1e-3 / SAFETY_FACTOR, 3) * 1.02 / 1_000, rel=5e-3  # the saddlepoint's error
    )
    with pytest.raises(ValueError, match="reference_proportions"):
        WindowPSIThreshold(weights, 50_000, (0.5, 0.5))
    with pytest.raises(ValueError, match="epsilon"):
        WindowPSIThreshold(weights, 50_000, (0.25,) * 4, epsilon=0.0)
    assert WindowPSIThreshold(weights, 50_000, (1.0, 0.0, 0.0, 0.0)).threshold(1_000, 1e-3) == np.inf


def test_a_rare_binary_value_that_becomes_common_is_seen_by_the_window_check() -> None:
    # With quantile edges alone a binary field with 3 % ones had one bin, and the window check's
    # threshold was infinite: nothing to test, whatever arrived. The ones now have a bin of their own.
    rng = np.random.default_rng(41)
    reference = (rng.random(50_000) < 0.03).astype(np.float64)
    inner = quantile_bin_edges(reference, 20)[1:-1]
    calibrated = WindowPSIThreshold.calibrate(np.searchsorted(inner, reference, side="right"), inner.size + 1)
    threshold = calibrated.threshold(1_000, 1e-9)
    assert math.isfinite(threshold)
    proportions = np.array(calibrated.reference_proportions)
    drifted = np.bincount(np.searchsorted(inner, (rng.random(1_000) < 0.15).astype(np.float64), side="right"), minlength=2)
    psi = _psi_rows(drifted[None, :].astype(np.float64), np.maximum(proportions, 1e-4), 1_000, 1e-4)[0]
    assert psi > threshold, (psi, threshold)
    clean = np.bincount(np.searchsorted(inner, (rng.random(1_000) < 0.03).astype(np.float64), side="right"), minlength=2)
    assert _psi_rows(clean[None, :].astype(np.float64), np.maximum(proportions, 1e-4), 1_000, 1e-4)[0] < threshold
