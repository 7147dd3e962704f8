"""Column-at-a-time Avro binary decoding of many messages of one flat record schema.

Decoding event by event with ``fastavro.schemaless_reader`` costs about half a microsecond per
field, so a 27-field event alone would cap the codec near the throughput target. Prediction events
are flat records (primitives, enums and nullable primitives), so this module decodes a whole batch
one *field* at a time instead: every message has a cursor, and each field is read for all messages
at once with numpy gathers (8 bytes for a double, up to 10 for a varint, a length and a slice for a
string). The Avro rules are applied strictly — varints of at most 10 bytes, ints within 32 bits,
booleans 0 or 1, union and enum indexes in range, no bytes left over — and a message that breaks one
is reported with the field and the reason; fastavro is the reference implementation the tests
compare it with. Schemas with other types (nested records, arrays, maps, fixed, multi-branch
unions) are decoded message by message with fastavro instead (:class:`RecordDecoder`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import fastavro
import numpy as np

from . import avro_types

__all__ = ["PADDING", "Failure", "FlatDecoder", "RawColumn", "RecordDecoder", "flat_layout"]

#: Zero bytes appended to the joined payloads so that gathers near the end never leave the buffer.
PADDING = 16

_ARANGE10 = np.arange(10)
_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_WIDTH = {"double": 8, "float": 4}
_FLAT_KINDS = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes", "enum"})

# Failure codes; the detail text is only built for the (rare) failing messages.
_TRUNCATED, _VARINT, _UNION, _ENUM, _LENGTH, _BOOLEAN, _INT_RANGE, _UTF8, _TRAILING = range(1, 10)


@dataclass(frozen=True)
class _FieldLayout:
    name: str
    kind: str  # the non-null type: a primitive name or "enum" ("null" if there is none)
    union_size: int  # branches of the union; 0 when the field is not a union
    value_branch: int  # union index of the non-null branch (-1: none)
    symbols: tuple[str, ...] = ()


@dataclass
class RawColumn:
    """One writer field of the successfully decoded messages.

    ``values``: ``float64`` (float, double), ``int64`` (int, long), ``bool`` (boolean), ``object``
    (``str`` for string and enum, ``bytes`` for bytes, any Python value for kind ``object``);
    ``None`` for kind ``null``. ``null`` marks nulls of a nullable union (None: never null).
    """

    kind: str
    values: np.ndarray | None
    null: np.ndarray | None = None


@dataclass(frozen=True)
class Failure:
    """A message that could not be decoded: its position in the group, TRUNCATED or CORRUPT, why."""

    position: int
    truncated: bool
    detail: str
    field: str | None = None


def flat_layout(parsed: dict[str, Any]) -> tuple[_FieldLayout, ...] | None:
    """Field layout of a record that :class:`FlatDecoder` can decode, or None."""
    named = avro_types.named_types(parsed)
    layout: list[_FieldLayout] = []
    for field in parsed.get("fields", ()):
        branches = avro_types.branches(field["type"])
        non_null = [b for b in branches if b != "null"]
        if len(branches) > 2 or len(non_null) > 1 or (len(branches) == 2 and len(non_null) != 1):
            return None
        base: Any = non_null[0] if non_null else "null"
        if isinstance(base, str) and base not in avro_types.PRIMITIVE_TYPES:
            base = named.get(base)
        symbols: tuple[str, ...] = ()
        if isinstance(base, dict):
            if base.get("type") == "enum":
                symbols = tuple(base["symbols"])
            base = base.get("type")
        if base not in _FLAT_KINDS:
            return None
        is_union = isinstance(field["type"], list)
        value_branch = next((i for i, b in enumerate(branches) if b != "null"), -1)
        layout.append(_FieldLayout(str(field["name"]), str(base), len(branches) if is_union else 0, value_branch, symbols))
    return tuple(layout)


def _read_varint(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Zigzag varints at ``pos``: (values, new positions, rows whose varint exceeds 10 bytes or None)."""
    first = buf[pos]
    if not (first & 0x80).any():  # the common case: every value fits in one byte
        small = first.astype(np.int64)
        return (small >> 1) ^ -(small & 1), pos + 1, None
    raw = first.astype(np.uint64)
    length = np.ones(len(pos), dtype=np.int64)
    long_rows = np.flatnonzero(first & 0x80)
    chunk = buf[pos[long_rows, None] + _ARANGE10]
    stops = chunk < 0x80
    terminated = stops.any(axis=1)
    sizes = np.where(terminated, stops.argmax(axis=1) + 1, 10)
    parts = (chunk & 0x7F).astype(np.uint64) << _SHIFTS
    parts[sizes[:, None] <= _ARANGE10] = 0
    raw[long_rows] = np.bitwise_or.reduce(parts, axis=1)
    length[long_rows] = sizes
    too_long = np.zeros(len(pos), dtype=bool)
    too_long[long_rows] = ~terminated
    values = (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)
    return values, pos + length, too_long if too_long.any() else None


class _State:
    """First failure of every message of a group: code, field index and offending value."""

    def __init__(self, n: int) -> None:
        self.fail = np.zeros(n, dtype=np.int8)
        self.field = np.zeros(n, dtype=np.int32)
        self.value = np.zeros(n, dtype=np.int64)

    def flag(self, rows: np.ndarray, mask: np.ndarray, code: int, index: int, value: np.ndarray | None = None) -> None:
        """Record ``code`` for messages ``rows[mask]`` that have not failed yet."""
        if not mask.any():
            return
        hit = rows[mask]
        fresh = self.fail[hit] == 0
        hit = hit[fresh]
        self.fail[hit] = code
        self.field[hit] = index
        if value is not None:
            self.value[hit] = value[mask][fresh]


class FlatDecoder:
    """Decode many messages of one flat record schema, a field at a time.

    Parameters
    ----------
    layout
        From :func:`flat_layout`.
    needed
        Writer fields whose values are wanted (others are skipped, as Avro resolution skips them).
    """

    def __init__(self, layout: tuple[_FieldLayout, ...], needed: frozenset[str]) -> None:
        self.layout = layout
        self.needed = needed

    def decode(
        self, joined: bytes, buf: np.ndarray, start: np.ndarray, end: np.ndarray
    ) -> tuple[dict[str, RawColumn], np.ndarray, list[Failure]]:
        """Decode the records at ``joined[start[i]:end[i]]``.

        ``buf`` is ``joined`` as ``uint8`` followed by :data:`PADDING` zero bytes. Returns the
        columns of the messages that decoded, their positions in the group (ascending), and the
        failures of the others.
        """
        state = _State(len(start))
        pos = start.astype(np.int64, copy=True)
        # A cursor past its message's end is held at end + 1: it stays "past the end" (truncated)
        # and every gather from it stays inside the padded buffer.
        limit = end + 1
        strings: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        columns: dict[str, RawColumn] = {}
        every = np.arange(len(start))
        for index, spec in enumerate(self.layout):
            rows = every
            null: np.ndarray | None = None
            if spec.union_size:
                branch, after = self._varint(buf, pos, state, index, every, end)
                np.minimum(after, limit, out=pos)
                state.flag(every, (branch < 0) | (branch >= spec.union_size), _UNION, index, branch)
                null = branch != spec.value_branch
                rows = np.flatnonzero(~null)
            if rows is every:
                values, after = self._read(spec, index, buf, pos, state, rows, end)
                np.minimum(after, limit, out=pos)
            else:
                values, after = self._read(spec, index, buf, pos[rows], state, rows, end[rows])
                pos[rows] = np.minimum(after, limit[rows])
            if spec.name not in self.needed:
                continue
            if isinstance(values, tuple):  # string or bytes: offsets and lengths, materialised below
                strings[spec.name] = (values[0], values[1], rows)
                columns[spec.name] = RawColumn(spec.kind, None, null)
                continue
            if values is not None and len(rows) != len(every):
                full = np.full(len(every), np.nan) if values.dtype == np.float64 else np.zeros(len(every), dtype=values.dtype)
                full[rows] = values
                values = full
            if spec.kind == "enum" and values is not None:
                symbols = np.asarray((*spec.symbols, ""), dtype=object)
                values = symbols[np.clip(values, 0, len(spec.symbols))]  # failed rows are dropped below
                if null is not None:
                    values[null] = None
            columns[spec.name] = RawColumn(spec.kind, values, null)
        state.flag(every, pos < end, _TRAILING, len(self.layout), end - pos)

        good = np.flatnonzero(state.fail == 0)
        keep = np.ones(len(good), dtype=bool)
        materialised: dict[str, np.ndarray] = {}
        for name, (offsets, lengths, rows_read) in strings.items():
            materialised[name] = self._materialise(joined, columns[name].kind, offsets, lengths, rows_read, good, len(every), keep)
            newly_bad = good[~keep & (state.fail[good] == 0)]
            state.fail[newly_bad] = _UTF8
            state.field[newly_bad] = next(i for i, s in enumerate(self.layout) if s.name == name)
        for name, column in columns.items():
            if name in materialised:
                column.values = materialised[name][keep]
            elif column.values is not None:
                column.values = column.values[good[keep]]
            if column.null is not None:
                column.null = column.null[good[keep]]
        failures = [self._failure(int(i), state, start, end) for i in np.flatnonzero(state.fail)]
        return columns, good[keep], failures

    @staticmethod
    def _varint(
        buf: np.ndarray, cursor: np.ndarray, state: _State, index: int, rows: np.ndarray, end: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        values, after, too_long = _read_varint(buf, cursor)
        state.flag(rows, after > end, _TRUNCATED, index)  # bytes past the end: truncation first
        if too_long is not None:
            state.flag(rows, too_long, _VARINT, index)
        return values, after

    def _read(
        self, spec: _FieldLayout, index: int, buf: np.ndarray, cursor: np.ndarray, state: _State, rows: np.ndarray, end: np.ndarray
    ) -> tuple[Any, np.ndarray]:
        """Values of one field at ``cursor`` (positions of messages ``rows``) and the cursor after it."""
        kind = spec.kind
        if kind == "null":
            return None, cursor
        if kind in _WIDTH:
            width = _WIDTH[kind]
            after = cursor + width
            state.flag(rows, after > end, _TRUNCATED, index)
            raw = np.ascontiguousarray(buf[cursor[:, None] + np.arange(width)])
            with np.errstate(invalid="ignore"):  # a signalling NaN is still just NaN
                values = raw.view("<f8" if width == 8 else "<f4").ravel().astype(np.float64, copy=False)
            return values, after
        if kind == "boolean":
            byte = buf[cursor]
            after = cursor + 1
            state.flag(rows, after > end, _TRUNCATED, index)
            state.flag(rows, byte > 1, _BOOLEAN, index, byte.astype(np.int64))
            return byte == 1, after
        number, after = self._varint(buf, cursor, state, index, rows, end)
        if kind == "int":
            state.flag(rows, (number < -(2**31)) | (number >= 2**31), _INT_RANGE, index, number)
        elif kind == "enum":
            state.flag(rows, (number < 0) | (number >= len(spec.symbols)), _ENUM, index, number)
        elif kind in ("string", "bytes"):
            state.flag(rows, number < 0, _LENGTH, index, number)
            lengths = np.maximum(number, 0)
            after_value = after + lengths
            state.flag(rows, after_value > end, _TRUNCATED, index)
            return (after, lengths), after_value
        return number, after

    @staticmethod
    def _materialise(
        joined: bytes, kind: str, offsets: np.ndarray, lengths: np.ndarray, rows_read: np.ndarray, good: np.ndarray, n: int, keep: np.ndarray
    ) -> np.ndarray:
        """Python ``str`` (or ``bytes``) values of the good rows; rows with invalid UTF-8 leave ``keep``."""
        where = np.full(n, -1, dtype=np.int64)
        where[rows_read] = np.arange(len(rows_read))
        local = where[good]
        present = local >= 0
        start_array, size_array = offsets[local[present]], lengths[local[present]]
        out = np.full(len(good), None, dtype=object)
        if len(start_array) > 1 and kind != "bytes" and (size_array == size_array[0]).all():
            # Identity strings (model name, model version) are usually one value per batch:
            # compare the bytes with numpy and decode once instead of once per row.
            first, width = int(start_array[0]), int(size_array[0])
            window = np.frombuffer(joined, dtype=np.uint8)[start_array[:, None] + np.arange(width)]
            if (window == window[0]).all():
                try:
                    out[present] = joined[first : first + width].decode()
                    return out
                except UnicodeDecodeError:
                    pass  # the row-by-row path below marks the rows
        starts, sizes = start_array.tolist(), size_array.tolist()
        if kind == "bytes":
            out[present] = [joined[s : s + k] for s, k in zip(starts, sizes)]
            return out
        texts: list[str | None]
        try:
            texts = [joined[s : s + k].decode() for s, k in zip(starts, sizes)]
        except UnicodeDecodeError:
            texts = []
            positions = np.flatnonzero(present)
            for position, s, k in zip(positions.tolist(), starts, sizes):
                try:
                    texts.append(joined[s : s + k].decode())
                except UnicodeDecodeError:
                    texts.append(None)
                    keep[position] = False
        out[present] = texts
        return out

    def _failure(self, i: int, state: _State, start: np.ndarray, end: np.ndarray) -> Failure:
        code, value, index = int(state.fail[i]), int(state.value[i]), int(state.field[i])
        spec = self.layout[index] if index < len(self.layout) else None
        name = spec.name if spec is not None else ""
        if code == _TRUNCATED:
            return Failure(i, True, f"the {int(end[i] - start[i])}-byte record ends while reading field {name!r}", name)
        details = {
            _VARINT: f"field {name!r}: variable-length integer longer than 10 bytes",
            _UNION: f"field {name!r}: union branch index {value} out of range ({spec.union_size if spec else 0} branches)",
            _ENUM: f"field {name!r}: enum symbol index {value} out of range ({len(spec.symbols) if spec else 0} symbols)",
            _LENGTH: f"field {name!r}: negative length {value}",
            _BOOLEAN: f"field {name!r}: boolean byte {value} is neither 0 nor 1",
            _INT_RANGE: f"field {name!r}: {value} does not fit a 32-bit int",
            _UTF8: f"field {name!r}: string is not valid UTF-8",
            _TRAILING: f"{value} byte(s) left over after the record: the writer schema does not describe this message",
        }
        return Failure(i, False, details[code], name or None)


class RecordDecoder:
    """Message-by-message decoding with fastavro, for writer schemas :class:`FlatDecoder` cannot take."""

    def __init__(self, parsed: dict[str, Any], needed: frozenset[str]) -> None:
        # Physical values (epoch ms, not datetime), like the columnar path.
        self.schema = fastavro.parse_schema(avro_types.strip_logical_types(parsed))
        self.needed = needed

    def decode(
        self, joined: bytes, buf: np.ndarray, start: np.ndarray, end: np.ndarray
    ) -> tuple[dict[str, RawColumn], np.ndarray, list[Failure]]:
        """Same contract as :meth:`FlatDecoder.decode`; columns are of kind ``object``."""
        records: list[dict[str, Any]] = []
        good: list[int] = []
        failures: list[Failure] = []
        reader = fastavro.schemaless_reader
        for i, (s, e) in enumerate(zip(start.tolist(), end.tolist())):
            stream = io.BytesIO(joined[s:e])
            try:
                record = reader(stream, self.schema, None)
            except EOFError as exc:
                failures.append(Failure(i, True, f"the {e - s}-byte record ends early: {exc}"))
                continue
            except Exception as exc:  # noqa: BLE001 - fastavro signals corrupt input with assorted exception types
                failures.append(Failure(i, False, f"{type(exc).__name__}: {exc}"))
                continue
            left = e - s - stream.tell()
            if left:
                failures.append(Failure(i, False, f"{left} byte(s) left over after the record: the writer schema does not describe this message"))
                continue
            records.append(record)  # type: ignore[arg-type]  # a record schema reads a dict
            good.append(i)
        columns: dict[str, RawColumn] = {}
        for name in self.needed:
            values = np.empty(len(records), dtype=object)
            values[:] = [record.get(name) for record in records]
            columns[name] = RawColumn("object", values)
        return columns, np.asarray(good, dtype=np.int64), failures
