"""Distances between a window's distribution and the reference profile (or another window).

Histogram-based functions take the exact bin counts kept by the window sketches over the
reference profile's bin edges (see :func:`quantile_bin_edges`); the ``*_from_kll`` functions take
two DataSketches KLL sketches. All are pure functions.

Conventions: an empty distribution (total count 0, or an empty sketch) makes a distance
undefined, so it is returned as NaN rather than raised, because an empty window is ordinary data.
Arrays of mismatched shape are a programming error and raise ``ValueError`` naming the parameter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .psi import psi_of_proportions

__all__ = [
    "bin_points",
    "histogram_distances",
    "jensen_shannon_from_counts",
    "ks_from_histograms",
    "ks_from_kll",
    "psi_from_counts",
    "quantile_bin_edges",
    "wasserstein_from_histograms",
    "wasserstein_from_kll",
]

FloatArray = npt.NDArray[np.float64]


def _checked_counts(
    name: str, counts: npt.ArrayLike, expected_size: int | None = None
) -> FloatArray:
    array = np.asarray(counts, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if expected_size is not None and array.size != expected_size:
        raise ValueError(f"{name} has {array.size} bins, expected {expected_size}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must hold finite, non-negative counts")
    return array


def _proportions(
    reference_counts: npt.ArrayLike, window_counts: npt.ArrayLike
) -> tuple[FloatArray, FloatArray] | None:
    reference = _checked_counts("reference_counts", reference_counts)
    window = _checked_counts("window_counts", window_counts, reference.size)
    reference_total, window_total = reference.sum(), window.sum()
    if reference_total == 0 or window_total == 0:
        return None
    return reference / reference_total, window / window_total


def psi_from_counts(
    reference_counts: npt.ArrayLike, window_counts: npt.ArrayLike, epsilon: float = 1e-4
) -> float:
    """Population stability index between two binned distributions.

    ``PSI = sum((w - r) * ln(w / r))`` over bins, with proportions ``r`` and ``w`` floored at
    ``epsilon`` (without renormalising) so that empty bins give a large but finite term.

    Parameters
    ----------
    reference_counts, window_counts : array_like of float, 1-D, same size
        Counts per bin (non-negative).
    epsilon : float, default 1e-4
        Floor for proportions; must be positive.

    Returns
    -------
    float
        PSI (>= 0); NaN if either distribution is empty. Rules of thumb: < 0.1 stable,
        0.1-0.25 moderate shift, > 0.25 major shift.

    Examples
    --------
    >>> round(psi_from_counts([50, 30, 20], [40, 30, 30]), 4)
    0.0629
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    proportions = _proportions(reference_counts, window_counts)
    if proportions is None:
        return math.nan
    return _psi(*proportions, epsilon)


def _psi(reference: FloatArray, window: FloatArray, epsilon: float) -> float:
    return psi_of_proportions(reference, window, epsilon)  # the one PSI (detectors/psi.py)


def jensen_shannon_from_counts(
    reference_counts: npt.ArrayLike, window_counts: npt.ArrayLike
) -> float:
    """Jensen-Shannon distance (base 2) between two binned distributions.

    The square root of the Jensen-Shannon divergence measured in bits: 0 for identical
    distributions, 1 for distributions with disjoint support. Empty bins need no smoothing.

    Parameters
    ----------
    reference_counts, window_counts : array_like of float, 1-D, same size
        Counts per bin (non-negative).

    Returns
    -------
    float
        Distance in [0, 1]; NaN if either distribution is empty.

    Examples
    --------
    >>> jensen_shannon_from_counts([1, 0], [0, 1]), jensen_shannon_from_counts([3, 1], [6, 2])
    (1.0, 0.0)
    """
    proportions = _proportions(reference_counts, window_counts)
    if proportions is None:
        return math.nan
    return _jensen_shannon(*proportions)


def _jensen_shannon(reference: FloatArray, window: FloatArray) -> float:
    middle = (reference + window) / 2

    def divergence_from_middle(p: FloatArray) -> float:
        support = p > 0  # 0 * log(0) = 0
        return float(np.sum(p[support] * np.log2(p[support] / middle[support])))

    divergence = (divergence_from_middle(reference) + divergence_from_middle(window)) / 2
    # Rounding can push an exact 0 slightly negative, or an exact 1 slightly above.
    return math.sqrt(min(max(divergence, 0.0), 1.0))


def ks_from_histograms(reference_counts: npt.ArrayLike, window_counts: npt.ArrayLike) -> float:
    """Kolmogorov-Smirnov statistic between two distributions binned on the same edges.

    ``max |F_ref - F_win|`` evaluated at the shared bin edges only. Because the sup over every
    real number is taken over more points, this is a lower bound of the exact two-sample KS
    statistic of the raw values; inside bin ``i`` the two CDFs can separate by at most
    ``max(r_i, w_i)`` more, so ``exact <= result + max_i max(r_i, w_i)`` (proportions ``r``, ``w``).
    The resolution is therefore that of the bins: about ``1 / n_bins`` for reference-quantile bins.

    Parameters
    ----------
    reference_counts, window_counts : array_like of float, 1-D, same size
        Counts per bin (non-negative).

    Returns
    -------
    float
        Statistic in [0, 1]; NaN if either distribution is empty.
    """
    proportions = _proportions(reference_counts, window_counts)
    if proportions is None:
        return math.nan
    return _ks(*proportions)


def _ks(reference: FloatArray, window: FloatArray) -> float:
    return float(np.max(np.abs(np.cumsum(reference) - np.cumsum(window)), initial=0.0))


def _sketch_cdfs(sketch_a: Any, sketch_b: Any) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    # A KLL sketch's CDF is a step function that jumps only at its retained items, so both are
    # known exactly everywhere from their values at the union of retained items.
    if sketch_a.is_empty() or sketch_b.is_empty():
        return None
    points = np.unique(np.fromiter(
        (item for sketch in (sketch_a, sketch_b) for item, _ in sketch), dtype=np.float64))
    cdf_a = np.asarray(sketch_a.get_cdf(points, True), dtype=np.float64)[:-1]
    cdf_b = np.asarray(sketch_b.get_cdf(points, True), dtype=np.float64)[:-1]
    return points, cdf_a, cdf_b


def ks_from_kll(sketch_a: Any, sketch_b: Any) -> float:
    """Kolmogorov-Smirnov statistic between the distributions summarised by two KLL sketches.

    Evaluates both sketches' CDFs (``P(X <= x)``) at the union of their retained items, where
    every jump of either step function happens, so the result is the exact KS statistic of the
    two sketched distributions. Against the raw values it is off by at most the sum of the two
    sketches' normalised rank errors (``sketch.normalized_rank_error(False)``, 99 % confidence).

    Parameters
    ----------
    sketch_a, sketch_b : datasketches.kll_doubles_sketch

    Returns
    -------
    float
        Statistic in [0, 1]; NaN if either sketch is empty.
    """
    cdfs = _sketch_cdfs(sketch_a, sketch_b)
    if cdfs is None:
        return math.nan
    _, cdf_a, cdf_b = cdfs
    return float(np.max(np.abs(cdf_a - cdf_b)))


def wasserstein_from_kll(sketch_a: Any, sketch_b: Any) -> float:
    """1-Wasserstein distance between the distributions summarised by two KLL sketches.

    ``W1 = integral |F_a(x) - F_b(x)| dx``, computed exactly for the two sketched step CDFs over
    the union of their retained items (equivalently, the integral of ``|Q_a(u) - Q_b(u)|`` over
    quantile levels ``u``; no quadrature grid is involved). Against the raw values the error is
    at most ``(eps_a + eps_b) * (max - min)`` over the pooled range, with ``eps`` the sketches'
    normalised rank errors, and usually far smaller.

    Parameters
    ----------
    sketch_a, sketch_b : datasketches.kll_doubles_sketch

    Returns
    -------
    float
        Distance in the features' units (>= 0); NaN if either sketch is empty.
    """
    cdfs = _sketch_cdfs(sketch_a, sketch_b)
    if cdfs is None:
        return math.nan
    points, cdf_a, cdf_b = cdfs
    return float(np.sum(np.abs(cdf_a - cdf_b)[:-1] * np.diff(points)))


def wasserstein_from_histograms(
    bin_edges: npt.ArrayLike,
    reference_counts: npt.ArrayLike,
    window_counts: npt.ArrayLike,
    reference_quantiles: tuple[float, float] | None = None,
) -> float:
    """1-Wasserstein distance between two distributions binned on the same edges.

    Each bin's mass is placed at one representative point: the midpoint of a finite bin; for an
    unbounded outer bin, ``reference_quantiles[0]`` (lower) or ``reference_quantiles[1]``
    (upper), for example the reference's 0.5 % and 99.5 % quantiles or its minimum and maximum.
    Without them an outer bin is given the width of its neighbour, i.e. its point lies half that
    width beyond the outermost inner edge. The result is the exact W1 between these two discrete
    distributions; for values inside the finite edges it is within the widest bin of the exact
    W1 of the raw values, while the outer bins contribute an error that depends on the tails.

    Parameters
    ----------
    bin_edges : array_like of float, 1-D
        Strictly increasing edges, one more than the counts; the outer ones may be infinite.
    reference_counts, window_counts : array_like of float, 1-D
        Counts per bin (non-negative).
    reference_quantiles : (float, float), optional
        Finite points standing for the lower and upper unbounded bins, at or beyond the
        outermost inner edges.

    Returns
    -------
    float
        Distance in the feature's units (>= 0); NaN if either distribution is empty.

    Examples
    --------
    >>> wasserstein_from_histograms([-np.inf, 0.0, 1.0, 2.0, np.inf], [0, 1, 0, 0], [0, 0, 1, 0])
    1.0
    """
    proportions = _proportions(reference_counts, window_counts)
    points = bin_points(bin_edges, proportions[0].size if proportions else np.size(reference_counts), reference_quantiles)
    if proportions is None:
        return math.nan
    return _wasserstein(points, *proportions)


def bin_points(
    bin_edges: npt.ArrayLike, n_bins: int, reference_quantiles: tuple[float, float] | None = None
) -> FloatArray:
    """Representative point of each bin, as :func:`wasserstein_from_histograms` places its mass.

    Compute it once per reference profile and pass it to :func:`histogram_distances`.
    """
    edges = np.asarray(bin_edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size != n_bins + 1:
        raise ValueError(f"bin_edges must be 1-D with one edge more than the counts: {edges.shape}")
    if not (np.all(edges[1:] > edges[:-1]) and np.all(np.isfinite(edges[1:-1]))):
        raise ValueError("bin_edges must be strictly increasing with finite inner edges")
    if n_bins == 1:  # all mass of both in one bin: any point gives distance 0
        return np.zeros(1)
    points = np.concatenate(([0.0], (edges[1:-2] + edges[2:-1]) / 2, [0.0]))
    points[0], points[-1] = _outer_points(edges, reference_quantiles)
    return points


def _wasserstein(points: FloatArray, reference: FloatArray, window: FloatArray) -> float:
    if points.size == 1:
        return 0.0
    reference_cdf, window_cdf = np.cumsum(reference)[:-1], np.cumsum(window)[:-1]
    return float(np.sum(np.abs(reference_cdf - window_cdf) * np.diff(points)))


def histogram_distances(
    reference_counts: npt.ArrayLike,
    window_counts: npt.ArrayLike,
    points: npt.ArrayLike | None = None,
    epsilon: float = 1e-4,
) -> dict[str, float]:
    """PSI, Jensen-Shannon, KS and (given bin ``points``) Wasserstein in one pass.

    The same values as :func:`psi_from_counts`, :func:`jensen_shannon_from_counts`,
    :func:`ks_from_histograms` and :func:`wasserstein_from_histograms`, validating the counts
    and computing the proportions once — the engine scores every field of every closed window.

    Returns
    -------
    dict
        ``psi``, ``jensen_shannon``, ``ks`` and, if ``points`` is given, ``wasserstein``; all NaN
        if either distribution is empty.

    Examples
    --------
    >>> d = histogram_distances([50, 30, 20], [40, 30, 30], points=[0.0, 1.0, 2.0])
    >>> round(d["psi"], 4), round(d["ks"], 2), round(d["wasserstein"], 2)
    (0.0629, 0.1, 0.2)
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    proportions = _proportions(reference_counts, window_counts)
    names = ("psi", "jensen_shannon", "ks") + (("wasserstein",) if points is not None else ())
    if proportions is None:
        return dict.fromkeys(names, math.nan)
    reference, window = proportions
    result = {
        "psi": _psi(reference, window, epsilon),
        "jensen_shannon": _jensen_shannon(reference, window),
        "ks": _ks(reference, window),
    }
    if points is not None:
        point_array = np.asarray(points, dtype=np.float64)
        if point_array.shape != reference.shape:
            raise ValueError(f"points must hold one point per bin, got shape {point_array.shape}")
        result["wasserstein"] = _wasserstein(point_array, reference, window)
    return result


def _outer_points(
    edges: FloatArray, reference_quantiles: tuple[float, float] | None
) -> tuple[float, float]:
    """Representative points of the first and last of at least two bins."""
    lower, upper = (edges[0] + edges[1]) / 2, (edges[-2] + edges[-1]) / 2
    lower_unbounded, upper_unbounded = edges[0] == -np.inf, edges[-1] == np.inf
    if reference_quantiles is not None:
        given_lower, given_upper = (float(q) for q in reference_quantiles)
        if not (math.isfinite(given_lower) and math.isfinite(given_upper)):
            raise ValueError("reference_quantiles must be finite")
        if (lower_unbounded and given_lower > edges[1]) or (
                upper_unbounded and given_upper < edges[-2]):
            raise ValueError("reference_quantiles must lie at or beyond the outermost inner edges")
        lower = given_lower if lower_unbounded else lower
        return lower, (given_upper if upper_unbounded else upper)
    if edges.size == 3 and lower_unbounded and upper_unbounded:
        raise ValueError("reference_quantiles is required when bin_edges has a single finite edge")
    if lower_unbounded:
        lower = edges[1] - (edges[2] - edges[1]) / 2
    if upper_unbounded:
        upper = edges[-2] + (edges[-2] - edges[-3]) / 2
    return float(lower), float(upper)


def quantile_bin_edges(values: npt.ArrayLike, n_bins: int) -> FloatArray:
    """Histogram edges at the reference's quantiles, with unbounded outer bins; discrete values kept apart.

    Inner edges are the reference values at quantile levels ``k / n_bins`` (numpy's
    ``method="inverted_cdf"``, so edges are actual data values), deduplicated, and keeping only
    those above the minimum. Every reference bin is therefore non-empty. Outer edges are ``-inf`` and
    ``+inf``, so every finite value falls in a bin (bin ``i`` holds ``edges[i] <= v < edges[i + 1]``).

    Values that repeat are binned by value, not by quantile alone, because quantiles merge what
    matters: a binary field with 3 % ones has every quantile at 0, so quantile edges alone gave it one
    bin — a histogram that cannot change however many ones arrive — and so did an amount that is zero
    in 97 % of events and spread out otherwise. So every *atom* — a value holding at least
    ``1 / n_bins`` of the reference — gets a bin of its own (edges at the value and at the next
    distinct value above it), and the rest of the values are cut at their own quantiles into as many
    bins as their share of the reference is worth (``n_bins`` × share, at least one). Continuous data
    has no atoms and gets the plain quantile edges; at most ``2 · n_bins`` bins in all.

    Parameters
    ----------
    values : array_like of float, 1-D
        Finite reference values.
    n_bins : int
        Wanted number of bins (>= 1) for continuous data.

    Returns
    -------
    ndarray of float64
        ``[-inf, e_1, ..., e_m, +inf]`` with strictly increasing finite edges ``e_i``.

    Examples
    --------
    >>> quantile_bin_edges([1.0, 2.0, 2.0, 2.0, 3.0, 4.0], 3).tolist()  # the atom 2.0 gets its own bin
    [-inf, 2.0, 3.0, inf]
    >>> quantile_bin_edges([0.0] * 97 + [1.0] * 3, 10).tolist()  # the rare value too
    [-inf, 1.0, inf]
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError("values must be a non-empty 1-D array of finite numbers")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    distinct, counts = np.unique(array, return_counts=True)
    atoms = np.flatnonzero(counts * n_bins >= array.size)
    # An atom's own bin: an edge at the value and one at the next distinct value above it.
    isolating = np.concatenate((distinct[atoms], distinct[np.minimum(atoms + 1, distinct.size - 1)]))
    rest = array[~np.isin(array, distinct[atoms])] if atoms.size else array
    rest_bins = max(1, round(n_bins * rest.size / array.size))
    cuts = np.quantile(rest, np.arange(1, rest_bins) / rest_bins, method="inverted_cdf") if rest.size else np.empty(0)
    inner = np.unique(np.concatenate((isolating, cuts)))
    inner = inner[inner > array.min()]
    return np.concatenate(([-np.inf], inner, [np.inf]))
