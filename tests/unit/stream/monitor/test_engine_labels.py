"""The engine joins labels to its accepted predictions and reports performance per prediction window."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sklearn import metrics as sk

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.performance import label_task
from driftline.stream.monitor.profile import ReferenceProfile, build_reference_profile
from driftline.stream.monitor.results import BatchResult, PerformanceWindow, to_canonical_json

HOUR = 3_600_000
CONFIG = EngineConfig(window_length_ms=60_000, allowed_lateness_ms=60_000, label_horizon_ms=HOUR)


def _stream(contract: Contract, n: int) -> tuple[list[bytes], list[str], np.ndarray, np.ndarray, np.ndarray]:
    stream = SyntheticStream(contract, seed=9)
    columns = stream.columns(n)
    times = stream.event_times(n)
    records = stream.records(columns, times)
    payloads = [encode_single_object(r, contract.schema_json) for r in records]
    ids = [str(r["event_id"]) for r in records]
    scores = np.array([float(r["prediction_score"]) for r in records])
    classes = np.array([int(r["prediction_class"]) for r in records])
    return payloads, ids, np.asarray(times, dtype=np.int64), scores, classes


def _labelled_profile(contract: Contract, rng: np.random.Generator) -> ReferenceProfile:
    """A profile from 30,000 reference rows labelled with their own (calibrated) scores."""
    columns = SyntheticStream(contract, seed=3).columns(30_000, seed_offset=1)
    labels = (rng.random(30_000) < columns["prediction_score"]).astype(float)
    return build_reference_profile(contract, columns, model_version="v1", labels=labels)


def _latest(windows: list[PerformanceWindow]) -> dict[int, PerformanceWindow]:
    """The last record of each window (a window is reported again whenever a label lands in it)."""
    return {w.window_start_ms: w for w in windows}


def test_performance_per_window_equals_scikit_learn_on_the_labelled_predictions(
    catalog: Catalog, contract: Contract, profile: ReferenceProfile
) -> None:
    payloads, ids, times, scores, classes = _stream(contract, 6_000)
    rng = np.random.default_rng(3)
    labels = (rng.random(len(ids)) < scores).astype(float)
    labelled = rng.random(len(ids)) < 0.7  # 30 % never get a label
    engine = MonitorEngine(contract, profile, CONFIG)
    codec = Codec(catalog)
    total = BatchResult()
    early = np.flatnonzero(labelled)[:50]  # some labels come before their predictions
    total.extend(engine.process_labels([ids[i] for i in early], times[early] + 1_000, labels[early]))
    for start in range(0, len(payloads), 1_000):
        total.extend(engine.process(codec.decode_batch(payloads[start:start + 1_000], model=contract.model)))
    rest = np.flatnonzero(labelled)[50:]
    for chunk in np.array_split(rng.permutation(rest), 7):  # out of order
        total.extend(engine.process_labels([ids[i] for i in chunk], times[chunk] + 5_000, labels[chunk]))
    assert total.label_counts["joined"] == int(labelled.sum()) and total.label_counts["early"] == 50
    windows = _latest(total.performance_windows)
    assert sum(w.count for w in windows.values()) == int(labelled.sum())
    for start, window in windows.items():
        rows = labelled & (times >= start) & (times < start + 60_000)
        y, decided = labels[rows], classes[rows]
        assert window.count == int(rows.sum())
        assert window.accuracy == pytest.approx(sk.accuracy_score(y, decided), rel=1e-12)
        if window.f1 is None:  # undefined: nothing positive, decided or observed
            assert not (y.any() or decided.any())
        else:
            assert window.f1 == pytest.approx(sk.f1_score(y, decided), rel=1e-12)
        assert window.log_loss == pytest.approx(sk.log_loss(y, scores[rows], labels=[0, 1]), rel=1e-9)


def test_labels_of_unknown_or_rejected_predictions_are_counted_and_the_state_restores(
    catalog: Catalog, contract: Contract, profile: ReferenceProfile
) -> None:
    payloads, ids, times, scores, _ = _stream(contract, 3_000)
    labels = (scores > 0.5).astype(float)
    codec = Codec(catalog)

    def run(restart_at: int | None) -> BatchResult:
        engine = MonitorEngine(contract, profile, CONFIG)
        total = BatchResult()
        for step, start in enumerate(range(0, 3_000, 500)):
            if restart_at == step:
                state = json.loads(json.dumps(engine.to_state(), allow_nan=False))
                engine = MonitorEngine.from_state(state, contract, profile, CONFIG)
            total.extend(engine.process(codec.decode_batch(payloads[start:start + 500], model=contract.model)))
            half = slice(start, start + 250)
            total.extend(engine.process_labels(ids[half], times[half] + 10, labels[half]))
        total.extend(engine.process_labels(["nobody"], [int(times[-1])], [1.0]))
        total.extend(engine.process(codec.decode_batch(payloads[-1:], model=contract.model)))  # a redelivered prediction
        return total

    straight, restarted = run(None), run(3)
    assert straight.label_counts["joined"] == 1_500 and straight.label_counts["prediction_duplicate_prediction"] == 1
    assert to_canonical_json(straight.performance_windows) == to_canonical_json(restarted.performance_windows)
    assert straight.label_counts == restarted.label_counts


def test_an_engine_without_a_label_horizon_holds_no_predictions_and_says_so(contract: Contract, profile: ReferenceProfile) -> None:
    engine = MonitorEngine(contract, profile, EngineConfig())
    assert engine.label_join is None and engine.to_state()["labels"] is None
    with pytest.raises(ValueError, match="label_horizon_ms"):
        engine.process_labels(["a"], [1], [1.0])
    assert label_task(contract) == "classification"
    with pytest.raises(ValueError, match="label_horizon_ms must be positive"):
        dataclasses.replace(CONFIG, label_horizon_ms=0)


def test_a_changed_outcome_relation_raises_concept_drift_while_the_inputs_raise_nothing(
    catalog: Catalog, contract: Contract
) -> None:
    rng = np.random.default_rng(7)
    labelled = _labelled_profile(contract, rng)
    assert labelled.labels is not None and labelled.labels["task"] == "classification"
    assert ReferenceProfile.from_json(labelled.to_json()).labels == labelled.labels
    payloads, ids, times, scores, _ = _stream(contract, 20_000)
    outcome = (rng.random(20_000) < scores).astype(float)
    outcome[10_000:] = (rng.random(10_000) < 1.0 - scores[10_000:]).astype(float)  # the relation turns around
    engine = MonitorEngine(contract, labelled, CONFIG)
    codec = Codec(catalog)
    total = BatchResult()
    for start in range(0, 20_000, 1_000):
        total.extend(engine.process(codec.decode_batch(payloads[start:start + 1_000], model=contract.model)))
        part = slice(start, start + 1_000)
        total.extend(engine.process_labels(ids[part], times[part] + 1_000, outcome[part]))
    total.extend(engine.flush())
    concept = [a for a in total.alerts if a.kind == "concept_drift"]
    assert len(concept) == 1 and concept[0].event_time_ms > int(times[10_000])
    signal = next(s for s in total.signals if s.detector == "concept_error")
    # Measured: the first concept_error signal 50 labelled events after the change, at the engine's
    # share of the default budget; no other alert on these inputs.
    assert signal.event_index - 10_000 < 500
    assert [a.kind for a in total.alerts if a.kind != "concept_drift"] == []


def test_the_estimate_comes_at_window_close_tracks_the_realised_accuracy_and_pages_on_a_drop(
    catalog: Catalog, contract: Contract
) -> None:
    rng = np.random.default_rng(8)
    labelled = _labelled_profile(contract, rng)
    assert labelled.labels is not None and labelled.labels["estimated_accuracy"] > 0.7
    stream = SyntheticStream(contract, seed=9)
    live = stream.columns(12_000)
    # From event 6,000 the inputs move toward cases near the decision boundary: scores pulled toward 0.5.
    score = live["prediction_score"]
    score[6_000:] = 0.5 + 0.25 * (score[6_000:] - 0.5)
    live["prediction_class"] = (score >= 0.5).astype(float)
    times = stream.event_times(12_000)
    records = stream.records(live, times)
    payloads = [encode_single_object(r, contract.schema_json) for r in records]
    outcome = (rng.random(12_000) < score).astype(float)  # the scores stay calibrated: only harder
    engine = MonitorEngine(contract, labelled, CONFIG)
    codec = Codec(catalog)
    total = BatchResult()
    for start in range(0, 12_000, 1_000):  # predictions only: no label has arrived yet
        total.extend(engine.process(codec.decode_batch(payloads[start:start + 1_000], model=contract.model)))
    total.extend(engine.flush())
    estimated = _latest(total.performance_windows)
    assert estimated and all(w.count == 0 and w.estimated_accuracy is not None for w in estimated.values())
    drops = [a for a in total.alerts if a.kind == "performance_drop"]
    shift_ms = int(times[6_000])
    assert drops and all(a.window_start_ms is not None and a.window_start_ms >= shift_ms - 60_000 for a in drops)
    # The labels come: each window's realised accuracy beside its estimate.
    ids = [str(r["event_id"]) for r in records]
    total.extend(engine.process_labels(ids, times + 1_000, outcome))
    windows = [w for w in _latest(total.performance_windows).values() if w.count >= 300]
    errors = np.array([abs(w.estimated_accuracy - w.accuracy) for w in windows if w.estimated_accuracy is not None and w.accuracy is not None])
    before = [w.accuracy for w in windows if w.window_start_ms + 60_000 <= shift_ms]
    after = [w.accuracy for w in windows if w.window_start_ms >= shift_ms]
    # Measured: realised accuracy 0.79 -> 0.58 (window means); the estimate's mean absolute error 0.012
    # (largest 0.030) over 20 windows of about 600 predictions, each window's standard error about 0.018;
    # the performance_drop alert came at the close of the window the shift began in, before any label.
    assert np.mean(before) - np.mean(after) > 0.1
    assert errors.size >= 15 and errors.mean() < 0.03 and errors.max() < 0.08


def test_labels_far_ahead_of_their_predictions_still_count_in_full_windows(
    catalog: Catalog, contract: Contract, profile: ReferenceProfile
) -> None:
    # The label topic read far ahead of the predictions (a catch-up after an outage, or a restart whose
    # label consumer runs ahead): the labels' watermark is hours past windows whose predictions, and so
    # whose joins, are still to come. A window must not be let go (and later re-created with only its
    # last labels, overwriting its record) while a waiting label can still join one of its predictions.
    config = dataclasses.replace(CONFIG, label_horizon_ms=60_000, label_grace_ms=30_000)
    payloads, ids, times, scores, classes = _stream(contract, 12_000)  # a little over an hour at the stream's rate
    labels = (np.random.default_rng(4).random(len(ids)) < scores).astype(float)
    engine = MonitorEngine(contract, profile, config)
    codec = Codec(catalog)
    total = BatchResult()
    everything = np.arange(len(ids))
    total.extend(engine.process_labels([ids[i] for i in everything], times + 20_000, labels))  # every label first
    for start in range(0, len(payloads), 500):
        total.extend(engine.process(codec.decode_batch(payloads[start:start + 500], model=contract.model)))
    assert times[-1] - times[0] > 3 * 60_000 + 60_000  # the labels ran more than two horizons ahead
    assert total.label_counts["joined"] == len(ids)
    windows = _latest(total.performance_windows)
    for start, window in windows.items():
        rows = (times >= start) & (times < start + 60_000)
        assert window.count == int(rows.sum()), start
        assert window.accuracy == pytest.approx(sk.accuracy_score(labels[rows], classes[rows]), rel=1e-12)
