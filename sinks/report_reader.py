"""Reads a model's results back from the tables, for ``driftline report``: the records the engine wrote.

The inverse of :mod:`~driftline.sinks.results_sink` for what a report shows — window aggregates,
model windows (accepted and rejected events), performance per window and the alerts (with their
incidents' ends) — over a time range, read a day of window start at a time so that a long range
reports its progress and never holds a whole table's query open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from driftline.stream.monitor.results import Alert, AlertResolution, FeatureWindow, ModelWindow, PerformanceWindow

from .tables import LIVE_RUN, metadata

__all__ = ["ReportData", "read_report_data"]

DAY = timedelta(days=1)
_QUANTILES = ("p01", "p05", "p25", "p50", "p75", "p95", "p99")


@dataclass
class ReportData:
    """A model's records over a range, as the engine made them."""

    feature_windows: list[FeatureWindow] = field(default_factory=list)
    model_windows: list[ModelWindow] = field(default_factory=list)
    performance_windows: list[PerformanceWindow] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    resolutions: list[AlertResolution] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.feature_windows) + len(self.model_windows) + len(self.performance_windows) + len(self.alerts)


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.astimezone(UTC).timestamp() * 1000)


def _feature_window(row: dict[str, Any]) -> FeatureWindow:
    return FeatureWindow(
        model=row["model"], model_version=row["model_version"], feature=row["feature"], kind=row["kind"],
        window_start_ms=_ms(row["window_start"]) or 0, window_length_ms=row["window_length_seconds"] * 1000, count=row["count"],
        nulls=row["nulls"], non_finite=row["non_finite"], out_of_range=row["out_of_range"], unseen=row["unseen"],
        minimum=row["minimum"], maximum=row["maximum"], mean=row["mean"], variance=row["variance"], psi=row["psi"],
        jensen_shannon=row["jensen_shannon"], ks=row["ks"], wasserstein=row["wasserstein"], psi_threshold=row["psi_threshold"],
        top_items=tuple((str(item["item"]), int(item["count"])) for item in row["top_items"] or ()),
        quantiles={name: row[name] for name in _QUANTILES if row[name] is not None},
    )


def _model_window(row: dict[str, Any]) -> ModelWindow:
    return ModelWindow(
        model=row["model"], model_version=row["model_version"], window_start_ms=_ms(row["window_start"]) or 0,
        window_length_ms=row["window_length_seconds"] * 1000, events=row["events"], accepted=row["accepted"],
        rejected=row["rejected"], rejected_by_reason=tuple(sorted((str(k), int(v)) for k, v in (row["rejected_by_reason"] or {}).items())),
    )


def _performance_window(row: dict[str, Any]) -> PerformanceWindow:
    return PerformanceWindow(
        model=row["model"], task=row["task"], window_start_ms=_ms(row["window_start"]) or 0,
        window_length_ms=row["window_length_seconds"] * 1000, count=row["labelled"], invalid_labels=row["invalid_labels"],
        accuracy=row["accuracy"], precision=row["precision"], recall=row["recall"], f1=row["f1"], log_loss=row["log_loss"],
        true_positives=row["true_positives"], false_positives=row["false_positives"], true_negatives=row["true_negatives"],
        false_negatives=row["false_negatives"], mae=row["mae"], rmse=row["rmse"], predictions=row["predictions"],
        estimated_accuracy=row["estimated_accuracy"], estimated_accuracy_se=row["estimated_accuracy_se"],
        estimated_f1=row["estimated_f1"],
    )


def _alert(row: dict[str, Any]) -> Alert:
    return Alert(
        alert_id=row["alert_id"], model=row["model"], model_version=row["model_version"], kind=row["kind"], feature=row["feature"],
        detector=row["detector"], severity=row["severity"], window_start_ms=_ms(row["window_start"]),
        event_time_ms=_ms(row["event_time"]) or 0, score=float("nan") if row["score"] is None else row["score"],
        threshold=float("nan") if row["threshold"] is None else row["threshold"], message=row["message"],
    )


def read_report_data(
    engine: sa.Engine, model: str, since: datetime, until: datetime, *, progress: Callable[[int, int, int], None] | None = None,
    run: str = LIVE_RUN,
) -> ReportData:
    """The model's records of one run whose window (or, for alerts, event time) starts in ``[since, until)``.

    ``run``: ``live`` (the worker's rows, by default) or a replay's run label. ``progress(days_read,
    days, rows)`` is called after each day read.
    """
    if until <= since:
        raise ValueError(f"until ({until.isoformat()}) must be after since ({since.isoformat()})")
    tables = metadata.tables
    data = ReportData()
    days = max(1, -(-(until - since) // DAY))
    with engine.connect() as connection:
        for day in range(days):
            start, end = since + day * DAY, min(until, since + (day + 1) * DAY)
            def rows(name: str, column: str) -> list[dict[str, Any]]:
                table = tables[name]
                query = sa.select(table).where(table.c.model == model, table.c.run == run,
                                               table.c[column] >= start, table.c[column] < end)  # noqa: B023
                return [dict(row) for row in connection.execute(query.order_by(table.c[column])).mappings()]

            data.feature_windows.extend(_feature_window(row) for row in rows("window_aggregates", "window_start"))
            data.model_windows.extend(_model_window(row) for row in rows("model_windows", "window_start"))
            data.performance_windows.extend(_performance_window(row) for row in rows("performance_windows", "window_start"))
            for row in rows("alerts", "event_time"):
                alert = _alert(row)
                data.alerts.append(alert)
                if row["resolved_at"] is not None:
                    data.resolutions.append(AlertResolution(alert, _ms(row["resolved_at"]) or 0, _ms(row["last_signal_at"]) or 0,
                                                            int(row["signals"] or 0)))
            if progress is not None:
                progress(day + 1, days, data.rows)
    return data
