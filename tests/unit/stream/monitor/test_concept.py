"""ConceptDriftDetector: calibrated on the error stream; fires on a changed outcome relation while the inputs' test is quiet."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

import driftline.stream.monitor.concept as concept_module
from driftline.detectors.page_hinkley import PageHinkley
from driftline.stream.monitor.concept import ConceptDriftDetector
from driftline.stream.monitor.label_join import JoinedLabels


def _labelled(rng: np.random.Generator, n: int, slope: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs x ~ N(0, 1), the model's score sigmoid(2x), outcomes from sigmoid(slope * x)."""
    x = rng.normal(size=n)
    scores = 1.0 / (1.0 + np.exp(-2.0 * x))
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-slope * x))).astype(float)
    return x, scores, labels


def test_false_alarms_on_a_clean_labelled_stream_stay_within_the_target() -> None:
    rng = np.random.default_rng(21)
    _, scores, labels = _labelled(rng, 50_000, 2.0)
    detector = ConceptDriftDetector.calibrate(scores, labels, false_alarm_rate=1e-4)
    _, live_scores, live_labels = _labelled(rng, 2_000_000, 2.0)
    alarms = detector.update_errors(detector.errors(live_scores, live_labels)).size
    # 200 expected at the target; the safety factor aims at a third (67). Measured: 81.
    assert 20 <= alarms <= 300, alarms


def test_a_changed_outcome_relation_is_found_while_the_inputs_test_stays_quiet() -> None:
    rng = np.random.default_rng(22)
    x_ref, scores, labels = _labelled(rng, 50_000, 2.0)
    rate = 1e-7
    state = ConceptDriftDetector.calibrate(scores, labels, false_alarm_rate=rate).to_state()
    inputs = PageHinkley.calibrate(x_ref, false_alarm_rate=rate).to_state()
    delays, input_signals = [], 0
    for trial in range(100):
        trial_rng = np.random.default_rng(1_000 + trial)
        x1, s1, y1 = _labelled(trial_rng, 3_000, 2.0)
        x2, s2, y2 = _labelled(trial_rng, 5_000, 0.5)  # the outcome depends on x far less: errors rise from 25 % to 40 %
        detector = ConceptDriftDetector.from_state(state)
        hits = detector.update_errors(detector.errors(np.r_[s1, s2], np.r_[y1, y2]))
        assert not (hits < 3_000).any(), f"trial {trial}: a false alarm before the change"
        after = hits[hits >= 3_000]
        delays.append(int(after[0]) - 3_000 if after.size else 10**9)
        input_signals += PageHinkley.from_state(inputs).update_many(np.r_[x1, x2]).size
    # Measured: found in 100 of 100 trials, median 154 labelled events after the change (p90 240);
    # the inputs' Page–Hinkley at the same rate: 0 signals in all 100 trials.
    assert np.mean(np.asarray(delays) < 5_000) >= 0.95
    assert np.median(delays) < 600
    assert input_signals == 0


def test_regression_errors_and_joined_labels() -> None:
    rng = np.random.default_rng(23)
    truth = rng.normal(size=20_000)
    detector = ConceptDriftDetector.calibrate(truth + rng.normal(0, 0.5, 20_000), truth, 1e-6, task="regression")
    joined = JoinedLabels()
    live = rng.normal(size=4_000)
    predictions = live + np.r_[rng.normal(0, 0.5, 2_000), rng.normal(0, 1.5, 2_000)]  # the errors triple
    for i, (p, y) in enumerate(zip(predictions, live, strict=True)):
        joined._append(f"p{i}", (i, float(p), None), i + 1, float(y), i + 1)
    hits = detector.update(joined)
    assert hits.size and 2_000 <= hits[0] < 2_500


def test_state_round_trip_and_bad_arguments() -> None:
    rng = np.random.default_rng(24)
    _, scores, labels = _labelled(rng, 5_000, 2.0)
    detector = ConceptDriftDetector.calibrate(scores, labels, false_alarm_rate=1e-3)
    _, live_scores, live_labels = _labelled(rng, 20_000, 1.0)
    errors = detector.errors(live_scores, live_labels)
    detector.update_errors(errors[:7_000])
    restored = ConceptDriftDetector.from_state(json.loads(json.dumps(detector.to_state(), allow_nan=False)))
    assert restored.update_errors(errors[7_000:]).tolist() == detector.update_errors(errors[7_000:]).tolist()
    with pytest.raises(ValueError, match="direction"):
        ConceptDriftDetector(PageHinkley(direction="both"))
    with pytest.raises(ValueError, match="task"):
        ConceptDriftDetector(PageHinkley(direction="up"), "ranking")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="equal lengths"):
        detector.errors([0.1, 0.2], [1.0])


def test_docstring_examples_run() -> None:
    result = doctest.testmod(concept_module)
    assert result.attempted > 0 and result.failed == 0
