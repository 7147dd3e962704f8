"""driftline's tables: one set of definitions for SQLite (the embedded demo) and PostgreSQL (production).

The names of tables, columns, constraints and indexes are part of the analysts' interface (documented
in README.md, "Database") and the base of the Alembic migrations in ``sinks/migrations``, so they
are explicit and stable: primary keys and checks are named by :data:`NAMING_CONVENTION`, indexes
carry their own names. The migrations spell their operations out instead of reading
:data:`metadata`, so a later change to these classes needs a new revision (a test compares both).

Conventions of the stored values:

- Times are timezone-aware UTC (``TIMESTAMP WITH TIME ZONE`` on PostgreSQL; ISO text in UTC on
  SQLite, read back as aware datetimes by :class:`UtcDateTime`).
- NaN and ±inf are stored as NULL: PostgreSQL could hold them but SQLite cannot (it turns NaN into
  NULL already), JSON cannot, and analysts' ``avg()``/``max()`` would be poisoned by them.
- Window lengths are whole seconds (``window_length_seconds``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, BigInteger, Boolean, CheckConstraint, Double, Index, Integer, LargeBinary, MetaData, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "LIVE_RUN",
    "NAMING_CONVENTION",
    "QUANTILE_COLUMNS",
    "RESULT_TABLES",
    "AlertRow",
    "Base",
    "ChallengerWindowRow",
    "CheckpointRow",
    "CheckpointSnapshotRow",
    "ModelWindowRow",
    "PerformanceWindowRow",
    "ReferenceProfileRow",
    "SchemaChangeRow",
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

#: The run label of what the worker (and the demo) writes; a replay writes under a label of its own.
LIVE_RUN = "live"

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
        # Drift history of one feature: WHERE model = ? AND feature = ? ORDER BY window_start
        # (over every model version; the primary key needs the version first).
        Index("ix_window_aggregates_model_feature_window_start", "model", "feature", "window_start"),
        # Fleet-wide recent windows: WHERE window_start >= now() - interval '1 day' (top drift).
        Index("ix_window_aggregates_window_start", "window_start"),
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
    # Which run wrote the row: ``live`` for the worker (and the demo), a replay's own label otherwise (migration 0006).
    run: Mapped[str] = mapped_column(Text, primary_key=True, server_default=sa.text("'live'"))


class ModelWindowRow(Base):
    """Event counts of one model version over one closed window."""

    __tablename__ = "model_windows"
    __table_args__ = (
        # Rejection rate of a model over time, all versions: WHERE model = ? AND window_start >= ?.
        Index("ix_model_windows_model_window_start", "model", "window_start"),
    )

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
    # Which run wrote the row: ``live`` for the worker (and the demo), a replay's own label otherwise (migration 0006).
    run: Mapped[str] = mapped_column(Text, primary_key=True, server_default=sa.text("'live'"))


class PerformanceWindowRow(Base):
    """Realised performance of one model over one window of prediction event time, from its labels so far."""

    __tablename__ = "performance_windows"

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    window_length_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(Text)
    labelled: Mapped[int] = mapped_column(BigInteger)
    invalid_labels: Mapped[int] = mapped_column(BigInteger)
    accuracy: Mapped[float | None] = mapped_column(Double, nullable=True)
    precision: Mapped[float | None] = mapped_column(Double, nullable=True)
    recall: Mapped[float | None] = mapped_column(Double, nullable=True)
    f1: Mapped[float | None] = mapped_column(Double, nullable=True)
    log_loss: Mapped[float | None] = mapped_column(Double, nullable=True)
    true_positives: Mapped[int] = mapped_column(BigInteger)
    false_positives: Mapped[int] = mapped_column(BigInteger)
    true_negatives: Mapped[int] = mapped_column(BigInteger)
    false_negatives: Mapped[int] = mapped_column(BigInteger)
    mae: Mapped[float | None] = mapped_column(Double, nullable=True)
    rmse: Mapped[float | None] = mapped_column(Double, nullable=True)
    predictions: Mapped[int] = mapped_column(BigInteger)
    estimated_accuracy: Mapped[float | None] = mapped_column(Double, nullable=True)
    estimated_accuracy_se: Mapped[float | None] = mapped_column(Double, nullable=True)
    estimated_f1: Mapped[float | None] = mapped_column(Double, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Which run wrote the row: ``live`` for the worker (and the demo), a replay's own label otherwise (migration 0006).
    run: Mapped[str] = mapped_column(Text, primary_key=True, server_default=sa.text("'live'"))


class ChallengerWindowRow(Base):
    """The online challenger against the production model on one window's labelled predictions (McNemar)."""

    __tablename__ = "challenger_windows"

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    window_length_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    compared: Mapped[int] = mapped_column(BigInteger)
    champion_accuracy: Mapped[float | None] = mapped_column(Double, nullable=True)
    challenger_accuracy: Mapped[float | None] = mapped_column(Double, nullable=True)
    champion_only: Mapped[int] = mapped_column(BigInteger)
    challenger_only: Mapped[int] = mapped_column(BigInteger)
    p_value: Mapped[float] = mapped_column(Double)
    alpha: Mapped[float] = mapped_column(Double)
    challenger_better: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Which run wrote the row: ``live`` for the worker (and the demo), a replay's own label otherwise (migration 0006).
    run: Mapped[str] = mapped_column(Text, primary_key=True, server_default=sa.text("'live'"))


class AlertRow(Base):
    """An alert; ``alert_id`` is derived from its natural key, so re-processing upserts it."""

    __tablename__ = "alerts"
    __table_args__ = (
        # On-call's feed, every model: WHERE event_time >= ? ORDER BY event_time DESC.
        Index("ix_alerts_event_time", "event_time"),
        # One model's alerts over a time range (any kind or severity, filtered after the range).
        Index("ix_alerts_model_event_time", "model", "event_time"),
        # Fleet-wide by kind and severity: WHERE kind = ? AND severity = ? AND event_time >= ?.
        Index("ix_alerts_kind_severity_event_time", "kind", "severity", "event_time"),
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
    # The incident the alert opened: NULL while it is open (migration 0005).
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_signal_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    signals: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Which run wrote the row: ``live`` for the worker (and the demo), a replay's own label otherwise (migration 0006).
    run: Mapped[str] = mapped_column(Text, primary_key=True, server_default=sa.text("'live'"))


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
    # Which run wrote the row: ``live`` for the worker (and the demo), a replay's own label otherwise (migration 0006).
    run: Mapped[str] = mapped_column(Text, primary_key=True, server_default=sa.text("'live'"))


class ReferenceProfileRow(Base):
    """The reference profile (training-data distribution) of one model version, as JSON text."""

    __tablename__ = "reference_profiles"

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    model_version: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Text, not JSON(B): the profile is returned byte-for-byte as it was saved.
    profile: Mapped[str] = mapped_column(Text)


class CheckpointRow(Base):
    """Where a worker is in one partition, written in the transaction of the results up to there.

    A restarted worker resumes from ``next_offset`` with the engine restored from ``engine_state``,
    so every event counts once in the tables however often Kafka redelivers it.
    """

    __tablename__ = "checkpoints"
    __table_args__ = (
        CheckConstraint("next_offset >= 0", name="next_offset_not_negative"),
        CheckConstraint(
            "accepted >= 0 AND dead_lettered >= 0 AND consumed = accepted + dead_lettered",
            name="counts_reconcile",
        ),
    )

    consumer_group: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The offset of the first message not yet reflected in the tables.
    next_offset: Mapped[int] = mapped_column(BigInteger)
    # zlib (RFC 1950) of the UTF-8 JSON of MonitorEngine.to_state(); hundreds of KB uncompressed.
    engine_state: Mapped[bytes] = mapped_column(LargeBinary)
    consumed: Mapped[int] = mapped_column(BigInteger)
    accepted: Mapped[int] = mapped_column(BigInteger)
    dead_lettered: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CheckpointSnapshotRow(Base):
    """A copy of a checkpoint kept for replays (migration 0006): where a partition's runner was, and its state then.

    The worker keeps one about every hour (``--snapshot-interval``) for a week (``--snapshot-retention``);
    ``driftline replay`` into the live run starts from the latest one at or before its ``--from``, so it
    computes exactly what the live run computed from there.
    """

    __tablename__ = "checkpoint_snapshots"

    consumer_group: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # As in ``checkpoints``: zlib of the UTF-8 JSON of the runner's state.
    engine_state: Mapped[bytes] = mapped_column(LargeBinary)
    consumed: Mapped[int] = mapped_column(BigInteger)
    accepted: Mapped[int] = mapped_column(BigInteger)
    dead_lettered: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


#: The tables a run writes its results to, each keyed by its natural key and the ``run`` label.
RESULT_TABLES: tuple[str, ...] = (
    WindowAggregateRow.__tablename__,
    ModelWindowRow.__tablename__,
    AlertRow.__tablename__,
    SchemaChangeRow.__tablename__,
    PerformanceWindowRow.__tablename__,
    ChallengerWindowRow.__tablename__,
)
