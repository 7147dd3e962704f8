"""Window sketches: results against numpy on the raw values, merge laws, determinism, codecs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.detectors.sketch_encoding import (
    categorical_from_bytes,
    categorical_to_bytes,
    numeric_from_bytes,
    numeric_to_bytes,
    window_state_from_bytes,
)
from driftline.detectors.sketches import (
    QUANTILE_RANKS,
    CategoricalWindowState,
    NumericWindowState,
    categorical_add,
    categorical_initialize,
    categorical_merge,
    categorical_result,
    numeric_add,
    numeric_deterministic_result,
    numeric_initialize,
    numeric_merge,
    numeric_result,
)

EDGES = np.array([-np.inf, -1.5, -0.5, 0.0, 0.5, 1.5, np.inf])
CATEGORIES = ("red", "green", "blue")


def numeric_state(batches: Sequence[np.ndarray], edges: np.ndarray = EDGES) -> NumericWindowState:
    state = numeric_initialize(edges)
    for batch in batches:
        numeric_add(state, batch)
    return state


def categorical_state(batches: Sequence[np.ndarray], lg_max_k: int = 6) -> CategoricalWindowState:
    state = categorical_initialize(CATEGORIES, lg_max_k=lg_max_k)
    for batch in batches:
        categorical_add(state, batch)
    return state


def reference_histogram(values: np.ndarray, edges: np.ndarray) -> list[int]:
    # np.histogram needs finite outer edges; any edges beyond the data give the same bins.
    finite = edges.copy()
    finite[0], finite[-1] = min(values.min(), edges[1]) - 1, max(values.max(), edges[-2]) + 1
    return np.histogram(values, bins=finite)[0].tolist()


def deterministic_prefix(state: NumericWindowState) -> bytes:
    return numeric_to_bytes(state)[: -len(state.quantile_sketch.serialize())]


def inverted_cdf_rank(sorted_values: np.ndarray, quantile: float) -> float:
    return np.searchsorted(sorted_values, quantile, side="right") / sorted_values.size


finite_values = st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=150)


# ------------------------------------------------------------------------------------ numeric


def test_numeric_result_matches_numpy_on_raw_values() -> None:
    rng = np.random.default_rng(7)
    batches = [rng.normal(0.2, 1.3, size=size) for size in (1, 999, 10_000, 0, 5_000)]
    values = np.concatenate(batches)
    state = numeric_initialize(EDGES)
    for batch in batches:
        numeric_add(state, batch, nulls=2, non_finite=1, out_of_range=3)
    result = numeric_result(state)
    assert result["count"] == values.size
    assert (result["nulls"], result["non_finite"], result["out_of_range"]) == (10, 5, 15)
    assert result["min"] == values.min() and result["max"] == values.max()
    assert result["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    assert result["variance"] == pytest.approx(np.var(values, ddof=1), rel=1e-12)
    assert result["histogram"] == reference_histogram(values, EDGES)
    ordered = np.sort(values)
    error = state.quantile_sketch.normalized_rank_error(False)
    for name, rank in QUANTILE_RANKS.items():
        assert abs(inverted_cdf_rank(ordered, result["quantiles"][name]) - rank) <= error


def test_quantiles_are_exact_inverted_cdf_below_kll_capacity() -> None:
    values = np.random.default_rng(3).exponential(size=150)
    result = numeric_result(numeric_state([values[:70], values[70:]]))
    expected = np.quantile(values, list(QUANTILE_RANKS.values()), method="inverted_cdf")
    assert list(result["quantiles"].values()) == expected.tolist()


def test_empty_and_single_value_windows_report_none() -> None:
    empty = numeric_result(numeric_initialize(EDGES))
    assert empty["count"] == 0 and empty["histogram"] == [0] * 6
    assert empty["min"] is empty["max"] is empty["mean"] is empty["variance"] is None
    assert set(empty["quantiles"].values()) == {None}
    single = numeric_result(numeric_state([np.array([0.5])]))
    assert single["mean"] == 0.5 and single["variance"] is None
    assert single["histogram"] == [0, 0, 0, 0, 1, 0]  # an edge value belongs to the bin above


def test_deterministic_part_is_byte_identical_across_independent_builds() -> None:
    rng = np.random.default_rng(11)
    batches = [rng.standard_t(3, size=20_000) for _ in range(5)]
    first, second = numeric_state(batches), numeric_state(batches)
    assert deterministic_prefix(first) == deterministic_prefix(second)
    assert numeric_deterministic_result(first) == numeric_deterministic_result(second)
    assert "quantiles" not in numeric_deterministic_result(first)


@settings(max_examples=60, deadline=None)
@given(values=finite_values, cuts=st.lists(st.integers(0, 150), max_size=4))
def test_batching_and_merging_match_one_pass(values: list[float], cuts: list[int]) -> None:
    array = np.array(values, dtype=np.float64)
    pieces = np.split(array, sorted(min(cut, array.size) for cut in cuts))
    one_pass = numeric_state([array])
    batched = numeric_state(pieces)
    merged = numeric_state(pieces[:1])
    for piece in pieces[1:]:
        merged = numeric_merge(merged, numeric_state([piece]))
    scale = max(1.0, float(np.max(np.abs(array)))) if array.size else 1.0
    expected = numeric_result(one_pass)
    for candidate in (batched, merged):
        result = numeric_result(candidate)
        for key in ("count", "nulls", "min", "max", "histogram", "quantiles"):
            # quantiles too: fewer than kll_k values, so every sketch is still exact
            assert result[key] == expected[key], key
        if expected["mean"] is not None:
            assert result["mean"] == pytest.approx(expected["mean"], rel=1e-12, abs=1e-12 * scale)
        if expected["variance"] is not None:
            assert result["variance"] == pytest.approx(
                expected["variance"], rel=1e-12, abs=1e-12 * scale**2)
        assert candidate.quantile_sketch.n == array.size


def test_merge_of_large_halves_matches_numpy_on_the_union_and_leaves_inputs_alone() -> None:
    rng = np.random.default_rng(5)
    left_values, right_values = rng.normal(size=60_000), rng.lognormal(size=40_000)
    left, right = numeric_state([left_values]), numeric_state([right_values])
    before = (numeric_to_bytes(left), numeric_to_bytes(right))
    merged = numeric_merge(left, right)
    assert (numeric_to_bytes(left), numeric_to_bytes(right)) == before
    union = np.concatenate([left_values, right_values])
    result = numeric_result(merged)
    assert merged.quantile_sketch.n == union.size == result["count"]
    assert result["histogram"] == reference_histogram(union, EDGES)
    assert result["mean"] == pytest.approx(union.mean(), rel=1e-12)
    assert result["variance"] == pytest.approx(union.var(ddof=1), rel=1e-12)
    ordered, error = np.sort(union), merged.quantile_sketch.normalized_rank_error(False)
    for name, rank in QUANTILE_RANKS.items():
        assert abs(inverted_cdf_rank(ordered, result["quantiles"][name]) - rank) <= error


def test_numeric_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="bin_edges"):
        numeric_initialize([0.0, 1.0, np.inf])
    with pytest.raises(ValueError, match="bin_edges"):
        numeric_initialize([-np.inf, 1.0, 1.0, np.inf])
    with pytest.raises(ValueError, match="kll_k"):
        numeric_initialize(EDGES, kll_k=2)
    state = numeric_initialize(EDGES)
    for bad in (np.array([1.0, np.nan]), np.array([np.inf]), np.array([[1.0]])):
        with pytest.raises(ValueError, match="values"):
            numeric_add(state, bad)
    with pytest.raises(ValueError, match="nulls"):
        numeric_add(state, np.array([1.0]), nulls=-1)
    assert state.count == 0  # a rejected batch leaves no trace
    with pytest.raises(ValueError, match="bin_edges"):
        numeric_merge(state, numeric_initialize([-np.inf, 0.0, np.inf]))


@settings(max_examples=40, deadline=None)
@given(values=finite_values, nulls=st.integers(0, 10**12))
def test_numeric_bytes_round_trip(values: list[float], nulls: int) -> None:
    state = numeric_initialize(EDGES)
    numeric_add(state, np.array(values, dtype=np.float64), nulls=nulls)
    encoded = numeric_to_bytes(state)
    decoded = numeric_from_bytes(encoded)
    assert numeric_to_bytes(decoded) == encoded
    assert numeric_result(decoded) == numeric_result(state)
    dispatched = window_state_from_bytes(encoded)
    assert isinstance(dispatched, NumericWindowState)
    assert numeric_to_bytes(dispatched) == encoded


def test_numeric_bytes_round_trip_after_compaction() -> None:
    state = numeric_state([np.random.default_rng(2).normal(size=50_000)])
    encoded = numeric_to_bytes(state)
    assert numeric_to_bytes(numeric_from_bytes(encoded)) == encoded
    restored = numeric_result(numeric_from_bytes(encoded))
    assert restored == numeric_result(state)


# -------------------------------------------------------------------------------- categorical

category_values = st.lists(
    st.one_of(st.none(), st.sampled_from((*CATEGORIES, "", "é", "purple", "null"))), max_size=200)


def test_categorical_result_matches_numpy_unique() -> None:
    rng = np.random.default_rng(9)
    pool = np.array([*list(CATEGORIES), "teal", "ochre", None], dtype=object)
    batches = [pool[rng.integers(0, pool.size, size=size)] for size in (10_000, 1, 0, 3_000)]
    result = categorical_result(categorical_state(batches), max_top_items=4)
    values = np.concatenate(batches)
    present = values[values != None]  # noqa: E711 - numpy's element-wise comparison
    names, counts = np.unique(present.astype(str), return_counts=True)
    expected = dict(zip(names.tolist(), counts.tolist()))
    assert result["count"] == present.size and result["nulls"] == values.size - present.size
    assert result["category_counts"] == {name: expected.get(name, 0) for name in CATEGORIES}
    assert result["unseen"] == expected["teal"] + expected["ochre"]
    ranked = sorted(expected.items(), key=lambda item: (-item[1], item[0]))
    assert result["top_items"] == ranked[:4] and result["top_items_max_error"] == 0


def test_flooding_value_is_named_beyond_sketch_capacity() -> None:
    rng = np.random.default_rng(4)
    identifiers = np.array([f"id-{i}" for i in rng.integers(0, 10**6, size=20_000)], dtype=object)
    flood = np.full(6_000, "00000-flood", dtype=object)
    values = rng.permutation(np.concatenate([identifiers, flood]))
    result = categorical_result(categorical_state(np.array_split(values, 7)))
    assert result["unseen"] == values.size and result["top_items_max_error"] > 0
    top_value, estimate = result["top_items"][0]
    assert top_value == "00000-flood"
    assert 6_000 <= estimate <= 6_000 + result["top_items_max_error"]


@settings(max_examples=60, deadline=None)
@given(values=category_values, cut=st.integers(0, 200))
def test_categorical_merge_matches_one_pass(values: list[str | None], cut: int) -> None:
    array = np.array(values, dtype=object)
    left, right = categorical_state([array[:cut]]), categorical_state([array[cut:]])
    before = (categorical_to_bytes(left), categorical_to_bytes(right))
    merged = categorical_merge(left, right)
    assert (categorical_to_bytes(left), categorical_to_bytes(right)) == before
    # Below the sketch's capacity (48 distinct values) everything is exact, bytes included.
    assert categorical_result(merged) == categorical_result(categorical_state([array]))
    assert categorical_to_bytes(merged) == categorical_to_bytes(categorical_state([array]))


def zipf_batches(seed: int, n_batches: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.array([f"v{i}" for i in rng.zipf(1.3, size=size)], dtype=object)
            for _ in range(n_batches)]


@pytest.mark.parametrize("lg_max_k", [4, 10])
def test_restored_state_continues_exactly_like_the_uninterrupted_one(lg_max_k: int) -> None:
    # Beyond capacity the sketch purges; a state restored from bytes mid-stream (with a different
    # hash-slot layout) must still end byte-identical to one that never stopped.
    batches = zipf_batches(12, 6, 2_000 if lg_max_k == 4 else 8_000)
    uninterrupted = categorical_state(batches, lg_max_k=lg_max_k)
    restored = categorical_state(batches[:3], lg_max_k=lg_max_k)
    for _ in range(2):
        restored = categorical_from_bytes(categorical_to_bytes(restored))
    for batch in batches[3:]:
        categorical_add(restored, batch)
    assert categorical_result(uninterrupted)["top_items_max_error"] > 0
    assert categorical_to_bytes(restored) == categorical_to_bytes(uninterrupted)


def test_categorical_state_depends_on_batch_contents_not_order() -> None:
    batches = zipf_batches(13, 3, 3_000)
    shuffled = [np.random.default_rng(0).permutation(batch) for batch in batches]
    state = categorical_state(batches, lg_max_k=3)
    assert categorical_result(state)["top_items_max_error"] > 0
    shuffled_state = categorical_state(shuffled, lg_max_k=3)
    assert categorical_to_bytes(shuffled_state) == categorical_to_bytes(state)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.text(max_size=5)), max_size=120),
       lg_max_k=st.integers(3, 7))
def test_categorical_bytes_round_trip(values: list[str | None], lg_max_k: int) -> None:
    state = categorical_state([np.array(values, dtype=object)], lg_max_k=lg_max_k)
    encoded = categorical_to_bytes(state)
    decoded = categorical_from_bytes(encoded)
    assert categorical_to_bytes(decoded) == encoded
    assert categorical_result(decoded) == categorical_result(state)
    assert isinstance(window_state_from_bytes(encoded), CategoricalWindowState)


def test_categorical_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="categories"):
        categorical_initialize(["a", "a"])
    with pytest.raises(ValueError, match="lg_max_k"):
        categorical_initialize(["a"], lg_max_k=2)
    state = categorical_initialize(["a"])
    with pytest.raises(ValueError, match="values"):
        categorical_add(state, np.array(["a", None, 3], dtype=object))
    with pytest.raises(ValueError, match="values"):
        categorical_add(state, np.array([["a"]], dtype=object))
    assert (state.count, state.nulls, state.frequent_items.is_empty()) == (0, 0, True)
    with pytest.raises(ValueError, match="categories"):
        categorical_merge(state, categorical_initialize(["b"]))


# ------------------------------------------------------------------------------ corrupt bytes


def valid_encodings() -> list[bytes]:
    numeric = numeric_state([np.random.default_rng(1).normal(size=500)])
    categorical = categorical_state([np.array(["red", "x", None, "y"] * 20, dtype=object)])
    return [numeric_to_bytes(numeric), categorical_to_bytes(categorical)]


VALID = valid_encodings()


def decodes_canonically_or_raises(data: bytes) -> None:
    try:
        state = window_state_from_bytes(data)
    except ValueError:
        return
    if isinstance(state, NumericWindowState):
        assert numeric_to_bytes(state) == data
    else:
        assert categorical_to_bytes(state) == data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    decodes_canonically_or_raises(data)
    decodes_canonically_or_raises(VALID[0][:5] + data)
    decodes_canonically_or_raises(VALID[1][:5] + data)


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 1), position=st.integers(0, 10**6), byte=st.integers(0, 255),
       cut=st.integers(0, 10**6))
def test_corrupted_or_truncated_encodings_are_rejected_or_canonical(
    which: int, position: int, byte: int, cut: int
) -> None:
    data = bytearray(VALID[which])
    data[position % len(data)] = byte
    decodes_canonically_or_raises(bytes(data))
    truncated = VALID[which][: cut % len(VALID[which])]
    with pytest.raises(ValueError):
        window_state_from_bytes(truncated)


def test_inconsistent_counts_are_rejected() -> None:
    state = numeric_state([np.ones(5)])
    state.count += 1
    with pytest.raises(ValueError, match="histogram"):
        numeric_from_bytes(numeric_to_bytes(state))
    categorical = categorical_state([np.array(["red", "x"], dtype=object)])
    categorical.unseen += 1
    with pytest.raises(ValueError, match="count"):
        categorical_from_bytes(categorical_to_bytes(categorical))
    five, six = numeric_state([np.arange(5.0)]), numeric_state([np.arange(6.0)])
    spliced = deterministic_prefix(five) + six.quantile_sketch.serialize()
    with pytest.raises(ValueError, match="KLL"):
        numeric_from_bytes(spliced)


def test_a_sketch_whose_items_were_all_purged_round_trips() -> None:
    # More distinct values than the map holds: DataSketches purges them all and serialises the
    # sketch as empty, losing its total weight; the canonical encoding keeps it (found by hypothesis).
    state = categorical_state([np.array(["", "0", "1", "2", "3", "00", "000"], dtype=object)], lg_max_k=3)
    assert state.frequent_items.num_active_items == 0 and state.frequent_items.total_weight == 7
    encoded = categorical_to_bytes(state)
    decoded = categorical_from_bytes(encoded)
    assert categorical_to_bytes(decoded) == encoded
    assert categorical_result(decoded) == categorical_result(state)
