"""PerformanceWindows against scikit-learn's metrics, independent of label order, restorable."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
from sklearn import metrics as sk

import driftline.stream.monitor.performance as performance_module
from driftline.stream.monitor.label_join import JoinedLabels
from driftline.stream.monitor.performance import PerformanceWindows

WINDOW = 60_000


def _joined(rows: list[tuple[int, float, int | None, float]]) -> JoinedLabels:
    joined = JoinedLabels()
    for i, (time_ms, score, klass, label) in enumerate(rows):
        joined._append(f"p{i}", (time_ms, score, klass), time_ms + 1, label, time_ms + 1)
    return joined


def _classification_rows(seed: int, n: int) -> list[tuple[int, float, int | None, float]]:
    rng = np.random.default_rng(seed)
    times = rng.integers(0, 5 * WINDOW, size=n)
    scores = rng.beta(2, 3, size=n)
    labels = (rng.random(n) < scores).astype(float)  # calibrated-ish scores
    klass = [int(s >= 0.35) if rng.random() < 0.7 else None for s in scores]  # the event's own decision, mostly
    return [(int(t), float(s), k, float(y)) for t, s, k, y in zip(times, scores, klass, labels, strict=True)]


def test_classification_metrics_equal_scikit_learn_per_window() -> None:
    rows = _classification_rows(1, 4_000)
    windows = PerformanceWindows(WINDOW, "classification")
    assert windows.add(_joined(rows)) == [0, WINDOW, 2 * WINDOW, 3 * WINDOW, 4 * WINDOW]
    for start in windows.windows():
        mine = windows.metrics(start)
        part = [r for r in rows if start <= r[0] < start + WINDOW]
        y = np.array([r[3] for r in part])
        predicted = np.array([r[2] if r[2] is not None else int(r[1] >= 0.5) for r in part])
        scores = np.array([r[1] for r in part])
        assert mine.count == len(part)
        assert mine.accuracy == pytest.approx(sk.accuracy_score(y, predicted), rel=1e-12)
        assert mine.precision == pytest.approx(sk.precision_score(y, predicted), rel=1e-12)
        assert mine.recall == pytest.approx(sk.recall_score(y, predicted), rel=1e-12)
        assert mine.f1 == pytest.approx(sk.f1_score(y, predicted), rel=1e-12)
        assert mine.log_loss == pytest.approx(sk.log_loss(y, scores, labels=[0, 1]), rel=1e-12)
        (tn, fp), (fn, tp) = sk.confusion_matrix(y, predicted, labels=[0, 1])
        assert (mine.true_negatives, mine.false_positives, mine.false_negatives, mine.true_positives) == (tn, fp, fn, tp)


def test_regression_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    predicted, actual = rng.normal(size=3_000) * 10, rng.normal(size=3_000) * 10
    rows = [(int(t), float(p), None, float(a)) for t, p, a in zip(rng.integers(0, WINDOW, 3_000), predicted, actual, strict=True)]
    windows = PerformanceWindows(WINDOW, "regression")
    windows.add(_joined(rows))
    mine = windows.metrics(0)
    assert mine.mae == pytest.approx(sk.mean_absolute_error(actual, predicted), rel=1e-12)
    assert mine.rmse == pytest.approx(math.sqrt(sk.mean_squared_error(actual, predicted)), rel=1e-12)
    assert mine.accuracy is None and mine.count == 3_000


def test_the_same_labels_in_any_order_and_batching_give_the_same_bits() -> None:
    rows = _classification_rows(3, 2_000)
    reference = PerformanceWindows(WINDOW, "classification")
    reference.add(_joined(rows))
    rng = np.random.default_rng(4)
    for _ in range(5):
        order = rng.permutation(len(rows))
        shuffled = PerformanceWindows(WINDOW, "classification")
        cuts = np.sort(rng.choice(len(rows), size=7, replace=False))
        for part in np.split(order, cuts):
            shuffled.add(_joined([rows[i] for i in part]))
            shuffled = PerformanceWindows.from_state(json.loads(json.dumps(shuffled.to_state(), allow_nan=False)))
        assert [shuffled.metrics(s) for s in shuffled.windows()] == [reference.metrics(s) for s in reference.windows()]


def test_invalid_classification_labels_are_counted_not_scored_and_undefined_ratios_are_none() -> None:
    windows = PerformanceWindows(WINDOW, "classification")
    windows.add(_joined([(0, 0.2, 0, 0.0), (1, 0.3, 0, 2.0), (2, 0.1, None, 0.0)]))
    m = windows.metrics(0)
    assert (m.count, m.invalid_labels, m.accuracy, m.precision, m.recall, m.f1) == (2, 1, 1.0, None, None, None)
    assert windows.metrics(WINDOW).count == 0
    windows.forget([0])
    assert windows.windows() == []


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="window_length_ms"):
        PerformanceWindows(0, "classification")
    with pytest.raises(ValueError, match="task"):
        PerformanceWindows(WINDOW, "ranking")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        PerformanceWindows(WINDOW, "classification", threshold=1.0)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(performance_module)
    assert result.attempted > 0 and result.failed == 0
