"""Seeded streams and the batching-invariance check shared by the detector tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
from scipy.signal import lfilter

from driftline.detectors.base import DriftDetector


def stationary_stream(kind: str, n: int, seed: int) -> np.ndarray:
    """Gaussian, Student-t with 3 degrees of freedom, or AR(1) with phi = 0.5."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal(n)
    if kind == "student_t3":
        return rng.standard_t(3, size=n)
    return lfilter([1.0], [1.0, -0.5], rng.standard_normal(n + 500))[500:]  # AR(1), phi = 0.5


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
