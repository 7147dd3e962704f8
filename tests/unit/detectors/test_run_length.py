"""The run-length model of a one-sided CUSUM, against exact run lengths computed independently.

Gaussian increments: Brook & Evans' Markov chain (the interval [0, h] cut into 500 cells). Two-point
increments (+9 or -1, a lattice walk like a count field's): an exact chain on the integers, where
Siegmund's diffusion approximation is wrong by a factor of 3 at run lengths near a million.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy.stats import norm

import driftline.detectors.run_length as run_length_module
from driftline.detectors.page_hinkley import cusum_average_run_length
from driftline.detectors.run_length import (
    RunLengthModel,
    adjustment_coefficient,
    fit_run_length_model,
    lindley_path,
    simulated_average_run_lengths,
)


def _gaussian_run_length(threshold: float, allowance: float, cells: int = 500) -> float:
    """Brook & Evans (1972): ARL of ``S = max(0, S + X - allowance)``, X ~ N(0, 1), to ``S > threshold``."""
    width = 2.0 * threshold / (2 * cells - 1)
    centres = np.arange(cells) * width  # state 0 is the atom at 0; state j covers centre_j ± width / 2
    upper = centres + width / 2.0
    lower = np.r_[-np.inf, upper[:-1]]
    drift = centres[:, None] - allowance
    transitions = norm.cdf(upper[None, :] - drift) - norm.cdf(lower[None, :] - drift)
    return float(np.linalg.solve(np.eye(cells) - transitions, np.ones(cells))[0])


def _lattice_run_length(threshold: int, up: int, probability_up: float) -> float:
    """Exact ARL of ``S = max(0, S + step)``, step = +up or -1, to ``S > threshold`` (states 0..threshold)."""
    states = threshold + 1
    transitions = np.zeros((states, states))
    for state in range(states):
        transitions[state, max(state - 1, 0)] += 1.0 - probability_up
        if state + up <= threshold:
            transitions[state, state + up] += probability_up
    return float(np.linalg.solve(np.eye(states) - transitions, np.ones(states))[0])


def test_the_markov_chain_reference_reproduces_the_classical_table() -> None:
    # k = 0.5: h = 4 -> 336, h = 5 -> 930 (Brook & Evans; Siegmund 1985, table).
    assert _gaussian_run_length(4.0, 0.5) == pytest.approx(336, rel=0.01)
    assert _gaussian_run_length(5.0, 0.5) == pytest.approx(930, rel=0.01)


def test_adjustment_coefficient_of_gaussian_and_two_point_increments() -> None:
    increments = np.random.default_rng(1).normal(-0.25, 1.0, size=400_000)
    mean, variance = increments.mean(), increments.var()
    assert adjustment_coefficient(increments) == pytest.approx(2.0 * -mean / variance, rel=0.02)
    # +9 with probability 2/25, else -1: 0.08 e^(9t) + 0.92 e^(-t) = 1 (solved here by bisection).
    two_point = np.array([9.0] * 2 + [-1.0] * 23)
    low, high = 1e-6, 1.0
    for _ in range(100):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if 0.08 * math.exp(9 * middle) + 0.92 * math.exp(-middle) < 1.0 else (low, middle)
    assert adjustment_coefficient(two_point) == pytest.approx(low, rel=1e-9)
    assert adjustment_coefficient([-1.0, -0.5, 0.0]) is None  # never rises
    with pytest.raises(ValueError, match="negative mean"):
        adjustment_coefficient([-1.0, 2.0])


@pytest.mark.parametrize("threshold", [4.0, 5.0])
def test_simulated_run_lengths_match_the_markov_chain(threshold: float) -> None:
    path = lindley_path(np.random.default_rng(2).normal(-0.5, 1.0, size=4_000_000))
    (estimate,), (exceedances,) = simulated_average_run_lengths(path, [threshold])
    assert exceedances > 3_000
    assert estimate == pytest.approx(_gaussian_run_length(threshold, 0.5), rel=0.04)


def test_the_fitted_model_extrapolates_gaussian_run_lengths() -> None:
    # Fitted where theta * h is 2-4 (h = 2-4 here), checked at h = 8 (run length ~10^5).
    increments = np.random.default_rng(3).normal(-0.5, 1.0, size=1_048_576)
    model = fit_run_length_model(lindley_path(increments), adjustment=1.0, drift=0.5)
    assert model is not None
    assert model.average_run_length(8.0) == pytest.approx(_gaussian_run_length(8.0, 0.5), rel=0.05)  # measured 0.3 % off


def test_the_fitted_model_extrapolates_a_lattice_walk_where_the_diffusion_approximation_fails() -> None:
    steps = np.array([9.0] * 2 + [-1.0] * 23)  # mean -0.2, variance 7.36
    adjustment = adjustment_coefficient(steps)
    assert adjustment is not None
    resample = steps[np.random.default_rng(4).integers(0, steps.size, size=1_048_576)]
    model = fit_run_length_model(lindley_path(resample), adjustment=adjustment, drift=0.2)
    assert model is not None
    for threshold in (150, 190):  # run lengths of ~1.5e5 and ~1e6, far beyond the fit (theta * h <= 4: h <= 83)
        exact = _lattice_run_length(threshold, 9, 0.08)
        assert model.average_run_length(threshold) == pytest.approx(exact, rel=0.05)  # measured 1 % off
        diffusion = cusum_average_run_length(threshold, 0.2, math.sqrt(7.36))
        assert diffusion > 2.0 * exact


def test_threshold_inverts_the_run_length() -> None:
    model = RunLengthModel(adjustment=0.4, overshoot=0.9, drift=0.19)
    for run_length in (1e2, 1e6, 1e12):
        assert model.average_run_length(model.threshold(run_length)) == pytest.approx(run_length, rel=1e-9)
    assert model.threshold(model.average_run_length(0.0) / 2.0) == 0.0


def test_docstring_examples_run() -> None:
    result = doctest.testmod(run_length_module)
    assert result.attempted > 0 and result.failed == 0
