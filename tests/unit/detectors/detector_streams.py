"""Seeded streams and the batching-invariance check shared by the detector tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
from scipy.signal import lfilter

from driftline.detectors.base import DriftDetector

#: Every kind of field of issue 10 (item 2): continuous, heavy-tailed, autocorrelated, counts that are
#: mostly zero, binary, low-cardinality numeric.
FIELD_KINDS = ("gaussian", "student_t3", "ar1", "zero_inflated", "poisson0.1", "binary0.05", "binary0.5", "lowcard5")


def stationary_stream(kind: str, n: int, seed: int) -> np.ndarray:
    """A stationary stream of one kind of field.

    ``gaussian``; ``student_t3`` (3 degrees of freedom); ``ar1`` (phi = 0.5); ``zero_inflated``
    (90 % zeros, otherwise 1 + NegativeBinomial(2, 0.5)); ``poisson<mean>`` (the example contract's
    ``public_records`` is ``poisson0.1``); ``binary<p>``; ``lowcard5`` (1..5 with probabilities 0.4,
    0.3, 0.15, 0.1, 0.05).
    """
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal(n)
    if kind == "student_t3":
        return rng.standard_t(3, size=n)
    if kind == "ar1":
        return lfilter([1.0], [1.0, -0.5], rng.standard_normal(n + 500))[500:]
    if kind == "zero_inflated":
        return np.where(rng.random(n) < 0.1, 1.0 + rng.negative_binomial(2, 0.5, size=n), 0.0)
    if kind.startswith("poisson"):
        return rng.poisson(float(kind.removeprefix("poisson")), size=n).astype(np.float64)
    if kind.startswith("binary"):
        return (rng.random(n) < float(kind.removeprefix("binary"))).astype(np.float64)
    if kind == "lowcard5":
        return np.array([1.0, 2.0, 3.0, 4.0, 5.0])[rng.choice(5, size=n, p=[0.4, 0.3, 0.15, 0.1, 0.05])]
    raise ValueError(f"unknown kind of stream {kind!r}")


def piecewise_stream(means: Sequence[float], lengths: Sequence[int], seed: int) -> np.ndarray:
    """Unit-variance Gaussian segments with the given means: abrupt mean changes at known places."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(m, 1.0, size=k) for m, k in zip(means, lengths)])


def loop_indices(detector: DriftDetector, values: np.ndarray) -> list[int]:
    """Indices at which ``update`` signalled, one value at a time."""
    hits = []
    for index, value in enumerate(values):
        detector.update(float(value))
        if detector.drift_detected:
            hits.append(index)
    return hits


def assert_batching_invariant(
    make: Callable[[], DriftDetector], values: np.ndarray, *, cuts: int, min_signals: int
) -> list[int]:
    """``update_many`` over random splits equals ``update`` in a loop: indices and final state."""
    looped = make()
    expected = loop_indices(looped, values)
    assert len(expected) >= min_signals, "the stream must make the detector signal for the check to mean anything"
    for split_seed in range(4):
        rng = np.random.default_rng(split_seed)
        positions = np.sort(rng.choice(np.arange(1, values.size), size=cuts, replace=False))
        batched = make()
        hits: list[int] = []
        for start, stop in zip(np.r_[0, positions], np.r_[positions, values.size]):
            hits.extend((batched.update_many(values[start:stop]) + start).tolist())
        assert hits == expected
        assert json.dumps(batched.to_state()) == json.dumps(looped.to_state())
    whole = make()
    assert whole.update_many(values).tolist() == expected  # several signals inside one batch
    return expected
