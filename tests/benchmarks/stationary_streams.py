"""Stationary streams for the quality benchmarks, and the Poisson interval their counts are read with.

Shared by ``detector_quality.py``, ``discrete_calibration.py`` and ``budget_quality.py`` (run as
scripts from this directory, so they import it by name). Every kind is a seeded, stationary process
generated in consecutive chunks (AR(1) carries its filter state from one to the next).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.signal import lfilter
from scipy.stats import chi2

#: The low-cardinality kind: five values with unequal frequencies.
LOWCARD_VALUES = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
LOWCARD_PROBABILITIES = np.array([0.4, 0.3, 0.15, 0.1, 0.05])


def chunks(kind: str, total: int, seed: list[int], size: int = 1_000_000) -> Iterator[np.ndarray]:
    """``total`` values of the process ``kind`` in consecutive chunks (AR(1) carries its filter state)."""
    rng = np.random.default_rng(seed)
    state = None
    if kind in ("ar1", "ar1_phi0.5"):
        _, state = lfilter([1.0], [1.0, -0.5], rng.standard_normal(1_000), zi=np.zeros(1))
    for start in range(0, total, size):
        n = min(size, total - start)
        if kind == "gaussian":
            yield rng.standard_normal(n)
        elif kind == "student_t3":
            yield rng.standard_t(3, size=n)
        elif kind in ("ar1", "ar1_phi0.5"):
            values, state = lfilter([1.0], [1.0, -0.5], rng.standard_normal(n), zi=state)
            yield values
        elif kind == "zero_inflated":
            nonzero = rng.random(n) < 0.1
            yield np.where(nonzero, 1.0 + rng.negative_binomial(2, 0.5, size=n), 0.0)
        elif kind.startswith("poisson"):
            yield rng.poisson(float(kind.removeprefix("poisson")), size=n).astype(np.float64)
        elif kind.startswith("binary"):
            yield (rng.random(n) < float(kind.removeprefix("binary"))).astype(np.float64)
        elif kind == "lowcard5":
            yield LOWCARD_VALUES[rng.choice(LOWCARD_VALUES.size, size=n, p=LOWCARD_PROBABILITIES)]
        else:
            raise ValueError(f"unknown kind {kind!r}")


def poisson_interval(count: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson mean from one count."""
    tail = (1.0 - level) / 2.0
    low = 0.0 if count == 0 else chi2.ppf(tail, 2 * count) / 2.0
    return float(low), float(chi2.ppf(1.0 - tail, 2 * count + 2) / 2.0)
