"""Prometheus metrics of driftline, all built in one place against a given registry.

Label values are bounded (DESIGN decision 8): models and features come from the contracts and are
passed to :class:`DriftlineMetrics` up front; rejection reasons and alert kinds come from fixed
enumerations. Anything else — a feature of an unknown writer schema, a category value that ended
up in a name, an id — is counted under the label value ``"other"``, so no input can create new
time series. Every value is in base units (``_seconds``) and counters end in ``_total``.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from driftline.schemas.results import RejectReason
from driftline.stream.monitor.results import LABEL_REASONS, AlertKind, BatchResult

__all__ = [
    "ALERT_KINDS",
    "COMMIT_LATENCY_BUCKETS",
    "DRIFT_STATISTICS",
    "LABEL_OUTCOMES",
    "OTHER",
    "PERFORMANCE_METRICS",
    "PROCESSING_LATENCY_BUCKETS",
    "REJECTION_REASONS",
    "DriftlineMetrics",
    "serve",
]

#: The label value every unknown model, feature, reason or kind is counted under.
OTHER = "other"

#: ``kind`` label values besides ``"other"``: every :class:`~driftline.stream.monitor.results.AlertKind`.
ALERT_KINDS: tuple[str, ...] = tuple(kind.value for kind in AlertKind)

#: ``reason`` label values besides ``"other"``: every rejection reason the codec can give.
REJECTION_REASONS: tuple[str, ...] = tuple(reason.value for reason in RejectReason)

#: Drift statistics exported per feature, as the ``statistic`` label.
DRIFT_STATISTICS: tuple[str, ...] = ("psi", "jensen_shannon", "ks", "wasserstein")

#: ``outcome`` label values of ``driftline_labels_total``: joined, each reason a label was not, and
#: ``rejected`` (dead-lettered by the label codec, whatever the reason).
LABEL_OUTCOMES: tuple[str, ...] = ("joined", *LABEL_REASONS, "rejected")

#: Realised performance exported per model, as the ``metric`` label.
PERFORMANCE_METRICS: tuple[str, ...] = ("accuracy", "f1", "log_loss", "mae", "rmse")

#: From 1 ms to 10 s, about three buckets per decade.
PROCESSING_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

#: From 50 ms to 2 min: checkpoints are about a second apart, and lag after a restart takes longer.
COMMIT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0,
)


@dataclass(frozen=True)
class _ActiveAlert:
    model: str  # label value
    kind: str  # label value
    feature: str  # label value ("" for a model-level alert)

#: Alert ids remembered so that an alert delivered again (a re-processed batch) is counted once.
SEEN_ALERTS = 100_000


class DriftlineMetrics:
    """All driftline metrics, registered on ``registry``, updated from engine results.

    Parameters
    ----------
    registry
        Where the metrics are registered (a fresh ``CollectorRegistry`` in tests, never the global one
        by accident).
    models
        The model names of the contracts and, per model, its feature and prediction field names:
        the only ``model`` / ``feature`` label values besides ``"other"``.
    rejection_reasons
        The ``reason`` label values besides ``"other"``; defaults to :data:`REJECTION_REASONS`, derived
        from the codec's :class:`~driftline.schemas.results.RejectReason`.
    alert_kinds
        The ``kind`` label values besides ``"other"``; defaults to :data:`ALERT_KINDS`.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> from driftline.stream.monitor.results import BatchResult
    >>> registry = CollectorRegistry()
    >>> metrics = DriftlineMetrics(registry, models={"churn": ["age"]}, rejection_reasons=["wrong_type"])
    >>> metrics.observe(BatchResult(accepted=10, rejected_by_reason={"wrong_type": 1, "oops": 2}), now_s=0.0, model="churn")
    >>> registry.get_sample_value("driftline_events_rejected_total", {"model": "churn", "reason": "other"})
    2.0
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        models: Mapping[str, Iterable[str]],
        rejection_reasons: Iterable[str] | None = None,
        alert_kinds: Iterable[str] = ALERT_KINDS,
    ) -> None:
        self.registry = registry
        self.models: dict[str, frozenset[str]] = {
            str(model): frozenset(map(str, features)) for model, features in models.items()
        }
        reasons = REJECTION_REASONS if rejection_reasons is None else rejection_reasons
        self.rejection_reasons = frozenset(map(str, reasons))
        self.alert_kinds = frozenset(map(str, alert_kinds))
        self._model_labels = (*sorted(self.models), OTHER)
        self._last_window_end_ms: dict[str, int] = {}  # by model label
        self._active: dict[str, _ActiveAlert] = {}  # the open incidents, by the id of the alert that opened each
        self._seen: OrderedDict[str, None] = OrderedDict()  # alert ids counted (the latest SEEN_ALERTS)
        self._active_series: set[tuple[str, str, str]] = set()  # (model, kind, feature) of driftline_active_alerts set so far
        self._drift_latest: dict[tuple[str, str, str], tuple[int, float]] = {}  # label set -> (window start, value)

        self.events_accepted = Counter(
            "driftline_events_accepted", "Events that passed the contract check.", ["model"], registry=registry
        )
        self.events_rejected = Counter(
            "driftline_events_rejected",
            "Events rejected (and dead-lettered), by reason.",
            ["model", "reason"],
            registry=registry,
        )
        self.drift_score = Gauge(
            "driftline_drift_score",
            "Drift statistic of the last closed window of a feature against its reference profile.",
            ["model", "feature", "statistic"],
            registry=registry,
        )
        self.alerts = Counter("driftline_alerts", "Alerts raised.", ["model", "kind"], registry=registry)
        self.active_alerts = Gauge(
            "driftline_active_alerts",
            "Open incidents: alerts raised and not resolved yet (README, Alerts); feature is empty for model-level ones.",
            ["model", "kind", "feature"],
            registry=registry,
        )
        self.window_lag = Gauge(
            "driftline_window_lag_seconds",
            "Processing time minus the end of the model's last closed window.",
            ["model"],
            registry=registry,
        )
        self.late_events = Counter(
            "driftline_late_events",
            "Events that arrived after their window closed (beyond the allowed lateness).",
            ["model"],
            registry=registry,
        )
        self.processing_latency = Histogram(
            "driftline_processing_latency_seconds",
            "Time the engine took to process one batch.",
            buckets=PROCESSING_LATENCY_BUCKETS,
            registry=registry,
        )
        self.commit_latency = Histogram(
            "driftline_commit_latency_seconds",
            "Time from the oldest message of a checkpoint (its Kafka timestamp) until its results were "
            "committed to the database: an upper bound of every message's produce-to-result latency.",
            ["model"],
            buckets=COMMIT_LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "driftline_consumer_lag_messages",
            "Messages in the model's topic not yet consumed by this worker.",
            ["model"],
            registry=registry,
        )
        self.topic_end_offset = Gauge(
            "driftline_topic_end_offset",
            "End offset (messages ever written) of a partition of the model's prediction or label topic, for the "
            "partitions this worker owns: its growth is the producers' rate, whatever the worker's own speed "
            "(the freshness rules in deploy/prometheus sum it over partitions and workers).",
            ["model", "stream", "partition"],
            registry=registry,
        )
        self.labels = Counter(
            "driftline_labels",
            "Labels read from the model's label topic, by what became of them (joined, or why not).",
            ["model", "outcome"],
            registry=registry,
        )
        self.performance = Gauge(
            "driftline_performance",
            "Realised performance of the model's latest window of prediction time with joined labels "
            "(partial until the label horizon has passed over it).",
            ["model", "metric"],
            registry=registry,
        )
        self._performance_latest: dict[str, int] = {}  # by model label: the window start shown
        self.challenger = Gauge(
            "driftline_challenger_accuracy",
            "Accuracy of the production model (champion) and of the online challenger on the same labelled "
            "predictions of the model's latest compared window.",
            ["model", "contender"],
            registry=registry,
        )
        # Counters start at 0 for every known label set, so rate() and increase() see the first events.
        for model in self._model_labels:
            self.events_accepted.labels(model=model)
            self.late_events.labels(model=model)
            for reason in (*sorted(self.rejection_reasons), OTHER):
                self.events_rejected.labels(model=model, reason=reason)
            for kind in (*sorted(self.alert_kinds), OTHER):
                self.alerts.labels(model=model, kind=kind)
                # Every (kind, field) of the model from the start: an incident adds no series.
                for feature in ("", *sorted(self.models.get(model, ())), OTHER):
                    self.active_alerts.labels(model=model, kind=kind, feature=feature).set(0)
                    self._active_series.add((model, kind, feature))
            for outcome in LABEL_OUTCOMES:
                self.labels.labels(model=model, outcome=outcome)

    # -- label bounding -------------------------------------------------------------------------

    def model_label(self, model: str) -> str:
        """``model`` if it is a known model, else ``"other"``."""
        return model if model in self.models else OTHER

    def feature_label(self, model: str, feature: str) -> str:
        """``feature`` if it is a known feature of a known ``model``, else ``"other"``."""
        return feature if feature in self.models.get(model, ()) else OTHER

    def reason_label(self, reason: str) -> str:
        """``reason`` if it is a known rejection reason, else ``"other"``."""
        return reason if reason in self.rejection_reasons else OTHER

    def kind_label(self, kind: str) -> str:
        """``kind`` if it is a known alert kind, else ``"other"``."""
        return kind if kind in self.alert_kinds else OTHER

    # -- updates --------------------------------------------------------------------------------

    def observe(
        self,
        result: BatchResult,
        now_s: float,
        *,
        model: str | None = None,
        processing_seconds: float | None = None,
    ) -> None:
        """Update every metric from one engine result.

        Parameters
        ----------
        result
            What one call into the engine produced.
        now_s
            Processing (wall-clock) time in seconds since the epoch, for the window lag.
        model
            The model the batch's counters (``accepted``, ``rejected_by_reason``, ``late_events``)
            belong to — ``BatchResult`` does not name it. When omitted: the one model named by the
            result's records, else the one configured model, else ``"other"``.
        processing_seconds
            How long the engine took for this batch, for ``driftline_processing_latency_seconds``.
        """
        counter_model = self.model_label(model if model is not None else self._only_model(result))
        self.events_accepted.labels(model=counter_model).inc(result.accepted)
        for reason, count in result.rejected_by_reason.items():
            self.events_rejected.labels(model=counter_model, reason=self.reason_label(reason)).inc(count)
        self.late_events.labels(model=counter_model).inc(result.late_events)
        if processing_seconds is not None:
            self.processing_latency.observe(processing_seconds)

        self._observe_drift_scores(result)
        self._observe_windows(result, now_s)
        self._observe_alerts(result, counter_model)
        self._observe_labels(result, counter_model)

    def observe_commit(self, model: str, seconds: float) -> None:
        """Record one checkpoint's latency (see ``driftline_commit_latency_seconds``)."""
        self.commit_latency.labels(model=self.model_label(model)).observe(seconds)

    def set_consumer_lag(self, model: str, messages: int) -> None:
        """Set ``driftline_consumer_lag_messages`` of ``model`` (called by the worker)."""
        self.consumer_lag.labels(model=self.model_label(model)).set(messages)

    def set_topic_end_offset(self, model: str, stream: str, partition: int, offset: int) -> None:
        """Set ``driftline_topic_end_offset`` of a partition this worker owns (``stream``: ``predictions`` or ``labels``)."""
        self.topic_end_offset.labels(model=self.model_label(model), stream=stream, partition=str(partition)).set(offset)

    def forget_topic_partition(self, model: str, stream: str, partition: int) -> None:
        """Drop a partition's ``driftline_topic_end_offset`` (no longer owned: its next owner reports it)."""
        with contextlib.suppress(KeyError):  # never reported
            self.topic_end_offset.remove(self.model_label(model), stream, str(partition))

    def _only_model(self, result: BatchResult) -> str:
        names = {window.model for window in result.model_windows}
        names.update(window.model for window in result.feature_windows)
        names.update(alert.model for alert in result.alerts)
        if len(names) == 1:
            return names.pop()
        # Most batches close no window and raise no alert: they name no model at all.
        if not names and len(self.models) == 1:
            return next(iter(self.models))
        return OTHER

    def _observe_drift_scores(self, result: BatchResult) -> None:
        # The gauge shows the latest closed window: a window re-emitted late must not move it back.
        # Unknown features share the label "other"; within one window the largest of their values
        # is shown, the conservative choice for alerting.
        changed: set[tuple[str, str, str]] = set()
        for window in result.feature_windows:
            model = self.model_label(window.model)
            feature = self.feature_label(window.model, window.feature)
            for statistic in DRIFT_STATISTICS:
                value = getattr(window, statistic)
                if value is None or math.isnan(value):
                    continue
                key = (model, feature, statistic)
                current = self._drift_latest.get(key)
                if current is not None:
                    if window.window_start_ms < current[0]:
                        continue
                    if window.window_start_ms == current[0] and feature == OTHER:
                        value = max(value, current[1])
                self._drift_latest[key] = (window.window_start_ms, float(value))
                changed.add(key)
        for key in changed:
            model, feature, statistic = key
            self.drift_score.labels(model=model, feature=feature, statistic=statistic).set(self._drift_latest[key][1])

    def _observe_windows(self, result: BatchResult, now_s: float) -> None:
        windows = [(w.model, w.window_start_ms, w.window_length_ms) for w in result.model_windows]
        windows += [(w.model, w.window_start_ms, w.window_length_ms) for w in result.feature_windows]
        for name, start_ms, length_ms in windows:
            model = self.model_label(name)
            end_ms = start_ms + length_ms
            self._last_window_end_ms[model] = max(end_ms, self._last_window_end_ms.get(model, end_ms))
        # Every model, not only those with a new window: a stalled model's lag keeps growing.
        for model, end_ms in self._last_window_end_ms.items():
            self.window_lag.labels(model=model).set(now_s - end_ms / 1000.0)

    def _observe_alerts(self, result: BatchResult, model: str) -> None:
        for alert in result.alerts:
            label = self.model_label(alert.model)
            self._active[alert.alert_id] = _ActiveAlert(label, self.kind_label(alert.kind), self._alert_feature(label, alert.feature))
            # An alert delivered again (a re-processed batch) is counted once.
            if alert.alert_id in self._seen:
                continue
            self._seen[alert.alert_id] = None
            if len(self._seen) > SEEN_ALERTS:
                self._seen.popitem(last=False)
            self.alerts.labels(model=label, kind=self.kind_label(alert.kind)).inc()
        for resolution in result.resolved_alerts:
            self._active.pop(resolution.alert_id, None)
        if result.open_alerts is not None:
            # The engine's own list of the model's open incidents: what counts (e.g. after a restart).
            self._active = {alert_id: active for alert_id, active in self._active.items() if active.model != model}
            for alert_id, kind, feature in result.open_alerts:
                self._active[alert_id] = _ActiveAlert(model, self.kind_label(kind), self._alert_feature(model, feature))
        # Every series ever set stays, at 0 once its incidents resolved (Prometheus then sees the drop).
        counts = dict.fromkeys(self._active_series, 0)
        for active in self._active.values():
            key = (active.model, active.kind, active.feature)
            counts[key] = counts.get(key, 0) + 1
        self._active_series.update(counts)
        for (m, kind, feature), count in counts.items():
            self.active_alerts.labels(model=m, kind=kind, feature=feature).set(count)

    def _alert_feature(self, model: str, feature: str | None) -> str:
        return "" if feature is None else feature if feature in self.models.get(model, ()) else OTHER

    def _observe_labels(self, result: BatchResult, model: str) -> None:
        for key, count in result.label_counts.items():
            outcome = "rejected" if key.startswith("rejected_") else key
            if outcome in LABEL_OUTCOMES and count > 0:
                self.labels.labels(model=model, outcome=outcome).inc(count)
        for window in result.performance_windows:
            name = self.model_label(window.model)
            if window.window_start_ms < self._performance_latest.get(name, window.window_start_ms):
                continue  # labels of an older window: the gauge stays on the latest one
            self._performance_latest[name] = window.window_start_ms
            for metric in PERFORMANCE_METRICS:
                value = getattr(window, metric)
                if value is not None and math.isfinite(value):
                    self.performance.labels(model=name, metric=metric).set(value)
        for compared in result.challenger_windows:  # in time order: the latest is set last
            name = self.model_label(compared.model)
            for contender, value in (("champion", compared.champion_accuracy), ("challenger", compared.challenger_accuracy)):
                if value is not None:
                    self.challenger.labels(model=name, contender=contender).set(value)


def serve(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> int:
    """Serve ``registry`` at ``http://addr:port/metrics`` from a daemon thread; return the bound port.

    Loopback by default: exposing metrics beyond the host is a deployment decision. ``port=0``
    lets the operating system pick a free port; the port actually bound is read back from the
    server's socket (``server.server_port``, i.e. ``getsockname()``), which is why this function
    returns it. The server lives as long as the process.

    Raises
    ------
    OSError
        The address cannot be bound (e.g. the port is taken).
    """
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return int(server.server_port)
