"""Distances against scipy on the same counts or on the raw values, with stated tolerances."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from datasketches import kll_doubles_sketch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import ks_2samp, wasserstein_distance

from driftline.detectors.distances import (
    jensen_shannon_from_counts,
    ks_from_histograms,
    ks_from_kll,
    psi_from_counts,
    quantile_bin_edges,
    wasserstein_from_histograms,
    wasserstein_from_kll,
)

HISTOGRAM_DISTANCES = [psi_from_counts, jensen_shannon_from_counts, ks_from_histograms]

count_pairs = st.integers(1, 12).flatmap(lambda size: st.tuples(
    st.lists(st.integers(0, 1000), min_size=size, max_size=size).filter(any),
    st.lists(st.integers(0, 1000), min_size=size, max_size=size).filter(any),
))


def sketch_of(values: np.ndarray, k: int = 200) -> kll_doubles_sketch:
    sketch = kll_doubles_sketch(k)
    sketch.update(np.ascontiguousarray(values, dtype=np.float64))
    return sketch


def binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.diff(np.searchsorted(np.sort(values), edges[1:-1]), prepend=0, append=values.size)


def shifted_samples(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=50_000), rng.normal(0.3, 1.2, size=30_000)


# ------------------------------------------------------------------------------- PSI and JS


@settings(max_examples=100, deadline=None)
@given(pair=count_pairs)
def test_psi_is_symmetrised_kullback_leibler_of_floored_proportions(
    pair: tuple[list[int], list[int]]
) -> None:
    reference, window = (np.maximum(np.array(c) / sum(c), 1e-4) for c in pair)
    expected = np.sum(rel_entr(window, reference) + rel_entr(reference, window))
    assert psi_from_counts(*pair) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_psi_known_values() -> None:
    assert psi_from_counts([50, 30, 20], [50, 30, 20]) == 0.0
    assert psi_from_counts([5, 3, 2], [50, 30, 20]) == pytest.approx(0.0, abs=1e-15)
    # 10 % of the window in a bin the reference never saw: (0.1 - 1e-4) * ln(0.1 / 1e-4) ~ 0.69
    assert psi_from_counts([50, 50, 0], [45, 45, 10]) == pytest.approx(
        2 * (0.45 - 0.5) * math.log(0.9) + (0.1 - 1e-4) * math.log(1e3))
    with pytest.raises(ValueError, match="epsilon"):
        psi_from_counts([1], [1], epsilon=0.0)


@settings(max_examples=100, deadline=None)
@given(pair=count_pairs)
def test_jensen_shannon_matches_scipy(pair: tuple[list[int], list[int]]) -> None:
    expected = jensenshannon(np.array(pair[0], float), np.array(pair[1], float), base=2)
    assert jensen_shannon_from_counts(*pair) == pytest.approx(expected, abs=1e-7)
    assert 0.0 <= jensen_shannon_from_counts(*pair) <= 1.0


def test_jensen_shannon_extremes() -> None:
    assert jensen_shannon_from_counts([7, 0, 0], [0, 3, 4]) == 1.0
    assert jensen_shannon_from_counts([2, 4, 6], [1, 2, 3]) == 0.0


@pytest.mark.parametrize("distance", HISTOGRAM_DISTANCES)
def test_histogram_distances_are_nan_for_empty_and_reject_bad_shapes(
    distance: Callable[..., float]
) -> None:
    assert math.isnan(distance([0, 0, 0], [1, 2, 3]))
    assert math.isnan(distance([1, 2, 3], [0, 0, 0]))
    with pytest.raises(ValueError, match="window_counts"):
        distance([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="reference_counts"):
        distance([[1, 2]], [1, 2])
    with pytest.raises(ValueError, match="window_counts"):
        distance([1, 2], [1, -2])


# ------------------------------------------------------------------------------------------ KS


def test_ks_from_histograms_brackets_the_exact_statistic() -> None:
    reference, window = shifted_samples()
    edges = quantile_bin_edges(reference, 20)
    reference_counts, window_counts = binned(reference, edges), binned(window, edges)
    exact = ks_2samp(reference, window).statistic
    binned_ks = ks_from_histograms(reference_counts, window_counts)
    widest = max(np.max(reference_counts / reference.size), np.max(window_counts / window.size))
    assert binned_ks <= exact + 1e-12
    assert exact <= binned_ks + widest
    assert binned_ks > 0.1  # a real shift is seen


def test_ks_from_histograms_is_exact_with_an_edge_at_every_value() -> None:
    rng = np.random.default_rng(1)
    reference, window = rng.integers(0, 30, size=400), rng.integers(5, 40, size=300)
    edges = np.concatenate(([-np.inf], np.arange(0, 41) + 0.5, [np.inf]))
    statistic = ks_from_histograms(binned(reference, edges), binned(window, edges))
    assert statistic == pytest.approx(ks_2samp(reference, window).statistic, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_from_kll_matches_scipy_within_sketch_error(seed: int) -> None:
    reference, window = shifted_samples(seed)
    sketch_a, sketch_b = sketch_of(reference), sketch_of(window)
    tolerance = sketch_a.normalized_rank_error(False) + sketch_b.normalized_rank_error(False)
    assert ks_from_kll(sketch_a, sketch_b) == pytest.approx(
        ks_2samp(reference, window).statistic, abs=tolerance)


def test_ks_from_kll_is_exact_below_capacity() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=150), rng.normal(0.5, size=120)
    expected = ks_2samp(a, b).statistic
    assert ks_from_kll(sketch_of(a), sketch_of(b)) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(ks_from_kll(sketch_of(a), kll_doubles_sketch(200)))


# ----------------------------------------------------------------------------------- Wasserstein


def retained(sketch: kll_doubles_sketch) -> tuple[np.ndarray, np.ndarray]:
    items = list(sketch)
    return np.array([value for value, _ in items]), np.array([weight for _, weight in items], float)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wasserstein_from_kll_matches_scipy(seed: int) -> None:
    reference, window = shifted_samples(seed)
    sketch_a, sketch_b = sketch_of(reference), sketch_of(window)
    distance = wasserstein_from_kll(sketch_a, sketch_b)
    # Exact for the two sketched distributions, i.e. their retained items and weights ...
    (items_a, weights_a), (items_b, weights_b) = retained(sketch_a), retained(sketch_b)
    assert distance == pytest.approx(
        wasserstein_distance(items_a, items_b, weights_a, weights_b), rel=1e-9)
    # ... and within the documented bound of the raw values: (eps_a + eps_b) * pooled range.
    pooled = np.concatenate([reference, window])
    bound = (sketch_a.normalized_rank_error(False) + sketch_b.normalized_rank_error(False)) * (
        pooled.max() - pooled.min())
    assert abs(distance - wasserstein_distance(reference, window)) <= bound


def test_wasserstein_from_kll_is_exact_below_capacity_and_nan_when_empty() -> None:
    reference, window = shifted_samples()
    small_a, small_b = reference[:150], window[:180]
    assert wasserstein_from_kll(sketch_of(small_a), sketch_of(small_b)) == pytest.approx(
        wasserstein_distance(small_a, small_b), rel=1e-12)
    assert math.isnan(wasserstein_from_kll(kll_doubles_sketch(200), sketch_of(small_b)))


@settings(max_examples=100, deadline=None)
@given(pair=count_pairs, widths=st.lists(st.floats(0.01, 10.0), min_size=13, max_size=13),
       tails=st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 5.0)))
def test_wasserstein_from_histograms_is_scipy_on_the_representative_points(
    pair: tuple[list[int], list[int]], widths: list[float], tails: tuple[float, float]
) -> None:
    size = len(pair[0])
    inner = np.cumsum(widths[: size - 1])
    edges = np.concatenate(([-np.inf], inner, [np.inf]))
    if size < 2:
        assert wasserstein_from_histograms(edges, *pair) == 0.0
        return
    quantiles = (inner[0] - tails[0], inner[-1] + tails[1])
    points = np.concatenate(([quantiles[0]], (inner[:-1] + inner[1:]) / 2, [quantiles[1]]))
    expected = wasserstein_distance(points, points, pair[0], pair[1])
    actual = wasserstein_from_histograms(edges, *pair, reference_quantiles=quantiles)
    assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_wasserstein_from_histograms_approximates_raw_values() -> None:
    reference, window = shifted_samples()
    edges = quantile_bin_edges(reference, 100)
    outer = tuple(np.quantile(reference, [0.005, 0.995]))
    distance = wasserstein_from_histograms(
        edges, binned(reference, edges), binned(window, edges), reference_quantiles=outer)
    exact = wasserstein_distance(reference, window)
    # Stated tolerance: the widest inner bin (~0.3 here) bounds the error inside the edges; the
    # observed error, tails included, is far smaller.
    assert distance == pytest.approx(exact, abs=0.05)
    default_outer = wasserstein_from_histograms(
        edges, binned(reference, edges), binned(window, edges))
    assert default_outer == pytest.approx(exact, abs=0.1)


def test_wasserstein_from_histograms_validates() -> None:
    edges = [-np.inf, 0.0, 1.0, np.inf]
    # Without reference_quantiles the outer bins take their neighbour's width: points -0.5, 1.5.
    assert wasserstein_from_histograms(edges, [1, 0, 0], [0, 0, 1]) == pytest.approx(2.0)
    assert math.isnan(wasserstein_from_histograms(edges, [0, 0, 0], [0, 0, 1]))
    with pytest.raises(ValueError, match="bin_edges"):
        wasserstein_from_histograms(edges[:-1], [1, 0, 0], [0, 0, 1])
    with pytest.raises(ValueError, match="window_counts"):
        wasserstein_from_histograms(edges, [1, 0, 0], [0, 1])
    with pytest.raises(ValueError, match="reference_quantiles"):
        wasserstein_from_histograms([-np.inf, 0.0, np.inf], [1, 0], [0, 1])
    with pytest.raises(ValueError, match="reference_quantiles"):
        wasserstein_from_histograms(edges, [1, 0, 0], [0, 0, 1], reference_quantiles=(0.5, 2.0))
    assert wasserstein_from_histograms(
        [-np.inf, 0.0, np.inf], [1, 0], [0, 1], reference_quantiles=(-2.0, 3.0)) == 5.0


# -------------------------------------------------------------------------------------- edges


def test_quantile_bin_edges_give_equal_mass_bins_on_continuous_data() -> None:
    values = np.random.default_rng(8).lognormal(size=10_000)
    edges = quantile_bin_edges(values, 10)
    assert edges[0] == -np.inf and edges[-1] == np.inf and edges.size == 11
    assert np.all(np.diff(edges) > 0)
    assert np.all(np.abs(binned(values, edges) / values.size - 0.1) <= 1e-3)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(-3, 3), min_size=1, max_size=300), n_bins=st.integers(1, 30))
def test_quantile_bin_edges_on_discrete_data_are_strictly_increasing_and_never_empty(
    values: list[int], n_bins: int
) -> None:
    array = np.array(values, dtype=np.float64)
    edges = quantile_bin_edges(array, n_bins)
    assert edges[0] == -np.inf and edges[-1] == np.inf
    distinct, counts = np.unique(array, return_counts=True)
    assert np.all(np.diff(edges) > 0) and edges.size - 1 <= min(2 * n_bins, distinct.size)
    assert np.all(binned(array, edges) > 0)
    # Every atom (at least 1 / n_bins of the data) is alone in its bin.
    alone = distinct[counts * n_bins >= array.size]
    bin_of = np.searchsorted(edges[1:-1], distinct, side="right")
    for value in alone:
        assert (bin_of == bin_of[distinct == value][0]).sum() == 1, (value, edges)


def test_a_rare_binary_value_and_a_rare_nonzero_amount_get_bins_of_their_own() -> None:
    # Before, quantile edges alone put both into a single bin (every quantile is 0): a histogram that
    # cannot change however many ones, or non-zero amounts, arrive.
    rng = np.random.default_rng(9)
    binary = (rng.random(10_000) < 0.03).astype(np.float64)
    assert quantile_bin_edges(binary, 20).tolist() == [-np.inf, 1.0, np.inf]
    amounts = np.where(rng.random(10_000) < 0.03, rng.lognormal(5.0, 1.0, size=10_000), 0.0)
    edges = quantile_bin_edges(amounts, 20)
    assert edges.size == 3 and edges[1] == amounts[amounts > 0].min()  # {0} and {> 0}


def test_quantile_bin_edges_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="values"):
        quantile_bin_edges([1.0, np.nan], 4)
    with pytest.raises(ValueError, match="values"):
        quantile_bin_edges([], 4)
    with pytest.raises(ValueError, match="n_bins"):
        quantile_bin_edges([1.0, 2.0], 0)


def test_histogram_distances_equal_the_individual_functions() -> None:
    from driftline.detectors.distances import (
        bin_points,
        histogram_distances,
        jensen_shannon_from_counts,
        ks_from_histograms,
        psi_from_counts,
        wasserstein_from_histograms,
    )

    rng = np.random.default_rng(4)
    edges = np.array([-np.inf, -1.0, -0.2, 0.3, 1.1, np.inf])
    for _ in range(20):
        reference = rng.integers(0, 50, size=5)
        window = rng.integers(0, 50, size=5)
        combined = histogram_distances(reference, window, bin_points(edges, 5, (-3.0, 3.0)))
        assert combined["psi"] == psi_from_counts(reference, window)
        assert combined["jensen_shannon"] == jensen_shannon_from_counts(reference, window)
        assert combined["ks"] == ks_from_histograms(reference, window)
        assert combined["wasserstein"] == wasserstein_from_histograms(edges, reference, window, (-3.0, 3.0))
    empty = histogram_distances([1, 2], [0, 0])
    assert set(empty) == {"psi", "jensen_shannon", "ks"} and all(np.isnan(v) for v in empty.values())
    with pytest.raises(ValueError, match="points"):
        histogram_distances([1, 2], [1, 2], points=[0.0])
