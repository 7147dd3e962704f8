"""driftline's database: the analysts' tables, the engine that reaches them, and their migrations.

One set of table definitions serves SQLite (the embedded demo) and PostgreSQL (production). The
names of tables, columns, constraints and indexes are part of the analysts' interface (documented
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

Examples
--------
>>> import tempfile, pathlib
>>> url = f"sqlite:///{pathlib.Path(tempfile.mkdtemp()) / 'driftline.sqlite'}"
>>> current_revision(url) is None
True
>>> upgrade_database(url)
>>> current_revision(url) == head_revision()
True
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import JSON, BigInteger, Boolean, CheckConstraint, Double, Index, Integer, LargeBinary, MetaData, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .errors import SinkError, UnsupportedDialectError

__all__ = [
    "AlertRow",
    "Base",
    "CheckpointRow",
    "MIGRATIONS_DIRECTORY",
    "ModelWindowRow",
    "NAMING_CONVENTION",
    "QUANTILE_COLUMNS",
    "ReferenceProfileRow",
    "SUPPORTED_DIALECTS",
    "SchemaChangeRow",
    "UtcDateTime",
    "VERSION_TABLE",
    "WindowAggregateRow",
    "create_database_engine",
    "current_revision",
    "display_url",
    "head_revision",
    "metadata",
    "upgrade_database",
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

#: Dialects the sink can write to (it needs ``INSERT … ON CONFLICT DO UPDATE``).
SUPPORTED_DIALECTS = ("sqlite", "postgresql")

#: The Alembic migration scripts, shipped inside the package (no alembic.ini needed).
MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent / "migrations"

#: Alembic's bookkeeping table. Not the default ``alembic_version``: driftline's tables may share a
#: database schema with another application that uses Alembic, and the two must not overwrite
#: each other's revision.
VERSION_TABLE = "driftline_alembic_version"

# JSONB on PostgreSQL so analysts can index and query into it; plain JSON (text) on SQLite.
_JSON = JSON().with_variant(postgresql.JSONB(), "postgresql")

# Any constant: serialises concurrent ``upgrade_database`` calls (several workers starting at once).
_MIGRATION_LOCK_KEY = 0x64726966746C696E  # "driftlin"
# Alembic's ``context`` and ``op`` are process-wide proxies: one migration at a time per process.
_ALEMBIC_LOCK = threading.Lock()


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


# ---------------------------------------------------------------------------- engine and migrations


def display_url(database_url: str | sa.URL) -> str:
    """``database_url`` with its password masked, for messages and logs.

    >>> display_url("postgresql+psycopg://driftline:s3cret@db:5432/driftline")
    'postgresql+psycopg://driftline:***@db:5432/driftline'
    """
    try:
        return sa.make_url(database_url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<unparsable database URL>"


def create_database_engine(database_url: str, **engine_options: Any) -> sa.Engine:
    """A SQLAlchemy engine for ``database_url`` (SQLite or PostgreSQL), connecting lazily.

    ``postgresql://`` and ``postgres://`` URLs use psycopg 3 (``postgresql+psycopg://``), the
    driver driftline depends on. PostgreSQL connections are checked before use, so a restarted
    server costs a reconnect instead of a failed flush.

    Parameters
    ----------
    database_url
        An SQLAlchemy URL, e.g. ``postgresql+psycopg://driftline@127.0.0.1:5432/driftline`` or
        ``sqlite:///driftline.sqlite``. A libpq ``options`` query parameter
        (``?options=-csearch_path%3Ddriftline``) selects a PostgreSQL schema other than ``public``.
    **engine_options
        Passed to :func:`sqlalchemy.create_engine`.

    Raises
    ------
    ValueError
        ``database_url`` is not an SQLAlchemy URL (the message leaves the URL out: it may hold a password).
    UnsupportedDialectError
        The URL names a database other than SQLite or PostgreSQL.
    SinkError
        The URL's driver is not installed.
    """
    try:
        url = sa.make_url(database_url)
    except (SQLAlchemyError, ValueError):
        # ``from None``: the parser's message or traceback could carry the password.
        raise ValueError(
            "database_url: not an SQLAlchemy URL (dialect+driver://user:password@host:port/database)"
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in SUPPORTED_DIALECTS:
        raise UnsupportedDialectError(
            f"database_url: unsupported database {url.get_backend_name()!r} in {display_url(url)}; "
            f"driftline supports {' and '.join(SUPPORTED_DIALECTS)}"
        )
    if url.get_backend_name() == "postgresql":
        engine_options.setdefault("pool_pre_ping", True)
    try:
        return sa.create_engine(url, **engine_options)
    except (SQLAlchemyError, ImportError) as exc:
        raise SinkError(f"could not create a database engine for {display_url(url)}: {exc}") from exc


def _alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    # ConfigParser interpolation would read a "%" in the path as a placeholder.
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY).replace("%", "%%"))
    # The URL is never put into the config (a password could end up in a log); env.py uses this.
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the migrations shipped with this version of driftline."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise SinkError(f"no migration revision in {MIGRATIONS_DIRECTORY}: the installation is incomplete")
    return head


def _current_revision(connection: sa.Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def current_revision(database: str | sa.Engine) -> str | None:
    """The migration revision the database is at; ``None`` if never migrated.

    ``database`` is a URL (see :func:`create_database_engine`; the engine made for it is disposed
    afterwards) or an engine the caller already has and keeps.

    Raises
    ------
    SinkError
        The database could not be reached or read.
    """
    engine = create_database_engine(database) if isinstance(database, str) else database
    try:
        with engine.connect() as connection:
            return _current_revision(connection)
    except SQLAlchemyError as exc:
        raise SinkError(f"could not read the schema revision of {display_url(engine.url)}: {exc}") from exc
    finally:
        if engine is not database:
            engine.dispose()


def upgrade_engine(engine: sa.Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision``; see :func:`upgrade_database`."""
    where = display_url(engine.url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Held until commit: a second upgrader waits, then finds nothing left to do.
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            if _current_revision(connection) is None:
                existing = sorted(set(sa.inspect(connection).get_table_names()) & set(metadata.tables))
                if existing:
                    raise SinkError(
                        f"{where} already has driftline tables ({', '.join(existing)}) but no migration "
                        f"revision ({VERSION_TABLE} is missing): they were not created by "
                        "`driftline db upgrade`. Drop or move them, or migrate another database or schema."
                    )
            # On PostgreSQL the DDL of every step runs in this one transaction: all or nothing.
            with _ALEMBIC_LOCK:
                command.upgrade(_alembic_config(connection), revision)
    except CommandError as exc:
        raise ValueError(f"revision: cannot upgrade {where} to {revision!r}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise SinkError(f"could not upgrade the driftline tables of {where} to {revision!r}: {exc}") from exc


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Create or migrate driftline's tables at ``database_url`` to ``revision`` (default: the newest).

    Runs the Alembic migrations shipped in the package, in one transaction on PostgreSQL, under an
    advisory lock so that workers starting together do not race. Upgrading a database that is
    already at ``revision`` changes nothing.

    Parameters
    ----------
    database_url
        See :func:`create_database_engine`.
    revision
        An Alembic revision: ``"head"``, a revision id such as ``"0001"``, or ``"+1"``.

    Raises
    ------
    ValueError
        ``database_url`` is not a URL, or ``revision`` is unknown or not ahead of the database.
    UnsupportedDialectError
        The URL names a database other than SQLite or PostgreSQL.
    SinkError
        The database could not be reached or refused the migration (nothing was changed on
        PostgreSQL), or it holds driftline tables that no migration created.
    """
    engine = create_database_engine(database_url)
    try:
        upgrade_engine(engine, revision)
    finally:
        engine.dispose()
