"""The idempotent SQL results sink: window aggregates, model windows, alerts, schema changes and performance.

``add()`` buffers the records of engine results; ``write(connection)`` upserts them inside a caller's
transaction (the checkpoint store writes them with its checkpoint), ``flush()`` in one of its own.
Writes are ``INSERT … ON CONFLICT DO UPDATE`` on the natural keys (and the run label), and a row whose
values are already the stored ones is not updated at all, so writing the same results again
(at-least-once delivery, a replay) leaves the tables exactly as they were, ``updated_at`` included.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from driftline.stream.monitor.results import (
    Alert,
    BatchResult,
    ChallengerWindow,
    FeatureWindow,
    ModelWindow,
    PerformanceWindow,
    SchemaChangeRecord,
)

from .database import display_url
from .errors import SinkError
from .sql_statements import SqlStore, check_run_label, resolve_alerts, stamp, upsert
from .tables import (
    LIVE_RUN,
    QUANTILE_COLUMNS,
    RESULT_TABLES,
    AlertRow,
    ChallengerWindowRow,
    ModelWindowRow,
    PerformanceWindowRow,
    SchemaChangeRow,
    WindowAggregateRow,
    metadata,
)

__all__ = ["SqlResultsSink"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc_from_ms(milliseconds: int | None) -> datetime | None:
    # Integer timedelta arithmetic: exact, unlike datetime.fromtimestamp(ms / 1000).
    return None if milliseconds is None else _EPOCH + timedelta(milliseconds=int(milliseconds))


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _whole_seconds(window_length_ms: int) -> int:
    if window_length_ms <= 0 or window_length_ms % 1000:
        raise ValueError(
            f"window_length_ms={window_length_ms}: the SQL sink stores window lengths as whole seconds"
        )
    return window_length_ms // 1000


def _quantile_columns(quantiles: Mapping[str, float]) -> dict[str, float | None]:
    """Map sketch quantiles to the ``pNN`` columns.

    Keys may be the column names (``"p05"``) or the probability (``"0.05"``); other keys are not
    stored (the table has a fixed set of quantile columns).
    """
    by_probability = {probability: name for name, probability in QUANTILE_COLUMNS.items()}
    columns: dict[str, float | None] = dict.fromkeys(QUANTILE_COLUMNS)
    for key, value in quantiles.items():
        name: str | None = key if key in QUANTILE_COLUMNS else None
        if name is None:
            with contextlib.suppress(ValueError):
                name = by_probability.get(round(float(key), 6))
        if name is not None:
            columns[name] = _finite(value)
    return columns


def _window_aggregate_row(window: FeatureWindow) -> dict[str, Any]:
    return {
        "model": window.model,
        "model_version": window.model_version,
        "feature": window.feature,
        "window_start": _utc_from_ms(window.window_start_ms),
        "window_length_seconds": _whole_seconds(window.window_length_ms),
        "kind": window.kind,
        "count": int(window.count),
        "nulls": int(window.nulls),
        "non_finite": int(window.non_finite),
        "out_of_range": int(window.out_of_range),
        "unseen": int(window.unseen),
        "minimum": _finite(window.minimum),
        "maximum": _finite(window.maximum),
        "mean": _finite(window.mean),
        "variance": _finite(window.variance),
        **_quantile_columns(window.quantiles),
        "psi": _finite(window.psi),
        "psi_threshold": _finite(window.psi_threshold),
        "jensen_shannon": _finite(window.jensen_shannon),
        "ks": _finite(window.ks),
        "wasserstein": _finite(window.wasserstein),
        "top_items": [{"item": str(item), "count": int(count)} for item, count in window.top_items],
    }


def _model_window_row(window: ModelWindow) -> dict[str, Any]:
    return {
        "model": window.model,
        "model_version": window.model_version,
        "window_start": _utc_from_ms(window.window_start_ms),
        "window_length_seconds": _whole_seconds(window.window_length_ms),
        "events": int(window.events),
        "accepted": int(window.accepted),
        "rejected": int(window.rejected),
        "rejected_by_reason": {str(reason): int(count) for reason, count in window.rejected_by_reason},
    }


def _challenger_window_row(window: ChallengerWindow) -> dict[str, Any]:
    return {
        "model": window.model,
        "window_start": _utc_from_ms(window.window_start_ms),
        "window_length_seconds": _whole_seconds(window.window_length_ms),
        "compared": int(window.count),
        "champion_accuracy": _finite(window.champion_accuracy),
        "challenger_accuracy": _finite(window.challenger_accuracy),
        "champion_only": int(window.champion_only),
        "challenger_only": int(window.challenger_only),
        "p_value": float(window.p_value),
        "alpha": float(window.alpha),
        "challenger_better": bool(window.challenger_better),
    }


def _performance_window_row(window: PerformanceWindow) -> dict[str, Any]:
    return {
        "model": window.model,
        "window_start": _utc_from_ms(window.window_start_ms),
        "window_length_seconds": _whole_seconds(window.window_length_ms),
        "task": window.task,
        "labelled": int(window.count),
        "invalid_labels": int(window.invalid_labels),
        "accuracy": _finite(window.accuracy),
        "precision": _finite(window.precision),
        "recall": _finite(window.recall),
        "f1": _finite(window.f1),
        "log_loss": _finite(window.log_loss),
        "true_positives": int(window.true_positives),
        "false_positives": int(window.false_positives),
        "true_negatives": int(window.true_negatives),
        "false_negatives": int(window.false_negatives),
        "mae": _finite(window.mae),
        "rmse": _finite(window.rmse),
        "predictions": int(window.predictions),
        "estimated_accuracy": _finite(window.estimated_accuracy),
        "estimated_accuracy_se": _finite(window.estimated_accuracy_se),
        "estimated_f1": _finite(window.estimated_f1),
    }


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "model": alert.model,
        "model_version": alert.model_version,
        "kind": alert.kind,
        "feature": alert.feature,
        "detector": alert.detector,
        "severity": alert.severity,
        "window_start": _utc_from_ms(alert.window_start_ms),
        "event_time": _utc_from_ms(alert.event_time_ms),
        "score": _finite(alert.score),
        "threshold": _finite(alert.threshold),
        "message": alert.message,
    }


def _schema_change_row(change: SchemaChangeRecord) -> dict[str, Any]:
    return {
        "model": change.model,
        "writer_id": change.writer_id,
        "compatible": bool(change.compatible),
        "missing_fields": list(change.missing_fields),
        "new_fields": list(change.new_fields),
        "type_changes": list(change.type_changes),
        "description": change.description,
        "first_seen_event_time": _utc_from_ms(change.first_seen_event_time_ms),
    }



# The result tables, in write order (metadata holds them as sa.Table).
_TABLES: tuple[sa.Table, ...] = tuple(metadata.tables[name] for name in RESULT_TABLES)


class SqlResultsSink(SqlStore):
    """Buffers engine results and upserts them into driftline's tables.

    Buffers are cleared in ``finally``: after a failed write the caller must not commit its input
    offsets, and re-processes from them.

    Constructed with an engine and an optional clock (see :class:`~driftline.sinks.sql_statements.SqlStore`),
    and the ``run`` label every row is written under (``live``, what the worker writes, by default;
    a replay's own label keeps its rows beside the live ones).

    Raises
    ------
    ValueError
        ``run`` is empty or not a plain label (letters, digits, ``.``, ``_``, ``-``, ``:``, up to 64).
    """

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] | None = None, run: str = LIVE_RUN) -> None:
        super().__init__(engine, clock=clock)
        self.run = check_run_label(run)
        # Keyed by natural key: a record added twice before a write is written once (the later
        # one wins), which PostgreSQL requires — one INSERT may not touch the same row twice.
        self._buffers: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {table.name: {} for table in _TABLES}
        self._resolutions: dict[str, dict[str, Any]] = {}  # alert id -> its incident's end

    def add(self, result: BatchResult) -> None:
        """Buffer the window aggregates, model windows, alerts and schema changes of ``result``.

        Detector signals and the batch counters are not stored (alerts and windows are).

        Raises
        ------
        ValueError
            A window length is not a whole number of seconds; nothing of ``result`` is buffered.
        """
        # Convert everything before buffering anything, so a bad record leaves the buffers as they were.
        rows = {
            WindowAggregateRow.__tablename__: [_window_aggregate_row(w) for w in result.feature_windows],
            ModelWindowRow.__tablename__: [_model_window_row(w) for w in result.model_windows],
            AlertRow.__tablename__: [_alert_row(a) for a in result.alerts],
            SchemaChangeRow.__tablename__: [_schema_change_row(c) for c in result.schema_changes],
            PerformanceWindowRow.__tablename__: [_performance_window_row(w) for w in result.performance_windows],
            ChallengerWindowRow.__tablename__: [_challenger_window_row(w) for w in result.challenger_windows],
        }
        for table_name, table_rows in rows.items():
            key_columns = [c.name for c in metadata.tables[table_name].primary_key.columns]
            buffer = self._buffers[table_name]
            for row in table_rows:
                row["run"] = self.run
                buffer[tuple(row[name] for name in key_columns)] = row
        for resolution in result.resolved_alerts:
            self._resolutions[resolution.alert_id] = {
                "b_alert_id": resolution.alert_id, "b_run": self.run, "b_resolved_at": _utc_from_ms(resolution.resolved_at_ms),
                "b_last_signal_at": _utc_from_ms(resolution.last_signal_ms), "b_signals": resolution.signals,
            }

    @property
    def buffered(self) -> int:
        """Number of rows waiting to be written."""
        return sum(len(buffer) for buffer in self._buffers.values()) + len(self._resolutions)

    def write(self, connection: sa.Connection, *, now: datetime | None = None) -> None:
        """Upsert every buffered row inside the caller's transaction on ``connection``, then clear the buffers.

        ``now`` stamps ``updated_at`` / ``created_at`` (default: the sink's clock).

        Raises
        ------
        SQLAlchemyError
            The database refused the write (the caller's transaction decides what happens). The
            buffers are cleared also then.
        """
        try:
            now = self.clock() if now is None else now
            for table in _TABLES:
                buffer = self._buffers[table.name]
                if not buffer:
                    continue
                # Sorted by key: concurrent workers then lock rows in the same order (no
                # deadlocks on PostgreSQL), and the write order does not depend on arrival.
                rows = [stamp(table, buffer[key], now) for key in sorted(buffer)]
                # One statement, many parameter sets: the driver runs it as executemany.
                connection.execute(upsert(connection.dialect.name, table), rows)
            if self._resolutions:  # after the alerts: an incident may open and resolve in one write
                connection.execute(resolve_alerts(metadata.tables[AlertRow.__tablename__]), [self._resolutions[k] for k in sorted(self._resolutions)])
        finally:
            self.clear()

    def flush(self) -> None:
        """Write every buffered row in one transaction of its own, then clear the buffers.

        Raises
        ------
        SinkError
            The database refused the write or the connection failed: nothing was committed.
        """
        if not self.buffered:
            return
        try:
            with self.engine.begin() as connection:
                self.write(connection)
        except SQLAlchemyError as exc:
            raise SinkError(f"could not write driftline results to {display_url(self.engine.url)}: {exc}") from exc
        finally:
            self.clear()

    def clear(self) -> None:
        """Drop every buffered row."""
        for buffer in self._buffers.values():
            buffer.clear()
        self._resolutions.clear()
