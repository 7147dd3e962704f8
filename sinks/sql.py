"""The idempotent SQL sink: engine results and worker checkpoints into driftline's tables.

The tables themselves, and the conventions of their values, are defined in
:mod:`driftline.sinks.database` (re-exported here). ``flush()`` writes everything buffered, and the
checkpoints it is given, in one transaction: the tables never hold results that the checkpoint
does not account for, nor a checkpoint ahead of its results.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from driftline.stream.monitor.results import Alert, BatchResult, FeatureWindow, ModelWindow, SchemaChangeRecord

from .database import (
    NAMING_CONVENTION,
    QUANTILE_COLUMNS,
    SUPPORTED_DIALECTS,
    AlertRow,
    Base,
    CheckpointRow,
    ModelWindowRow,
    ReferenceProfileRow,
    SchemaChangeRow,
    UtcDateTime,
    WindowAggregateRow,
    display_url,
    metadata,
    upgrade_engine,
)
from .errors import SinkError, UnsupportedDialectError

__all__ = [
    "AlertRow",
    "Base",
    "Checkpoint",
    "CheckpointRow",
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

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_BIGINT = 2**63 - 1
_MAX_PARTITION = 2**31 - 1
# zlib's default. On credit_risk after 100k events: 347 KB of JSON -> 145 KB in 8 ms; level 9
# saves 1 % more in 7x the time, level 1 costs 8 % more space.
_STATE_COMPRESSION_LEVEL = 6


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


@dataclass(frozen=True)
class Checkpoint:
    """How far a worker got in one partition, with the engine state that goes with that offset.

    :meth:`SqlSink.flush` writes it in the transaction of the results it accounts for, and
    :meth:`SqlSink.load_checkpoint` reads it back when a worker (re)starts on the partition.

    Parameters
    ----------
    consumer_group, topic, partition
        The key: one checkpoint per partition of a topic per consumer group.
    next_offset
        Offset of the first message whose effects are not in the tables (last processed + 1).
    engine_state
        ``MonitorEngine.to_state()``, JSON-serialisable. Stored as zlib of its UTF-8 JSON, and read
        back as JSON gives it: tuples return as lists, dictionary keys as strings.
    consumed, accepted, dead_lettered
        Cumulative message counts of the partition; ``consumed == accepted + dead_lettered``.

    Raises
    ------
    ValueError
        A key field is empty, a number is negative or beyond its column (partition: 32 bits,
        offsets and counts: 64 bits), or the counts do not reconcile.

    Examples
    --------
    >>> import sqlalchemy
    >>> sink = SqlSink(sqlalchemy.create_engine("sqlite://"))
    >>> sink.create_schema()
    >>> checkpoint = Checkpoint("driftline", "predictions.churn", 0, next_offset=120,
    ...     engine_state={"format": 1, "open_windows": []}, consumed=120, accepted=118, dead_lettered=2)
    >>> sink.flush(checkpoints=[checkpoint])
    >>> sink.load_checkpoint("driftline", "predictions.churn", 0) == checkpoint
    True
    >>> sink.load_checkpoint("driftline", "predictions.churn", 1) is None
    True
    """

    consumer_group: str
    topic: str
    partition: int
    next_offset: int
    engine_state: dict[str, Any]
    consumed: int
    accepted: int
    dead_lettered: int

    def __post_init__(self) -> None:
        for name in ("consumer_group", "topic"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if not 0 <= self.partition <= _MAX_PARTITION:
            raise ValueError(f"partition must be in [0, 2**31 - 1], got {self.partition}")
        for name in ("next_offset", "consumed", "accepted", "dead_lettered"):
            if not 0 <= getattr(self, name) <= _MAX_BIGINT:
                raise ValueError(f"{name} must be in [0, 2**63 - 1], got {getattr(self, name)}")
        if self.consumed != self.accepted + self.dead_lettered:
            raise ValueError(
                f"consumed must equal accepted + dead_lettered, got {self.consumed} != "
                f"{self.accepted} + {self.dead_lettered}"
            )
        if not isinstance(self.engine_state, dict):
            raise ValueError(f"engine_state must be a dict, got {type(self.engine_state).__name__}")


def _encode_engine_state(state: dict[str, Any]) -> bytes:
    # Python's JSON (NaN and ±Infinity allowed: detector state may hold them, and only Python reads it).
    try:
        text = json.dumps(state, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"engine_state is not JSON-serialisable: {exc}") from exc
    return zlib.compress(text.encode("utf-8"), _STATE_COMPRESSION_LEVEL)


def _decode_engine_state(data: bytes) -> dict[str, Any]:
    state = json.loads(zlib.decompress(data).decode("utf-8"))
    if not isinstance(state, dict):
        raise ValueError(f"the engine state is a JSON {type(state).__name__}, not an object")
    return state


def _checkpoint_row(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "consumer_group": checkpoint.consumer_group,
        "topic": checkpoint.topic,
        "partition": checkpoint.partition,
        "next_offset": checkpoint.next_offset,
        "engine_state": _encode_engine_state(checkpoint.engine_state),
        "consumed": checkpoint.consumed,
        "accepted": checkpoint.accepted,
        "dead_lettered": checkpoint.dead_lettered,
    }


class SqlSink:
    """Buffers engine results and upserts them, with worker checkpoints, into driftline's tables.

    ``add()`` only buffers; ``flush()`` writes everything buffered in one transaction with
    ``INSERT … ON CONFLICT DO UPDATE`` on the natural keys, so writing the same results again
    (at-least-once delivery, a replay) leaves the tables as they were — apart from
    ``updated_at``, which records the last write. Buffers are cleared in ``finally``: after a
    failed flush the caller must not commit its input offsets, and re-processes from them.
    A worker passes its :class:`Checkpoint` to ``flush()``, so the offsets it stores and the
    results they account for are committed together (exactly-once effect).

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
        if dialect not in SUPPORTED_DIALECTS:
            raise UnsupportedDialectError(
                f"engine: unsupported SQL dialect {dialect!r}; driftline's SQL sink supports "
                f"{' and '.join(SUPPORTED_DIALECTS)} (it needs INSERT ... ON CONFLICT DO UPDATE)"
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
        """Create or migrate the tables to the newest revision; a no-op when they are up to date.

        Runs the same Alembic migrations as ``driftline db upgrade``
        (:func:`~driftline.sinks.database.upgrade_database`), so the embedded demo's SQLite file
        and a production PostgreSQL have the same tables.

        Raises
        ------
        SinkError
            The database refused the migration, or holds driftline tables no migration created.
        """
        upgrade_engine(self.engine)

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

    def flush(self, checkpoints: Sequence[Checkpoint] = ()) -> None:
        """Write every buffered row and ``checkpoints`` in one transaction, then clear the buffers.

        The checkpoints are written after the rows, in the same transaction: the database holds
        both the results and the offsets that account for them, or neither. A flush with no rows
        still writes its checkpoints (a batch of rejections or still-open windows moves the
        offset too). Of two checkpoints of one partition, the later in ``checkpoints`` is written.
        The buffers are cleared also when the flush fails.

        Parameters
        ----------
        checkpoints
            Where each partition's worker is, consistent with everything added so far.

        Raises
        ------
        ValueError
            A checkpoint's ``engine_state`` is not JSON-serialisable; nothing was written.
        SinkError
            The database refused the write or the connection failed: nothing of this flush was
            committed — unless the connection broke during COMMIT, when the outcome is unknown
            and :meth:`load_checkpoint` tells which one it was.
        """
        try:
            # Serialised and compressed outside the transaction, which then holds its locks briefly.
            checkpoint_rows = {
                (c.consumer_group, c.topic, c.partition): _checkpoint_row(c) for c in checkpoints
            }
            if not self.buffered and not checkpoint_rows:
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
                if checkpoint_rows:
                    table = CheckpointRow.__table__  # type: ignore[assignment]
                    rows = [self._stamp(table, checkpoint_rows[key], now) for key in sorted(checkpoint_rows)]
                    connection.execute(self._upsert(table), rows)
        except SQLAlchemyError as exc:
            raise SinkError(f"could not write driftline results to {display_url(self.engine.url)}: {exc}") from exc
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

    def load_reference_profiles(self, model: str) -> list[str]:
        """The saved profile JSON of every version of ``model``, oldest first (empty if there is none)."""
        table: sa.Table = ReferenceProfileRow.__table__  # type: ignore[assignment]
        query = sa.select(table.c.profile).where(table.c.model == model).order_by(table.c.created_at, table.c.model_version)
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(query).scalars())
        except SQLAlchemyError as exc:
            raise SinkError(f"could not load the reference profiles of {model}: {exc}") from exc

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpointed_offset(self, consumer_group: str, topic: str, partition: int) -> int | None:
        """The ``next_offset`` of the last committed checkpoint, or None (without loading the engine state).

        Raises
        ------
        SinkError
            The database could not be read.
        """
        table: sa.Table = CheckpointRow.__table__  # type: ignore[assignment]
        query = sa.select(table.c.next_offset).where(
            table.c.consumer_group == consumer_group, table.c.topic == topic, table.c.partition == partition
        )
        try:
            with self.engine.connect() as connection:
                offset = connection.execute(query).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise SinkError(
                f"could not read the checkpoint of {consumer_group} {topic}[{partition}] from {display_url(self.engine.url)}: {exc}"
            ) from exc
        return None if offset is None else int(offset)

    def load_checkpoint(self, consumer_group: str, topic: str, partition: int) -> Checkpoint | None:
        """The last committed checkpoint of ``topic`` [``partition``] for ``consumer_group``, or None.

        Raises
        ------
        SinkError
            The database could not be read, or the stored engine state is not zlib-compressed JSON.
        """
        table: sa.Table = CheckpointRow.__table__  # type: ignore[assignment]
        query = sa.select(table).where(
            table.c.consumer_group == consumer_group, table.c.topic == topic, table.c.partition == partition
        )
        where = f"{consumer_group} {topic}[{partition}]"
        try:
            with self.engine.connect() as connection:
                row = connection.execute(query).one_or_none()
        except SQLAlchemyError as exc:
            raise SinkError(f"could not load the checkpoint of {where} from {display_url(self.engine.url)}: {exc}") from exc
        if row is None:
            return None
        try:
            engine_state = _decode_engine_state(row.engine_state)
        except (zlib.error, UnicodeDecodeError, ValueError) as exc:
            raise SinkError(f"the checkpoint of {where} is corrupt: its engine state does not decode: {exc}") from exc
        return Checkpoint(
            consumer_group=row.consumer_group,
            topic=row.topic,
            partition=row.partition,
            next_offset=row.next_offset,
            engine_state=engine_state,
            consumed=row.consumed,
            accepted=row.accepted,
            dead_lettered=row.dead_lettered,
        )
