"""DriftlineMetrics against a private registry: values, bounded labels, and the HTTP endpoint."""

from __future__ import annotations

import urllib.request
from typing import Any

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry

from driftline.schemas.results import RejectReason
from driftline.sinks import DriftlineMetrics, serve
from driftline.sinks.metrics import ALERT_KINDS, PROCESSING_LATENCY_BUCKETS, REJECTION_REASONS
from driftline.stream.monitor.results import (
    Alert,
    AlertKind,
    AlertResolution,
    BatchResult,
    FeatureWindow,
    ModelWindow,
    PerformanceWindow,
    alert_identifier,
)

MINUTE_MS = 60_000
START_MS = 1_700_000_040_000
REASONS = ("corrupt", "wrong_type", "out_of_range")


def make_metrics(registry: CollectorRegistry, **options: Any) -> DriftlineMetrics:
    return DriftlineMetrics(
        registry,
        models={"churn": ["age", "plan", "score"], "fraud": ["amount"]},
        rejection_reasons=REASONS,
        **options,
    )


def feature_window(feature: str, window: int = 0, model: str = "churn", **changes: Any) -> FeatureWindow:
    values: dict[str, Any] = dict(
        model=model,
        model_version="v1",
        feature=feature,
        kind="numeric",
        window_start_ms=START_MS + window * MINUTE_MS,
        window_length_ms=MINUTE_MS,
        count=100,
        nulls=0,
        non_finite=0,
        out_of_range=0,
        unseen=0,
        minimum=0.0,
        maximum=1.0,
        mean=0.5,
        variance=0.1,
        psi=0.1,
        jensen_shannon=0.02,
        ks=0.05,
        wasserstein=0.3,
        psi_threshold=0.2,
    )
    values.update(changes)
    return FeatureWindow(**values)


def model_window(window: int = 0, model: str = "churn") -> ModelWindow:
    return ModelWindow(model, "v1", START_MS + window * MINUTE_MS, MINUTE_MS, 10, 9, 1, (("wrong_type", 1),))


def alert(event_time_ms: int, kind: str = "mean_shift", model: str = "churn", feature: str | None = "age") -> Alert:
    return Alert(
        alert_id=alert_identifier(model, kind, feature, event_time_ms),
        model=model,
        model_version="v1",
        kind=kind,
        feature=feature,
        detector="page_hinkley",
        severity="warning",
        window_start_ms=None,
        event_time_ms=event_time_ms,
        score=3.0,
        threshold=2.0,
        message="m",
    )


def sample_count(registry: CollectorRegistry) -> int:
    return sum(len(metric.samples) for metric in registry.collect())


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_counters_from_one_result() -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    result = BatchResult(accepted=120, rejected_by_reason={"wrong_type": 3, "corrupt": 1, "unheard_of": 2}, late_events=4)
    metrics.observe(result, now_s=0.0, model="churn", processing_seconds=0.004)
    metrics.observe(BatchResult(accepted=5), now_s=0.0, model="churn")
    assert value(registry, "driftline_events_accepted_total", model="churn") == 125
    assert value(registry, "driftline_events_accepted_total", model="fraud") == 0
    assert value(registry, "driftline_events_rejected_total", model="churn", reason="wrong_type") == 3
    assert value(registry, "driftline_events_rejected_total", model="churn", reason="corrupt") == 1
    assert value(registry, "driftline_events_rejected_total", model="churn", reason="other") == 2
    assert value(registry, "driftline_events_rejected_total", model="churn", reason="unheard_of") is None
    assert value(registry, "driftline_late_events_total", model="churn") == 4
    assert value(registry, "driftline_processing_latency_seconds_count") == 1
    assert value(registry, "driftline_processing_latency_seconds_bucket", le="0.005") == 1
    assert value(registry, "driftline_processing_latency_seconds_bucket", le="0.0025") == 0


def test_counters_go_to_the_only_model_of_the_result_or_to_other() -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    metrics.observe(BatchResult(model_windows=[model_window(model="fraud")], accepted=7), now_s=0.0)
    metrics.observe(
        BatchResult(model_windows=[model_window(model="fraud")], alerts=[alert(START_MS)], accepted=2), now_s=0.0
    )
    metrics.observe(BatchResult(accepted=4), now_s=0.0)  # names no model; two are configured
    assert value(registry, "driftline_events_accepted_total", model="fraud") == 7
    assert value(registry, "driftline_events_accepted_total", model="other") == 6


def test_counters_of_a_result_naming_no_model_go_to_the_only_configured_model() -> None:
    registry = CollectorRegistry()
    metrics = DriftlineMetrics(registry, models={"churn": ["age"]})
    metrics.observe(BatchResult(accepted=9, rejected_by_reason={"missing_field": 2}), now_s=0.0)
    assert value(registry, "driftline_events_accepted_total", model="churn") == 9
    assert value(registry, "driftline_events_rejected_total", model="churn", reason="missing_field") == 2


def test_latency_buckets_span_one_millisecond_to_ten_seconds() -> None:
    assert PROCESSING_LATENCY_BUCKETS[0] == 0.001 and PROCESSING_LATENCY_BUCKETS[-1] == 10.0
    assert list(PROCESSING_LATENCY_BUCKETS) == sorted(set(PROCESSING_LATENCY_BUCKETS))


def test_drift_scores_show_the_latest_window() -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    metrics.observe(
        BatchResult(feature_windows=[feature_window("age", 1, psi=0.4, ks=None), feature_window("age", 0, psi=0.9)]),
        now_s=0.0,
    )
    assert value(registry, "driftline_drift_score", model="churn", feature="age", statistic="psi") == 0.4
    assert value(registry, "driftline_drift_score", model="churn", feature="age", statistic="wasserstein") == 0.3
    # ks of window 1 is None: the gauge keeps window 0's value rather than inventing one.
    assert value(registry, "driftline_drift_score", model="churn", feature="age", statistic="ks") == 0.05
    # A window re-emitted late does not move the gauge back in time.
    metrics.observe(BatchResult(feature_windows=[feature_window("age", 0, psi=2.0)]), now_s=0.0)
    assert value(registry, "driftline_drift_score", model="churn", feature="age", statistic="psi") == 0.4
    metrics.observe(BatchResult(feature_windows=[feature_window("age", 2, psi=0.05)]), now_s=0.0)
    assert value(registry, "driftline_drift_score", model="churn", feature="age", statistic="psi") == 0.05


def test_unknown_features_share_the_other_label_with_the_largest_score() -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    windows = [feature_window("tenure", psi=0.3), feature_window("region", psi=0.7), feature_window("amount", psi=0.2)]
    metrics.observe(BatchResult(feature_windows=windows), now_s=0.0)
    # "amount" is a feature of fraud, not of churn.
    assert value(registry, "driftline_drift_score", model="churn", feature="other", statistic="psi") == 0.7
    assert value(registry, "driftline_drift_score", model="churn", feature="amount", statistic="psi") is None


def test_window_lag_is_processing_time_minus_the_end_of_the_last_closed_window() -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    end_s = (START_MS + 2 * MINUTE_MS) / 1000
    metrics.observe(BatchResult(model_windows=[model_window(1), model_window(0)]), now_s=end_s + 12.5)
    assert value(registry, "driftline_window_lag_seconds", model="churn") == pytest.approx(12.5)
    # No new window: the lag of the stalled model keeps growing.
    metrics.observe(BatchResult(model_windows=[model_window(0, model="fraud")]), now_s=end_s + 70.0)
    assert value(registry, "driftline_window_lag_seconds", model="churn") == pytest.approx(70.0)
    assert value(registry, "driftline_window_lag_seconds", model="fraud") == pytest.approx(130.0)


def test_alerts_total_and_active_alerts_follow_the_incidents() -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    first, second = alert(START_MS), alert(START_MS + 60_000, kind="score_change", feature="score")
    metrics.observe(BatchResult(alerts=[first, second]), now_s=0.0)
    metrics.observe(BatchResult(alerts=[first]), now_s=0.0)  # delivered again
    assert value(registry, "driftline_alerts_total", model="churn", kind="mean_shift") == 1
    assert value(registry, "driftline_active_alerts", model="churn", kind="mean_shift", feature="age") == 1
    assert value(registry, "driftline_active_alerts", model="churn", kind="score_change", feature="score") == 1
    # The first incident resolves: it is no longer active, the second still is (however much time passed).
    resolved = AlertResolution(first, START_MS + 600_000, START_MS, 3)
    metrics.observe(BatchResult(model_windows=[model_window(90)], resolved_alerts=[resolved]), now_s=0.0)
    assert value(registry, "driftline_active_alerts", model="churn", kind="mean_shift", feature="age") == 0
    assert value(registry, "driftline_active_alerts", model="churn", kind="score_change", feature="score") == 1
    assert value(registry, "driftline_alerts_total", model="churn", kind="mean_shift") == 1
    # The engine's list of open incidents is what counts: after a restart, the gauge is right again.
    fresh = CollectorRegistry()
    restarted = make_metrics(fresh)
    restarted.observe(BatchResult(open_alerts=[(second.alert_id, "score_change", "score")]), now_s=0.0, model="churn")
    assert value(fresh, "driftline_active_alerts", model="churn", kind="score_change", feature="score") == 1
    restarted.observe(BatchResult(open_alerts=[]), now_s=0.0, model="churn")
    assert value(fresh, "driftline_active_alerts", model="churn", kind="score_change", feature="score") == 0


def test_consumer_lag_gauge() -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    metrics.set_consumer_lag("fraud", 42)
    metrics.set_consumer_lag("order-12345", 7)
    assert value(registry, "driftline_consumer_lag_messages", model="fraud") == 42
    assert value(registry, "driftline_consumer_lag_messages", model="other") == 7


def test_a_flood_of_unknown_values_creates_no_time_series() -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)

    def flood(prefix: str, size: int) -> BatchResult:
        return BatchResult(
            # Unknown features of a known model (e.g. category values leaking into names) ...
            feature_windows=[feature_window(f"{prefix}-feature-{i}", psi=i / size) for i in range(size)]
            # ... and records of models no contract declares.
            + [feature_window("age", model=f"{prefix}-model-{i}") for i in range(size)],
            model_windows=[model_window(model=f"{prefix}-model-{i}") for i in range(size)],
            alerts=[alert(START_MS + i, kind=f"{prefix}-kind-{i}", model=f"{prefix}-model-{i}") for i in range(size)]
            + [alert(START_MS + i, kind=f"{prefix}-kind-{i}") for i in range(size)],
            rejected_by_reason={f"{prefix}-reason-{i}": 1 for i in range(size)},
            late_events=1,
        )

    for model in ("churn", f"id-{12345}"):
        metrics.observe(flood("warm-up", 1), now_s=0.0, model=model)
        metrics.set_consumer_lag(model, 1)
    before = sample_count(registry)
    for model in [f"flood-model-{i}" for i in range(100)]:
        metrics.set_consumer_lag(model, 1)
    metrics.observe(flood("flood", 10_000), now_s=0.0, model="churn")
    metrics.observe(BatchResult(accepted=1), now_s=0.0, model="flood-model-0")
    assert sample_count(registry) == before
    label_values = {v for metric in registry.collect() for sample in metric.samples for v in sample.labels.values()}
    assert not any("flood" in label_value for label_value in label_values)
    assert value(registry, "driftline_events_rejected_total", model="churn", reason="other") == 10_001
    assert value(registry, "driftline_alerts_total", model="other", kind="other") == 10_001


def test_metrics_are_registered_on_the_given_registry_only() -> None:
    registry = CollectorRegistry()
    make_metrics(registry)
    names = {metric.name for metric in registry.collect()}
    assert {
        "driftline_events_accepted",
        "driftline_events_rejected",
        "driftline_drift_score",
        "driftline_alerts",
        "driftline_active_alerts",
        "driftline_window_lag_seconds",
        "driftline_late_events",
        "driftline_processing_latency_seconds",
        "driftline_consumer_lag_messages",
        "driftline_labels",
        "driftline_performance",
    } <= names
    assert not any(metric.name.startswith("driftline") for metric in prometheus_client.REGISTRY.collect())
    # A second set on a second registry does not clash (no global state).
    make_metrics(CollectorRegistry())


def test_serve_exposes_the_registry_on_loopback() -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    metrics.observe(BatchResult(accepted=3), now_s=0.0, model="churn")
    port = serve(registry, 0)
    assert port > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode("utf-8")
        assert response.status == 200
    assert 'driftline_events_accepted_total{model="churn"} 3.0' in body
    assert "# TYPE driftline_drift_score gauge" in body


def test_label_sets_are_the_enumerations_of_reasons_and_kinds() -> None:
    registry = CollectorRegistry()
    DriftlineMetrics(registry, models={"churn": ["age"]})  # the default label sets
    for reason in RejectReason:
        assert registry.get_sample_value("driftline_events_rejected_total", {"model": "churn", "reason": reason.value}) == 0.0
    for kind in AlertKind:
        assert registry.get_sample_value("driftline_alerts_total", {"model": "churn", "kind": kind.value}) == 0.0
    assert set(REJECTION_REASONS) == {r.value for r in RejectReason} and set(ALERT_KINDS) == {k.value for k in AlertKind}


def _performance(window: int, accuracy: float, model: str = "churn") -> PerformanceWindow:
    return PerformanceWindow(
        model=model, task="classification", window_start_ms=START_MS + window * MINUTE_MS, window_length_ms=MINUTE_MS,
        count=50, invalid_labels=0, accuracy=accuracy, precision=None, recall=None, f1=None, log_loss=0.4,
        true_positives=0, false_positives=0, true_negatives=40, false_negatives=10, mae=None, rmse=None,
    )


def test_labels_by_outcome_and_the_latest_windows_performance() -> None:
    registry = CollectorRegistry()
    metrics = make_metrics(registry)
    counts = {"joined": 40, "early": 3, "unknown_prediction": 2, "prediction_unlabelled": 9, "rejected_corrupt": 1,
              "rejected_model_mismatch": 2}
    metrics.observe(BatchResult(label_counts=counts, performance_windows=[_performance(1, 0.8)]), now_s=0.0, model="churn")
    assert value(registry, "driftline_labels_total", model="churn", outcome="joined") == 40
    assert value(registry, "driftline_labels_total", model="churn", outcome="unknown_prediction") == 2
    assert value(registry, "driftline_labels_total", model="churn", outcome="rejected") == 3  # every reason of the codec
    assert value(registry, "driftline_labels_total", model="churn", outcome="after_horizon") == 0  # present from the start
    assert value(registry, "driftline_performance", model="churn", metric="accuracy") == 0.8
    assert value(registry, "driftline_performance", model="churn", metric="f1") is None  # undefined: not exported
    # Labels of an older window do not move the gauge back; a newer window does.
    metrics.observe(BatchResult(performance_windows=[_performance(0, 0.1)]), now_s=0.0, model="churn")
    assert value(registry, "driftline_performance", model="churn", metric="accuracy") == 0.8
    metrics.observe(BatchResult(performance_windows=[_performance(2, 0.6)]), now_s=0.0, model="churn")
    assert value(registry, "driftline_performance", model="churn", metric="accuracy") == 0.6
