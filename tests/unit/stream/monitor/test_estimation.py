"""ConfidenceEstimator (CBPE): the estimate tracks realised accuracy when inputs shift toward harder cases."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
from sklearn import metrics as sk

import driftline.stream.monitor.estimation as estimation_module
from driftline.stream.monitor.estimation import ConfidenceEstimator


def _events(rng: np.random.Generator, n: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores of an over-confident model and labels from the true relation P(y=1|x) = sigmoid(1.5x)."""
    x = rng.normal(0.0, spread, size=n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-1.5 * x))).astype(float)
    scores = 1.0 / (1.0 + np.exp(-2.5 * x))  # ranks right, probabilities too extreme
    return scores, labels


def test_the_estimate_tracks_realised_accuracy_as_inputs_shift_toward_harder_cases() -> None:
    rng = np.random.default_rng(11)
    estimator = ConfidenceEstimator.fit(*_events(rng, 20_000, 1.5))
    raw = ConfidenceEstimator(np.linspace(0, 1, 101), np.linspace(0, 1, 101))  # the scores taken at face value
    errors, raw_errors, z = [], [], []
    realised_accuracy = []
    for spread in np.linspace(1.5, 0.3, 25):  # from the reference's mix toward cases near the boundary
        scores, labels = _events(rng, 2_000, float(spread))
        realised = sk.accuracy_score(labels, scores >= 0.5)
        estimate = estimator.estimate(scores)
        assert estimate.accuracy is not None and estimate.accuracy_standard_error is not None
        errors.append(estimate.accuracy - realised)
        z.append((estimate.accuracy - realised) / estimate.accuracy_standard_error)
        raw_accuracy = raw.estimate(scores).accuracy
        assert raw_accuracy is not None
        raw_errors.append(raw_accuracy - realised)
        realised_accuracy.append(realised)
    errors_array = np.abs(errors)
    # The realised accuracy fell from 0.79 to 0.58; the estimate followed it. Measured: mean absolute
    # error 0.0080, largest 0.022 over 25 windows of 2,000 events (standard error of a window's
    # accuracy about 0.01); the uncalibrated scores were off by up to 0.093.
    assert realised_accuracy[0] - realised_accuracy[-1] > 0.15
    assert errors_array.mean() < 0.015 and errors_array.max() < 0.04
    assert np.max(np.abs(raw_errors)) > 2 * errors_array.max()
    assert np.mean(np.abs(z) < 3) >= 0.9  # the stated standard error is the right size


def test_precision_recall_and_f1_estimates_are_close_to_the_realised_ones() -> None:
    rng = np.random.default_rng(12)
    estimator = ConfidenceEstimator.fit(*_events(rng, 20_000, 1.5))
    scores, labels = _events(rng, 20_000, 0.8)
    estimate = estimator.estimate(scores)
    predicted = scores >= 0.5
    assert estimate.precision == pytest.approx(sk.precision_score(labels, predicted), abs=0.02)
    assert estimate.recall == pytest.approx(sk.recall_score(labels, predicted), abs=0.02)
    assert estimate.f1 == pytest.approx(sk.f1_score(labels, predicted), abs=0.02)


def test_a_change_of_the_outcome_relation_alone_is_invisible_to_the_estimate() -> None:
    # Concept drift leaves the scores as they were: the estimate cannot see it (the realised metrics can).
    rng = np.random.default_rng(13)
    estimator = ConfidenceEstimator.fit(*_events(rng, 20_000, 1.5))
    scores, labels = _events(rng, 5_000, 1.5)
    flipped = 1.0 - labels
    assert estimator.estimate(scores).accuracy == pytest.approx(estimator.estimate(scores).accuracy)
    assert sk.accuracy_score(flipped, scores >= 0.5) < 0.3 < 0.7 < (estimator.estimate(scores).accuracy or 0.0)


def test_state_round_trip_and_bad_input() -> None:
    rng = np.random.default_rng(14)
    estimator = ConfidenceEstimator.fit(*_events(rng, 5_000, 1.5))
    restored = ConfidenceEstimator.from_state(json.loads(json.dumps(estimator.to_state(), allow_nan=False)))
    scores, _ = _events(rng, 1_000, 1.0)
    assert restored.estimate(scores) == estimator.estimate(scores)
    assert estimator.knots.size < 1_000  # the step function's block ends only
    with pytest.raises(ValueError, match="at least"):
        ConfidenceEstimator.fit([0.1, 0.9], [0, 1])
    with pytest.raises(ValueError, match="labels 0 or 1"):
        ConfidenceEstimator.fit(np.linspace(0, 1, 300), np.full(300, 2.0))
    with pytest.raises(ValueError, match="non-decreasing"):
        ConfidenceEstimator([0.0, 1.0], [0.9, 0.1])
    assert estimator.estimate([]).accuracy is None


def test_docstring_examples_run() -> None:
    result = doctest.testmod(estimation_module)
    assert result.attempted > 0 and result.failed == 0


def test_a_windows_estimate_is_the_same_bits_however_its_predictions_were_batched() -> None:
    # A replay or a restart from a checkpoint cuts the batches elsewhere: the stored estimate must not move.
    from driftline.stream.monitor.estimation import EstimateWindows

    rng = np.random.default_rng(15)
    estimator = ConfidenceEstimator.fit(*_events(rng, 20_000, 1.5))
    scores, _ = _events(rng, 30_000, 1.0)
    times = np.sort(rng.integers(0, 3 * 60_000, size=scores.size))
    classes = (rng.random(scores.size) < 0.5).astype(np.float64)
    estimates = []
    for cuts in ([30_000], [7, 1_000, 2_500, 30_000], [*range(997, 30_000, 997), 30_000]):
        windows = EstimateWindows(estimator, 60_000)
        start = 0
        for end in cuts:
            windows.add(times[start:end], scores[start:end], classes[start:end])
            start = end
        restored = EstimateWindows(estimator, 60_000)
        restored.restore(json.loads(json.dumps(windows.to_state())))
        estimates.append([restored.estimate(s) for s in restored.windows()])
    assert len(estimates[0]) == 3 and estimates[0] == estimates[1] == estimates[2]
    whole = estimator.estimate(scores[times < 60_000], classes[times < 60_000])
    assert estimates[0][0] is not None and estimates[0][0].accuracy == pytest.approx(whole.accuracy, rel=1e-13)
