"""driftline's database: the engine that reaches it, and the migrations that create its tables.

The tables are defined in :mod:`driftline.sinks.tables`; the Alembic revisions shipped in
``sinks/migrations`` create and migrate them, on SQLite (the embedded demo) and PostgreSQL.

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

import re
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from .errors import DatabaseUrlError, SinkError, UnsupportedDialectError
from .tables import metadata

__all__ = [
    "ANALYST_VIEWS",
    "MIGRATIONS_DIRECTORY",
    "SUPPORTED_DIALECTS",
    "VERSION_TABLE",
    "create_database_engine",
    "current_revision",
    "display_url",
    "grant_readonly",
    "head_revision",
    "upgrade_database",
    "upgrade_engine",
]

#: Dialects the sinks can write to (they need ``INSERT … ON CONFLICT DO UPDATE``).
SUPPORTED_DIALECTS = ("sqlite", "postgresql")

#: The analysts' views (migration 0004): the stable interface a read-only role reads.
ANALYST_VIEWS = ("feature_drift", "model_volume", "model_performance", "alert_log")

#: A role name ``grant_readonly`` accepts: a plain PostgreSQL identifier (no quoting surprises).
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: The Alembic migration scripts, shipped inside the package (no alembic.ini needed).
MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent / "migrations"

#: Alembic's bookkeeping table. Not the default ``alembic_version``: driftline's tables may share a
#: database schema with another application that uses Alembic, and the two must not overwrite
#: each other's revision.
VERSION_TABLE = "driftline_alembic_version"

# Any constant: serialises concurrent ``upgrade_database`` calls (several workers starting at once).
_MIGRATION_LOCK_KEY = 0x64726966746C696E  # "driftlin"
# Alembic's ``context`` and ``op`` are process-wide proxies: one migration at a time per process.
_ALEMBIC_LOCK = threading.Lock()


def display_url(database_url: str | sa.URL) -> str:
    """``database_url`` with its password masked, for messages and logs.

    >>> display_url("postgresql+psycopg://driftline:s3cret@db:5432/driftline")
    'postgresql+psycopg://driftline:***@db:5432/driftline'
    """
    try:
        return sa.make_url(database_url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<unparsable database URL>"


def driver_reason(exc: SQLAlchemyError) -> str:
    """The driver's own one-line reason of a database error (SQLAlchemy adds a second line, a link to its docs).

    A refused login reads ``FATAL:  password authentication failed for user "..."``: libpq names the
    user, never the password.
    """
    cause: BaseException = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else '(no message)'}"


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
    DatabaseUrlError
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
        raise DatabaseUrlError(
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
        raise SinkError(f"could not read the schema revision of {display_url(engine.url)}: {driver_reason(exc)}") from exc
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
        raise SinkError(f"could not upgrade the driftline tables of {where} to {revision!r}: {driver_reason(exc)}") from exc


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


def grant_readonly(database_url: str, role: str, *, password: str | None = None) -> tuple[str, tuple[str, ...]]:
    """Make ``role`` read the analysts' views of driftline's schema, and nothing else; return (schema, views).

    Creates the role if it does not exist (``NOLOGIN``, a group role analysts' logins join; with
    ``password``, a login role with that password), grants it ``USAGE`` on the schema and ``SELECT``
    on each view of :data:`ANALYST_VIEWS` — no table, no write, no ``CREATE`` — and makes its
    transactions read-only by default. Idempotent: run it again after ``driftline db upgrade`` (a
    later revision's new views are granted then).

    Raises
    ------
    ValueError
        ``role`` is not a plain lower-case identifier.
    SinkError
        Not PostgreSQL (SQLite has no roles: use the file's permissions), the views are missing
        (``driftline db upgrade`` first), or the database refused (e.g. the user may not create roles).
    """
    if not _ROLE_NAME.match(role):
        raise ValueError(f"role {role!r}: use a plain lower-case identifier (letters, digits, _; at most 63)")
    engine = create_database_engine(database_url)
    where = display_url(engine.url)
    try:
        if engine.dialect.name != "postgresql":
            raise SinkError(f"{where}: roles are PostgreSQL's; a SQLite file is protected by its file permissions")
        quote = engine.dialect.identifier_preparer.quote
        with engine.begin() as connection:
            schema = str(connection.execute(sa.text("SELECT current_schema()")).scalar_one())
            present = set(sa.inspect(connection).get_view_names(schema=schema))
            missing = [view for view in ANALYST_VIEWS if view not in present]
            if missing:
                raise SinkError(f"{where}: schema {schema} has no view {', '.join(missing)}: run `driftline db upgrade` first")
            exists = connection.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first() is not None
            if password is not None:
                # DDL takes no bind parameters: the password goes in as a literal, escaped by the dialect (never logged).
                secret = sa.literal(password).compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
                verb = "ALTER" if exists else "CREATE"
                connection.exec_driver_sql(f"{verb} ROLE {quote(role)} WITH LOGIN PASSWORD {secret}")
            elif not exists:
                connection.exec_driver_sql(f"CREATE ROLE {quote(role)} NOLOGIN")
            connection.exec_driver_sql(f"ALTER ROLE {quote(role)} SET default_transaction_read_only = on")
            connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA {quote(schema)} TO {quote(role)}")
            for view in ANALYST_VIEWS:
                connection.exec_driver_sql(f"GRANT SELECT ON {quote(schema)}.{quote(view)} TO {quote(role)}")
    except SQLAlchemyError as exc:
        raise SinkError(f"could not grant read-only access to {role!r} on {where}: {type(exc).__name__}: "
                        f"{str(exc.orig if hasattr(exc, 'orig') else exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return schema, ANALYST_VIEWS
