"""Resolve decoded writer columns to a contract and check every value against it, column by column.

Resolution follows Avro's rules for flat records: a contract field is read from the writer field of
the same name (or one of its aliases) or filled with its default, ints and longs are promoted to
floating point, bytes to strings. It is done on whole columns rather than through fastavro's
per-event resolver because the columnar decoder already has the writer's columns (the tests check
that both give the same values). Writer unions that only partly resolve are settled here, value by
value: a null where the contract forbids it is ``NULL_NOT_ALLOWED``, a value of another branch
``WRONG_TYPE``.

Then the value contract: NaN/inf, ranges, categories and nulls, vectorised per column. An event is
rejected when a field whose policy is ``reject`` is violated; the first such field in contract
order names the reason, later ones are listed in the detail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .columnar import RawColumn
from .contract import Contract, FieldContract
from .results import FieldStatus, Rejection, RejectReason

__all__ = ["IDENTITY_ROLES", "Block", "Source", "check_block", "empty_block", "unread_block"]

#: The fields that say which event this is and when: what the engine needs to place an event in a window.
IDENTITY_ROLES = ("model_name", "id", "event_time", "model_version")

_NUMERIC_KINDS = frozenset({"boolean", "int", "long", "float", "double"})
_VIOLATIONS = (FieldStatus.NOT_FINITE, FieldStatus.OUT_OF_RANGE, FieldStatus.UNSEEN_CATEGORY, FieldStatus.NULL_NOT_ALLOWED, FieldStatus.WRONG_TYPE)


@dataclass(frozen=True)
class Source:
    """Where a contract field comes from in one writer schema: a writer field, or the default."""

    writer_field: str | None
    writer_type: str


@dataclass
class Block:
    """Checked rows of one writer schema; the codec concatenates blocks into a batch."""

    rows: np.ndarray
    event_time_ms: np.ndarray
    event_id: np.ndarray
    model_version: np.ndarray
    values: dict[str, np.ndarray]
    status: dict[str, np.ndarray]
    accepted: np.ndarray


@dataclass
class _Resolved:
    values: np.ndarray  # float64 (numeric), int64 (timestamp) or object (strings)
    null: np.ndarray  # bool
    wrong: np.ndarray  # bool: a value that does not resolve to the contract type
    raw: np.ndarray | None = None  # the writer's values, kept for messages about wrong types


def empty_block(contract: Contract) -> Block:
    """A block with no rows and every column of ``contract``."""
    values = {
        f.name: np.empty(0, dtype=object if f.kind == "categorical" else np.float64) for f in contract.monitored_fields
    }
    return Block(
        rows=np.empty(0, dtype=np.int64),
        event_time_ms=np.empty(0, dtype=np.int64),
        event_id=np.empty(0, dtype=object),
        model_version=np.empty(0, dtype=object),
        values=values,
        status={f.name: np.empty(0, dtype=np.int8) for f in contract.monitored_fields},
        accepted=np.empty(0, dtype=bool),
    )


def _resolve(spec: FieldContract, raw: RawColumn | None, n: int) -> _Resolved:
    textual = spec.kind in ("categorical", "string")
    integral = spec.kind == "timestamp"
    if raw is None or raw.kind == "null":  # filled with the contract's default (or a null writer type)
        default = spec.default if raw is None else None
        if textual:
            values = np.full(n, default, dtype=object)
        elif integral:
            values = np.full(n, 0 if default is None else int(default), dtype=np.int64)
        else:
            values = np.full(n, np.nan if default is None else float(default))
        return _Resolved(values, np.full(n, default is None), np.zeros(n, dtype=bool))
    null = raw.null if raw.null is not None else np.zeros(n, dtype=bool)
    wrong = np.zeros(n, dtype=bool)
    assert raw.values is not None
    if raw.kind == "object":
        return _resolve_objects(spec, raw.values, textual, integral)
    if textual:
        if raw.kind in ("string", "enum"):
            return _Resolved(raw.values, null, wrong)
        if raw.kind == "bytes":  # Avro promotes bytes to string
            return _resolve_objects(spec, raw.values, textual, integral)
        return _Resolved(np.full(n, None, dtype=object), null, ~null, raw.values)
    if raw.kind not in _NUMERIC_KINDS:
        filler = np.zeros(n, dtype=np.int64) if integral else np.full(n, np.nan)
        return _Resolved(filler, null, ~null, raw.values)
    values = raw.values.astype(np.int64 if integral else np.float64, copy=False)
    if raw.null is not None and not integral and raw.null.any():
        values = values.copy() if values is raw.values else values
        values[raw.null] = np.nan
    return _Resolved(values, null, wrong)


def _resolve_objects(spec: FieldContract, raw: np.ndarray, textual: bool, integral: bool) -> _Resolved:
    """Value-by-value resolution of Python values (fastavro-decoded or bytes)."""
    n = len(raw)
    null = np.fromiter((v is None for v in raw), dtype=bool, count=n)
    if textual:
        out = np.full(n, None, dtype=object)
        ok = np.zeros(n, dtype=bool)
        for i, v in enumerate(raw.tolist()):
            if isinstance(v, str):
                out[i], ok[i] = v, True
            elif isinstance(v, bytes):
                with contextlib.suppress(UnicodeDecodeError):
                    out[i], ok[i] = v.decode(), True
        return _Resolved(out, null, ~null & ~ok, raw)
    allowed: tuple[type, ...] = (int, float) if spec.avro_type != "boolean" else (bool,)
    ok = np.fromiter(
        (isinstance(v, allowed) and (spec.avro_type == "boolean" or not isinstance(v, bool)) for v in raw), dtype=bool, count=n
    )
    if integral:
        ok &= np.fromiter((isinstance(v, int) for v in raw), dtype=bool, count=n)
        values = np.zeros(n, dtype=np.int64)
    else:
        values = np.full(n, np.nan)
    if ok.any():
        values[ok] = [v for v, good in zip(raw.tolist(), ok.tolist()) if good]
    return _Resolved(values, null, ~null & ~ok, raw)


def _status(spec: FieldContract, column: _Resolved) -> np.ndarray:
    n = len(column.values)
    status = np.zeros(n, dtype=np.int8)
    if column.null.any():
        status[column.null] = FieldStatus.NULL if spec.nullable else FieldStatus.NULL_NOT_ALLOWED
    if column.wrong.any():
        status[column.wrong] = FieldStatus.WRONG_TYPE
    if spec.kind == "categorical":
        if spec.categories:
            known = frozenset(spec.categories)
            unseen = np.fromiter((v not in known for v in column.values.tolist()), dtype=bool, count=n)
            status[unseen & (status == FieldStatus.OK)] = FieldStatus.UNSEEN_CATEGORY
        return status
    values = column.values
    clean = status == FieldStatus.OK
    finite = np.isfinite(values)
    if not finite.all():
        status[~finite & clean] = FieldStatus.NOT_FINITE
        clean &= finite
    if spec.range is not None:
        low, high = spec.range
        status[clean & ((values < low) | (values > high))] = FieldStatus.OUT_OF_RANGE
    return status


def _number(value: object) -> str:
    number = float(value)  # type: ignore[arg-type]
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def _detail(spec: FieldContract, code: int, column: _Resolved, row: int, contract: Contract, source: Source, writer_id: str) -> str:
    name, value = spec.name, column.values[row]
    if code == FieldStatus.OUT_OF_RANGE:
        assert spec.range is not None
        return f"{name}={_number(value)} outside [{_number(spec.range[0])}, {_number(spec.range[1])}]"
    if code == FieldStatus.NOT_FINITE:
        return f"{name}={value} is not finite; contract {contract.label} allows no NaN/inf here"
    if code == FieldStatus.UNSEEN_CATEGORY:
        return f"{name}={value!r} is not a known category ({', '.join(spec.categories)})"
    declared = f"writer schema {writer_id} declares it {source.writer_type}"
    if code == FieldStatus.NULL_NOT_ALLOWED:
        return f"{name} is null; contract {contract.label} declares it non-nullable ({declared})"
    found = column.raw[row] if column.raw is not None else value
    return f"{name}={found!r} is a {type(found).__name__}; contract {contract.label} expects {spec.avro_type} ({declared})"


def _usable_identity(
    contract: Contract,
    sources: Mapping[str, Source],
    writer_id: str,
    rows: np.ndarray,
    resolved: Mapping[str, _Resolved],
    known_models: Collection[str],
) -> tuple[np.ndarray, list[Rejection]]:
    """Which rows have a usable identity (this model, an id, an event time, a version); why the others do not."""
    rejections: list[Rejection] = []
    usable = np.ones(len(rows), dtype=bool)
    model_column = resolved[contract.role_field("model_name").name]
    mismatch = (model_column.values != contract.model) & ~model_column.null & ~model_column.wrong
    for i in np.flatnonzero(mismatch).tolist():
        claimed = model_column.values[i]
        if claimed in known_models:
            detail = (
                f"event says model_name={claimed!r} but is a {contract.full_name} record (writer schema {writer_id}), "
                f"the contract of {contract.model!r}"
            )
            rejections.append(Rejection(RejectReason.MODEL_MISMATCH, int(rows[i]), "model_name", detail))
        else:
            detail = f"model_name={claimed!r} has no contract (known models: {', '.join(sorted(known_models))})"
            rejections.append(Rejection(RejectReason.UNKNOWN_MODEL, int(rows[i]), "model_name", detail))
    usable &= ~mismatch
    for role in IDENTITY_ROLES:
        spec = contract.role_field(role)
        column = resolved[spec.name]
        broken = (column.null | column.wrong) & usable
        for i in np.flatnonzero(broken).tolist():
            code = FieldStatus.NULL_NOT_ALLOWED if column.null[i] else FieldStatus.WRONG_TYPE
            detail = _detail(spec, code, column, i, contract, sources[spec.name], writer_id)
            rejections.append(Rejection(RejectReason[code.name], int(rows[i]), spec.name, detail))
        usable &= ~broken
    return usable, rejections


def _resolve_fields(specs: Iterable[FieldContract], sources: Mapping[str, Source], columns: Mapping[str, RawColumn],
                    n: int) -> dict[str, _Resolved]:
    """Each field of ``specs`` resolved from the writer's decoded columns (by its source), by field name."""
    resolved: dict[str, _Resolved] = {}
    for spec in specs:
        source = sources[spec.name]
        raw = columns.get(source.writer_field) if source.writer_field is not None else None
        resolved[spec.name] = _resolve(spec, raw, n)
    return resolved


def check_block(
    contract: Contract,
    sources: Mapping[str, Source],
    writer_id: str,
    rows: np.ndarray,
    columns: Mapping[str, RawColumn],
    known_models: Collection[str],
) -> tuple[Block, list[Rejection]]:
    """Resolve and check decoded rows of one writer schema.

    Rows whose identity is unusable (another or an unknown model, a null or mistyped id, time or
    version) are rejected and left out of the block; rows violating a ``reject`` policy stay in the
    block with ``accepted`` False. Returns the block and the rejections, both in input order.
    """
    n = len(rows)
    resolved = _resolve_fields(contract.fields, sources, columns, n)
    usable, rejections = _usable_identity(contract, sources, writer_id, rows, resolved, known_models)

    keep = np.flatnonzero(usable) if not usable.all() else None
    monitored = contract.monitored_fields
    first = np.full(n, -1, dtype=np.int32)
    statuses: dict[str, np.ndarray] = {}
    for index, spec in enumerate(monitored):
        status = _status(spec, resolved[spec.name])
        statuses[spec.name] = status
        if spec.rejects and status.any():
            violating = np.isin(status, [c for c in _VIOLATIONS if not (c == FieldStatus.NOT_FINITE and spec.allow_nan)])
            first[(first < 0) & violating & usable] = index
    for i in np.flatnonzero(first >= 0).tolist():
        spec = monitored[int(first[i])]
        violation = int(statuses[spec.name][i])
        detail = _detail(spec, violation, resolved[spec.name], i, contract, sources[spec.name], writer_id)
        others = [f"{s.name} {FieldStatus(int(statuses[s.name][i])).name.lower()}" for s in monitored
                  if s is not spec and statuses[s.name][i] in _VIOLATIONS]
        if others:
            detail += f" (also: {', '.join(others)})"
        rejections.append(Rejection(RejectReason[FieldStatus(violation).name], int(rows[i]), spec.name, detail))

    def pick(array: np.ndarray) -> np.ndarray:
        return array if keep is None else array[keep]

    block = Block(
        rows=pick(rows),
        event_time_ms=pick(resolved[contract.role_field("event_time").name].values).astype(np.int64, copy=False),
        event_id=pick(resolved[contract.role_field("id").name].values),
        model_version=pick(resolved[contract.role_field("model_version").name].values),
        values={spec.name: pick(resolved[spec.name].values) for spec in monitored},
        status={name: pick(status) for name, status in statuses.items()},
        accepted=pick(first < 0),
    )
    rejections.sort(key=lambda r: r.index)
    return block, rejections


def unread_block(
    contract: Contract,
    sources: Mapping[str, Source],
    writer_id: str,
    rows: np.ndarray,
    columns: Mapping[str, RawColumn],
    known_models: Collection[str],
) -> Block:
    """The rows of a writer schema the contract cannot read, placed by their identity alone.

    Every such event is rejected (the codec gives the reason), but its writer schema still reads its
    id, event time and model version (``columns`` holds those writer fields): the block places it in
    the window of its own event time as a rejected event. Its monitored values were not read — NaN
    or None, status :attr:`~driftline.schemas.results.FieldStatus.UNREAD`, never accepted. Rows
    whose identity is unusable are left out (they stay undated rejections).
    """
    resolved = _resolve_fields([contract.role_field(role) for role in IDENTITY_ROLES], sources, columns, len(rows))
    usable, _ = _usable_identity(contract, sources, writer_id, rows, resolved, known_models)
    keep = np.flatnonzero(usable)
    n = len(keep)
    monitored = contract.monitored_fields
    return Block(
        rows=rows[keep],
        event_time_ms=resolved[contract.role_field("event_time").name].values[keep].astype(np.int64, copy=False),
        event_id=resolved[contract.role_field("id").name].values[keep],
        model_version=resolved[contract.role_field("model_version").name].values[keep],
        values={
            spec.name: np.full(n, None, dtype=object) if spec.kind == "categorical" else np.full(n, np.nan) for spec in monitored
        },
        status={spec.name: np.full(n, FieldStatus.UNREAD, dtype=np.int8) for spec in monitored},
        accepted=np.zeros(n, dtype=bool),
    )
