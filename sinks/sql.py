"""Analysts' tables and the idempotent SQL sink that fills them.

One set of table definitions serves SQLite (the embedded demo) and PostgreSQL (production). The
names of tables, columns, constraints and indexes are part of the analysts' interface and the
base of the Alembic migrations, so they are explicit and stable: primary keys are named by
:data:`NAMING_CONVENTION`, indexes carry their own names.

Conventions of the stored values:

- Times are timezone-aware UTC (``TIMESTAMP WITH TIME ZONE`` on PostgreSQL; ISO text in UTC on
  SQLite, read back as aware datetimes by :class:`UtcDateTime`).
- NaN and ±inf are stored as NULL: PostgreSQL could hold them but SQLite cannot (it turns NaN into
  NULL already), JSON cannot, and analysts' ``avg()``/``max()`` would be poisoned by them.
- Window lengths are whole seconds (``window_length_seconds``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, BigInteger, Boolean, Double, Index, Integer, MetaData, Text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from driftline.stream.results import Alert, BatchResult, FeatureWindow, ModelWindow, SchemaChangeRecord

from .errors import SinkError, UnsupportedDialectError

__all__ = [
    "AlertRow",
    "Base",
    "ModelWindowRow",
    "NAMING_CONVENTION",
    "QUANTILE_COLUMNS",
    "ReferenceProfileRow",
    "SchemaChangeRow",
    "SqlSink",
    "UtcDateTime",
    "WindowAggregateRow",
    "metadata",
]

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Quantile columns of ``window_aggregates`` and the probability each one holds.
QUANTILE_COLUMNS: dict[str, float] = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SUPPORTED_DIALECTS = ("sqlite", "postgresql")

# JSONB on PostgreSQL so analysts can index and query into it; plain JSON (text) on SQLite.
_JSON = JSON().with_variant(postgresql.JSONB(), "postgresql")


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every dialect.

    SQLite has no time zones: SQLAlchemy drops the offset when writing and returns naive values.
    Converting to UTC on the way in and attaching UTC on the way out makes both dialects return
    the same aware values. Naive datetimes are refused because their zone would be a guess.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: driftline stores timezone-aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the driftline tables; its ``metadata`` is what Alembic migrates."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


class WindowAggregateRow(Base):
    """One feature (or prediction field) of one model version over one closed window."""

    __tablename__ = "window_aggregates"
    __table_args__ = (
        # Drift history of one feature: WHERE model = ? AND feature = ? ORDER BY window_start.
        Index("ix_window_aggregates_model_feature_window_start", "model", "feature", "window_start"),
    )

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    model_version: Mapped[str] = mapped_column(Text, primary_key=True)
    feature: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    window_length_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(BigInteger)
    nulls: Mapped[int] = mapped_column(BigInteger)
    non_finite: Mapped[int] = mapped_column(BigInteger)
    out_of_range: Mapped[int] = mapped_column(BigInteger)
    unseen: Mapped[int] = mapped_column(BigInteger)
    minimum: Mapped[float | None] = mapped_column(Double)
    maximum: Mapped[float | None] = mapped_column(Double)
    mean: Mapped[float | None] = mapped_column(Double)
    variance: Mapped[float | None] = mapped_column(Double)
    p01: Mapped[float | None] = mapped_column(Double)
    p05: Mapped[float | None] = mapped_column(Double)
    p25: Mapped[float | None] = mapped_column(Double)
    p50: Mapped[float | None] = mapped_column(Double)
    p75: Mapped[float | None] = mapped_column(Double)
    p95: Mapped[float | None] = mapped_column(Double)
    p99: Mapped[float | None] = mapped_column(Double)
    psi: Mapped[float | None] = mapped_column(Double)
    psi_threshold: Mapped[float | None] = mapped_column(Double)
    jensen_shannon: Mapped[float | None] = mapped_column(Double)
    ks: Mapped[float | None] = mapped_column(Double)
    wasserstein: Mapped[float | None] = mapped_column(Double)
    # [{"item": "...", "count": n}, ...] most frequent first (categorical features only).
    top_items: Mapped[list[dict[str, Any]]] = mapped_column(_JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ModelWindowRow(Base):
    """Event counts of one model version over one closed window."""

    __tablename__ = "model_windows"

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    model_version: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    window_length_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    events: Mapped[int] = mapped_column(BigInteger)
    accepted: Mapped[int] = mapped_column(BigInteger)
    rejected: Mapped[int] = mapped_column(BigInteger)
    # {"reason": count, ...}
    rejected_by_reason: Mapped[dict[str, int]] = mapped_column(_JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AlertRow(Base):
    """An alert; ``alert_id`` is derived from its natural key, so re-processing upserts it."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_event_time", "event_time"),
        Index("ix_alerts_model_kind_event_time", "model", "kind", "event_time"),
    )

    alert_id: Mapped[str] = mapped_column(Text, primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    feature: Mapped[str | None] = mapped_column(Text)
    detector: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(Text)
    window_start: Mapped[datetime | None] = mapped_column(UtcDateTime())
    event_time: Mapped[datetime] = mapped_column(UtcDateTime())
    score: Mapped[float | None] = mapped_column(Double)
    threshold: Mapped[float | None] = mapped_column(Double)
    message: Mapped[str] = mapped_column(Text)
    # When driftline first wrote the alert; kept on re-processing.
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SchemaChangeRow(Base):
    """A writer schema that differs from a model's contract."""

    __tablename__ = "schema_changes"

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    writer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    compatible: Mapped[bool] = mapped_column(Boolean)
    missing_fields: Mapped[list[str]] = mapped_column(_JSON)
    new_fields: Mapped[list[str]] = mapped_column(_JSON)
    type_changes: Mapped[list[str]] = mapped_column(_JSON)
    description: Mapped[str] = mapped_column(Text)
    # The earliest event time seen for this writer, over every run that reported it.
    first_seen_event_time: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ReferenceProfileRow(Base):
    """The reference profile (training-data distribution) of one model version, as JSON text."""

    __tablename__ = "reference_profiles"

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    model_version: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Text, not JSON(B): the profile is returned byte-for-byte as it was saved.
    profile: Mapped[str] = mapped_column(Text)


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
            try:
                name = by_probability.get(round(float(key), 6))
            except ValueError:
                pass
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


def _primary_key(table: sa.Table) -> tuple[str, ...]:
    return tuple(column.name for column in table.primary_key.columns)


class SqlSink:
    """Buffers engine results and upserts them into the analysts' tables.

    ``add()`` only buffers; ``flush()`` writes everything buffered in one transaction with
    ``INSERT … ON CONFLICT DO UPDATE`` on the natural keys, so writing the same results again
    (at-least-once delivery, a replay) leaves the tables as they were — apart from
    ``updated_at``, which records the last write. Buffers are cleared in ``finally``: after a
    failed flush the caller must not commit its input offsets, and re-processes from them.

    Parameters
    ----------
    engine
        A SQLAlchemy engine on SQLite or PostgreSQL.
    clock
        Returns the current time (aware) for ``updated_at`` / ``created_at``; injectable so
        tests and replays can be reproducible. Defaults to ``datetime.now(UTC)``.

    Raises
    ------
    UnsupportedDialectError
        The engine's dialect is neither ``sqlite`` nor ``postgresql``.

    Examples
    --------
    >>> import sqlalchemy
    >>> sink = SqlSink(sqlalchemy.create_engine("sqlite://"))
    >>> sink.create_schema()
    >>> sink.save_reference_profile("churn", "v1", '{"features": {}}')
    >>> sink.load_reference_profile("churn", "v1")
    '{"features": {}}'
    """

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        dialect = engine.dialect.name
        if dialect not in _SUPPORTED_DIALECTS:
            raise UnsupportedDialectError(
                f"engine: unsupported SQL dialect {dialect!r}; driftline's SQL sink supports "
                f"{' and '.join(_SUPPORTED_DIALECTS)} (it needs INSERT ... ON CONFLICT DO UPDATE)"
            )
        self.engine = engine
        self.clock = clock if clock is not None else (lambda: datetime.now(UTC))
        # Keyed by natural key: a record added twice before a flush is written once (the later
        # one wins), which PostgreSQL requires — one INSERT may not touch the same row twice.
        self._buffers: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {
            table.name: {} for table in self._upsert_tables()
        }

    @staticmethod
    def _upsert_tables() -> tuple[sa.Table, ...]:
        return (
            WindowAggregateRow.__table__,  # type: ignore[return-value]
            ModelWindowRow.__table__,
            AlertRow.__table__,
            SchemaChangeRow.__table__,
        )

    # -- schema --------------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create the tables and indexes that do not exist yet (embedded mode; production uses Alembic)."""
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise SinkError(f"could not create the driftline tables: {exc}") from exc

    # -- buffered writes -----------------------------------------------------------------------

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
        }
        for table_name, table_rows in rows.items():
            key_columns = _primary_key(metadata.tables[table_name])
            buffer = self._buffers[table_name]
            for row in table_rows:
                buffer[tuple(row[name] for name in key_columns)] = row

    @property
    def buffered(self) -> int:
        """Number of rows waiting for :meth:`flush`."""
        return sum(len(buffer) for buffer in self._buffers.values())

    def flush(self) -> None:
        """Write every buffered row in one transaction, then clear the buffers (also on failure).

        Raises
        ------
        SinkError
            The database refused the write; nothing of this flush was committed.
        """
        try:
            if not self.buffered:
                return
            now = self.clock()
            with self.engine.begin() as connection:
                for table in self._upsert_tables():
                    buffer = self._buffers[table.name]
                    if not buffer:
                        continue
                    # Sorted by key: concurrent workers then lock rows in the same order (no
                    # deadlocks on PostgreSQL), and the write order does not depend on arrival.
                    rows = [self._stamp(table, buffer[key], now) for key in sorted(buffer)]
                    # One statement, many parameter sets: the driver runs it as executemany.
                    connection.execute(self._upsert(table), rows)
        except SQLAlchemyError as exc:
            raise SinkError(f"could not write driftline results to {self.engine.dialect.name}: {exc}") from exc
        finally:
            for buffer in self._buffers.values():
                buffer.clear()

    @staticmethod
    def _stamp(table: sa.Table, row: dict[str, Any], now: datetime) -> dict[str, Any]:
        stamped = dict(row)
        for column in ("updated_at", "created_at"):
            if column in table.columns:
                stamped[column] = now
        return stamped

    def _insert(self, table: sa.Table) -> Any:
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _upsert(self, table: sa.Table) -> Any:
        statement = self._insert(table)
        excluded = statement.excluded
        keys = set(_primary_key(table))
        updates: dict[str, Any] = {}
        for column in table.columns:
            if column.name in keys or column.name == "created_at":
                continue  # created_at records the first write
            updates[column.name] = excluded[column.name]
        if table.name == SchemaChangeRow.__tablename__:
            # Keep the earliest sighting; NULL means "unknown", so either side wins over it.
            current = table.c.first_seen_event_time
            incoming = excluded.first_seen_event_time
            updates["first_seen_event_time"] = sa.case(
                (current.is_(None), incoming),
                (incoming.is_(None), current),
                (incoming < current, incoming),
                else_=current,
            )
        return statement.on_conflict_do_update(index_elements=list(_primary_key(table)), set_=updates)

    # -- reference profiles --------------------------------------------------------------------

    def save_reference_profile(self, model: str, model_version: str, profile_json: str) -> None:
        """Store (or replace) the reference profile of ``model`` at ``model_version``.

        Raises
        ------
        ValueError
            ``profile_json`` is not valid JSON.
        SinkError
            The database refused the write.
        """
        try:
            json.loads(profile_json)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"profile_json is not valid JSON: {exc}") from exc
        table: sa.Table = ReferenceProfileRow.__table__  # type: ignore[assignment]
        statement = self._insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=["model", "model_version"],
            set_={"profile": statement.excluded.profile, "created_at": statement.excluded.created_at},
        )
        row = {"model": model, "model_version": model_version, "created_at": self.clock(), "profile": profile_json}
        try:
            with self.engine.begin() as connection:
                connection.execute(statement, row)
        except SQLAlchemyError as exc:
            raise SinkError(f"could not save the reference profile of {model} {model_version}: {exc}") from exc

    def load_reference_profile(self, model: str, model_version: str) -> str | None:
        """The saved profile JSON of ``model`` at ``model_version``, or None if there is none."""
        table: sa.Table = ReferenceProfileRow.__table__  # type: ignore[assignment]
        query = sa.select(table.c.profile).where(table.c.model == model, table.c.model_version == model_version)
        try:
            with self.engine.connect() as connection:
                profile: str | None = connection.execute(query).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise SinkError(f"could not load the reference profile of {model} {model_version}: {exc}") from exc
        return profile

