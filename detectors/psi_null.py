"""The null distributions of PSI the window threshold is read from: a weighted chi-square, and the exact one of a small window.

Kept apart from :mod:`.psi`, which uses them: pure numerical functions with their own tests
(``tests/unit/detectors/test_psi.py``), numpy and scipy only.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq
from scipy.special import gammaln
from scipy.stats import chi2, norm

__all__ = ["multinomial_psi_isf", "weighted_chi_square_isf"]

#: Cells of the grid on which the exact null of ``n · PSI`` is computed (see ``_multinomial_null``):
#: each bin's term is shared between its two nearest cells (its mean kept exact), which spreads the
#: sum by at most ``sqrt(k) / 2`` cells — 0.5 % of the 1e-3 quantile for twenty bins.
_NULL_CELLS = 1024

#: Frequencies of the total count added per step of ``_multinomial_null`` (see there).
_FREQUENCY_BLOCK = 24

#: The smallest tail ``multinomial_psi_isf`` computes exactly (see there).
_SMALLEST_EXACT_TAIL = 1e-12


def weighted_chi_square_isf(probability: float, weights: npt.ArrayLike) -> float:
    """Upper ``probability`` quantile of ``sum_j weights_j · chi2(1)`` (saddlepoint approximation).

    Lugannani–Rice approximation of the tail; relative error of a few per cent in the
    probability at 1e-3 - 1e-6, far below the uncertainty of the weights themselves.

    Examples
    --------
    >>> from scipy.stats import chi2
    >>> print(round(weighted_chi_square_isf(1e-3, [1.0] * 9) / chi2.isf(1e-3, 9), 3))
    1.0
    """
    lam = np.asarray(weights, dtype=np.float64)
    lam = lam[lam > 1e-12 * lam.max()]
    mean = float(lam.sum())
    ceiling = 0.5 / float(lam.max())  # the cumulant generating function exists for s below this

    def tail(x: float) -> float:
        # Solve K'(s) = x for the saddlepoint s in (0, ceiling).
        s = brentq(lambda t: float(np.sum(lam / (1.0 - 2.0 * t * lam))) - x, 0.0, ceiling * (1.0 - 1e-12))
        cumulant = -0.5 * float(np.sum(np.log1p(-2.0 * s * lam)))
        curvature = float(np.sum(2.0 * lam * lam / (1.0 - 2.0 * s * lam) ** 2))
        w = math.sqrt(max(2.0 * (s * x - cumulant), 0.0))
        u = s * math.sqrt(curvature)
        if w < 1e-8:
            return 0.5
        return float(norm.sf(w) + norm.pdf(w) * (1.0 / u - 1.0 / w))

    upper = mean * 2.0
    while tail(upper) > probability:
        upper *= 2.0
    return float(brentq(lambda x: tail(x) - probability, mean * 1.0001, upper, xtol=1e-9 * mean))


def multinomial_psi_isf(probability: float, proportions: npt.ArrayLike, window_count: int, epsilon: float = 1e-4) -> float:
    """Upper ``probability`` quantile of ``n · PSI`` for ``n`` independent values drawn from ``proportions``.

    Exact but for a grid of ``_NULL_CELLS`` cells: PSI is computed bin by bin as the statistic
    computes it (proportions floored at ``epsilon``), so empty bins and small counts weigh what
    they weigh in the statistic.  Each bin's count is taken as Poisson with mean
    ``n · proportion``; the multinomial is those Poisson counts given that they sum to ``n``,
    which a Fourier inversion over the total count picks out (``_multinomial_null``).  Cost:
    5-100 ms, independent of ``n`` but for the Poisson ranges.

    Examples
    --------
    >>> from scipy.stats import chi2
    >>> print(round(multinomial_psi_isf(1e-3, [0.25] * 4, 100_000) / chi2.isf(1e-3, 3), 2))  # large windows: chi-square
    1.0
    >>> print(round(multinomial_psi_isf(1e-3, [0.25] * 4, 8) / chi2.isf(1e-3, 3), 2))  # eight values in four bins
    2.35
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability!r}")
    if window_count < 1:
        raise ValueError(f"window_count must be positive, got {window_count!r}")
    shares = np.asarray(proportions, dtype=np.float64)
    occupied = np.flatnonzero(shares > 0.0)
    if occupied.size < 2:
        return math.inf
    reference = np.maximum(shares, epsilon)  # as the statistic floors them
    truth = shares / shares[occupied].sum()
    # The FFTs' rounding (about 1e-16 of the largest cell) hides tails much below 1e-12: deeper
    # quantiles are extrapolated from there with the chi-square's shape.
    level = max(probability, _SMALLEST_EXACT_TAIL)
    degrees = occupied.size - 1
    top = 2.0 * float(chi2.isf(level, degrees)) + 10.0
    for _ in range(10):
        pmf, offset = _multinomial_null(truth[occupied], reference[occupied], int(window_count), epsilon, top / (_NULL_CELLS - 1), level)
        tail = np.cumsum(pmf[::-1])[::-1]  # tail[c] = P(n · PSI in cell c or above)
        if tail[-1] <= level / 4.0:  # the quantile lies well inside the grid
            break
        top *= 2.0
    # The smallest cell whose successors hold at most `level`.
    cell = int(np.argmax(tail[1:] <= level))
    quantile = offset + (cell + 0.5) * top / (_NULL_CELLS - 1)
    return quantile * float(chi2.isf(probability, degrees) / chi2.isf(level, degrees))


def _multinomial_null(
    truth: np.ndarray, reference: np.ndarray, window_count: int, epsilon: float, cell: float, probability: float
) -> tuple[np.ndarray, float]:
    """Probabilities of ``n · PSI - offset`` on the cells ``0, cell, 2·cell, ...`` (the last one: that or more), and ``offset``.

    With independent Poisson counts ``Y_j`` (means ``n · truth_j``), ``P(S, T = n)`` for ``S`` the
    statistic and ``T`` the total is ``1/L · sum_l E[1{S} · exp(i · w_l · (T - n))]`` over
    ``w_l = 2·pi·l / L`` with ``L`` past the range of ``T - n`` (sixteen standard deviations); each
    term is a product over bins, i.e. a convolution over the cells of the bins' complex-weighted
    terms.  When many bins contribute, ``S`` leaves ``T`` spread and the terms fade within a few
    dozen frequencies; a few bins with small counts leave ``P(S, T)`` lumpy in ``T``, which shows as
    negative probabilities, so frequencies are added until those are negligible (at most all of them,
    which is exact).
    """
    n = window_count
    period = 2 * max(_FREQUENCY_BLOCK, int(8.0 * math.sqrt(n)) + 1) + 1  # odd: no Nyquist term
    kernels = []
    offset = 0.0
    for share, floored in zip(truth.tolist(), reference.tolist()):
        mean = n * share
        spread = 10.0 * math.sqrt(mean) + 6.0
        counts = np.arange(max(0, int(mean - spread)), min(n, int(mean + spread) + 1) + 1)
        log_weight = counts * math.log(mean) - mean - gammaln(counts + 1.0)
        keep = log_weight > -80.0
        counts = counts[keep]
        actual = np.maximum(counts / n, epsilon)
        terms = n * (actual - floored) * np.log(actual / floored)
        # The bin's smallest term is carried exactly (a hundred rare categories each adding 0.18 to
        # every window must not round to nothing); the rest is shared between the two nearest cells
        # in proportion to its distance from each, so rounding leaves every bin's mean term exact.
        offset += float(terms.min())
        position = (terms - terms.min()) / cell
        lower = np.floor(position)
        upper_share = position - lower
        cells = np.minimum(np.concatenate((lower, lower + 1.0)), _NULL_CELLS - 1).astype(np.int64)
        weight = np.exp(log_weight[keep])
        used, index = np.unique(cells, return_inverse=True)
        kernels.append((used, index, np.concatenate((weight * (1.0 - upper_share), weight * upper_share)), np.tile(counts - mean, 2)))
    joint = np.zeros(_NULL_CELLS)
    for first in range(0, period // 2 + 1, _FREQUENCY_BLOCK):
        harmonics = np.arange(first, min(first + _FREQUENCY_BLOCK, period // 2 + 1))
        omega = 2.0 * math.pi * harmonics / period
        state = np.zeros((harmonics.size, _NULL_CELLS), dtype=np.complex128)
        state[:, 0] = 1.0
        reach = 0  # the highest cell holding mass
        for cells, index, weight, deviation in kernels:
            phased = weight * np.exp(1j * np.outer(omega, deviation))
            rows = (np.arange(harmonics.size)[:, None] * cells.size + index).ravel()
            kernel = np.bincount(rows, phased.real.ravel(), harmonics.size * cells.size) + 1j * np.bincount(
                rows, phased.imag.ravel(), harmonics.size * cells.size
            )
            state, reach = _convolve_cells(state, reach, cells, kernel.reshape(harmonics.size, cells.size))
        joint += (np.where(harmonics == 0, 1.0, 2.0)[:, None] * state.real).sum(axis=0) / period
        if -joint[joint < 0.0].sum() <= (1e-3 * probability + 1e-14) * joint.sum():
            break
    joint = np.maximum(joint, 0.0)
    return joint / joint.sum(), offset


def _convolve_cells(state: np.ndarray, reach: int, cells: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, int]:
    """Each row of ``state`` (mass up to cell ``reach``) convolved with the kernel on ``cells``; mass past the last cell stays there."""
    size = state.shape[1]
    source = state[:, : reach + 1]
    out = np.zeros_like(state)
    length = 1 << int(reach + int(cells[-1]) + 1).bit_length()
    if cells.size * (reach + 101) <= 1.5 * length * math.log2(length):  # a few shifts are cheaper than three FFTs (timed)
        suffix = np.cumsum(source[:, ::-1], axis=1)[:, ::-1]  # suffix[:, i]: mass from cell i on
        for column, shift in enumerate(cells.tolist()):
            weight = kernel[:, column : column + 1]
            kept = max(0, min(reach + 1, size - 1 - shift))  # cells that land below the last one
            out[:, shift : shift + kept] += weight * source[:, :kept]
            if kept <= reach:
                out[:, -1] += weight[:, 0] * suffix[:, kept]
    else:
        full = np.zeros((state.shape[0], int(cells[-1]) + 1), dtype=state.dtype)
        full[:, cells] = kernel
        product = np.fft.ifft(np.fft.fft(source, length, axis=1) * np.fft.fft(full, length, axis=1), axis=1)
        kept = min(size - 1, reach + int(cells[-1]) + 1)
        out[:, :kept] = product[:, :kept]
        out[:, -1] += product[:, kept:].sum(axis=1)
    return out, min(size - 1, reach + int(cells[-1]))
