"""What the SQL sinks share: their base (a checked engine and a clock), upserts on the natural key, timestamps."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .database import SUPPORTED_DIALECTS
from .errors import UnsupportedDialectError
from .tables import QUANTILE_COLUMNS, SchemaChangeRow

__all__ = ["SqlStore", "check_dialect", "check_run_label", "insert", "stamp", "upsert"]

#: A run label: what ``driftline replay --run`` accepts (it becomes part of keys and of checkpoint names).
_RUN_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def check_run_label(run: str) -> str:
    """``run`` if it is a usable run label, else ``ValueError`` naming the rule.

    >>> check_run_label("fix-2026-12-08")
    'fix-2026-12-08'
    """
    if not isinstance(run, str) or not _RUN_LABEL.fullmatch(run):
        raise ValueError(f"run: {run!r} is not a run label (a letter or digit, then letters, digits, '.', '_', '-' or ':'; "
                         "at most 64 characters)")
    return run


def check_dialect(engine: sa.Engine) -> None:
    """Refuse an engine the sinks cannot write to.

    Raises
    ------
    UnsupportedDialectError
        The engine's dialect is neither ``sqlite`` nor ``postgresql``.
    """
    dialect = engine.dialect.name
    if dialect not in SUPPORTED_DIALECTS:
        raise UnsupportedDialectError(
            f"engine: unsupported SQL dialect {dialect!r}; driftline's SQL sinks support "
            f"{' and '.join(SUPPORTED_DIALECTS)} (they need INSERT ... ON CONFLICT DO UPDATE)"
        )


class SqlStore:
    """The base of the SQL sinks and stores: an engine on a supported dialect, and the clock of their timestamps.

    Parameters
    ----------
    engine
        A SQLAlchemy engine on SQLite or PostgreSQL (migrated: ``driftline db upgrade``).
    clock
        Returns the current time (aware) for ``updated_at`` / ``created_at``; injectable so tests and
        replays can be reproducible. Defaults to ``datetime.now(UTC)``.

    Raises
    ------
    UnsupportedDialectError
        The engine's dialect is neither ``sqlite`` nor ``postgresql``.
    """

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        check_dialect(engine)
        self.engine = engine
        self.clock: Callable[[], datetime] = clock if clock is not None else (lambda: datetime.now(UTC))


def insert(dialect: str, table: sa.Table) -> Any:
    """The dialect's ``INSERT`` (with ``on_conflict_do_update``)."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


#: The columns of an alert's incident (:func:`resolve_alerts` writes them; re-upserting the alert keeps them).
INCIDENT_COLUMNS = ("resolved_at", "last_signal_at", "signals")


def resolve_alerts(table: sa.Table) -> Any:
    """``UPDATE alerts SET resolved_at, last_signal_at, signals WHERE alert_id = :id AND run = :run`` (bind names ``b_*``)."""
    return (
        table.update()
        .where(table.c.alert_id == sa.bindparam("b_alert_id"), table.c.run == sa.bindparam("b_run"))
        .values(resolved_at=sa.bindparam("b_resolved_at"), last_signal_at=sa.bindparam("b_last_signal_at"),
                signals=sa.bindparam("b_signals"))
    )


def upsert(dialect: str, table: sa.Table) -> Any:
    """``INSERT … ON CONFLICT (primary key) DO UPDATE`` of every column but ``created_at``, where a value differs.

    A row whose stored values are those written already is left as it is, ``updated_at`` included:
    re-processing the same events (a redelivery, a replay) changes nothing at all, and
    ``updated_at`` says when the row's content last changed. The quantile columns are not compared
    (they are randomised sketch estimates; see the comment below): a row whose other values are the
    same keeps the quantiles first written.
    """
    statement = insert(dialect, table)
    excluded = statement.excluded
    keys = [column.name for column in table.primary_key.columns]
    updates: dict[str, Any] = {}
    for column in table.columns:
        if column.name in keys or column.name in ("created_at", *INCIDENT_COLUMNS):
            continue  # created_at records the first write; an alert's incident columns are set by its resolution
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
    # The KLL quantiles alone never make a row different: DataSketches' compaction draws unseeded random
    # bits, so the same values give quantiles that differ within the sketch's rank error from run to run
    # (detectors/sketches.py). Any real change of a window's values changes its counts or moments too.
    compared = [name for name in updates if name != "updated_at" and name not in QUANTILE_COLUMNS]
    changed = sa.or_(*(table.c[name].is_distinct_from(updates[name]) for name in compared))
    return statement.on_conflict_do_update(index_elements=keys, set_=updates, where=changed)


def stamp(table: sa.Table, row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """``row`` with ``updated_at`` / ``created_at`` set to ``now`` where the table has them."""
    stamped = dict(row)
    for column in ("updated_at", "created_at"):
        if column in table.columns:
            stamped[column] = now
    return stamped
