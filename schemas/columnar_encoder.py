"""The columnar Avro encoder: a batch of events, column by column (numpy), into one payload per row.

:class:`BatchEncoder` writes, byte for byte, what ``fastavro.schemaless_writer`` writes for each
row of a flat record schema (every contract is one), at a fraction of the per-record cost; the
producer (:mod:`~driftline.stream.produce.producer`) puts it behind its wire format's header. Each field
becomes a few *segments* (the bytes of one part of every row: a union branch, a varint length,
the value) and the segments are interleaved row by row at the end.

:data:`INTEGER_RANGES`, :func:`is_whole_number` and :func:`does_not_fit` are the rules every path
of ``driftline produce`` applies to Avro ``int`` and ``long`` values (the columnar encoder here,
the per-record :meth:`~driftline.stream.produce.producer.EventProducer.send`, and the input conversion of
:mod:`~driftline.stream.produce.coercion`), so that all of them refuse the same values with the same words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import avro_types
from .errors import EncodeError

__all__ = [
    "INTEGER_RANGES",
    "BatchEncoder",
    "WriterField",
    "does_not_fit",
    "is_whole_number",
    "writer_fields",
]

#: The values an Avro ``int`` (32 bits) and ``long`` (64 bits) can hold, lowest and highest.
INTEGER_RANGES: Mapping[str, tuple[int, int]] = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def is_whole_number(value: float) -> bool:
    """Whether a float is finite and has no fraction (what an Avro ``int`` or ``long`` may take from it)."""
    return math.isfinite(value) and value == math.floor(value)


def does_not_fit(number: object, avro_type: str) -> str:
    """Why ``number`` cannot be written to a field of ``avro_type`` (``int`` or ``long``): it is out of range."""
    return f"{number} does not fit {'an int (32 bits)' if avro_type == 'int' else 'a long'}"


@dataclass(frozen=True)
class WriterField:
    """One field of a flat writer record, as the encoders see it."""

    name: str
    avro_type: str  # boolean, int, long, float, double, string or enum
    nullable: bool
    null_branch: int  # union branch index of null and of the value (-1: not a union)
    value_branch: int
    symbols: tuple[str, ...]
    has_default: bool
    default: Any
    timestamp: bool


def writer_fields(parsed: Mapping[str, Any]) -> tuple[WriterField, ...]:
    """Every field of a flat, fastavro-parsed record schema; ``ValueError`` for anything else."""
    named = avro_types.named_types(parsed)
    plans = []
    for avro_field in parsed.get("fields", ()):
        name = str(avro_field["name"])
        avro_type = avro_field["type"]
        null_branch = value_branch = -1
        if isinstance(avro_type, list):
            others = [b for b in avro_type if b != "null"]
            if len(avro_type) != 2 or len(others) != 1:
                raise ValueError(f"field {name!r}: only unions of null and one type can be encoded by columns")
            null_branch = avro_type.index("null")
            value_branch = 1 - null_branch
            avro_type = others[0]
        if isinstance(avro_type, str) and avro_type in named:
            avro_type = named[avro_type]
        base = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
        if base not in ("boolean", "int", "long", "float", "double", "string", "enum"):
            raise ValueError(f"field {name!r}: type {avro_types.type_label(avro_type, named)} cannot be encoded by columns")
        plans.append(
            WriterField(
                name=name,
                avro_type=str(base),
                nullable=null_branch >= 0,
                null_branch=null_branch,
                value_branch=value_branch,
                symbols=tuple(avro_type.get("symbols", ())) if base == "enum" else (),
                has_default="default" in avro_field,
                default=avro_field.get("default"),
                timestamp=isinstance(avro_type, dict) and avro_type.get("logicalType") in ("timestamp-millis", "local-timestamp-millis"),
            )
        )
    return tuple(plans)


@dataclass
class _Segment:
    """Bytes of one part of every row: ``flat`` holds the rows' bytes back to back.

    ``width`` is set when every row has exactly that many bytes; else ``lengths`` has one per row.
    """

    flat: np.ndarray
    lengths: np.ndarray | None = None
    width: int | None = None

    @property
    def sizes(self) -> np.ndarray | int:
        """Bytes per row: the constant width, or the per-row lengths."""
        if self.lengths is not None:
            return self.lengths
        assert self.width is not None
        return self.width


def _zigzag(values: np.ndarray) -> np.ndarray:
    signed = values.astype(np.int64, copy=False)
    return ((signed << 1) ^ (signed >> 63)).view(np.uint64)


def _varints(unsigned: np.ndarray) -> _Segment:
    """Avro (protobuf-style) base-128 varints of unsigned 64-bit values."""
    n = len(unsigned)
    nbytes = np.ones(n, dtype=np.int64)
    for k in range(1, 10):
        more = unsigned >= np.uint64(1 << (7 * k))
        if not more.any():
            break
        nbytes += more
    width = int(nbytes.max()) if n else 1
    if width == 1:
        return _Segment(unsigned.astype(np.uint8), width=1)
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    grid = ((unsigned[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    position = np.arange(width)
    grid[position[None, :] < (nbytes - 1)[:, None]] |= 0x80
    return _Segment(grid[position[None, :] < nbytes[:, None]], lengths=nbytes)


def _fail(plan: WriterField, row: int, message: str) -> EncodeError:
    return EncodeError(f"field {plan.name!r}, row {row}: {message}")


def _wrong_column(plan: WriterField, values: pa.Array, rows: np.ndarray, target: str | None = None) -> EncodeError:
    """A column whose Arrow type the field cannot take (``target``: how to name the field's type)."""
    return _fail(plan, int(rows[0]) if len(rows) else 0, f"a {values.type} column cannot be written as {target or plan.avro_type}")


def _integers(plan: WriterField, values: pa.Array, rows: np.ndarray) -> np.ndarray:
    """``int64`` values of an int/long field; refuses fractions, non-finite values, overflow."""
    kind = values.type
    if pa.types.is_timestamp(kind):
        values = values.cast(pa.timestamp("ms", tz=kind.tz), safe=False).cast(pa.int64())
        kind = values.type
    if pa.types.is_boolean(kind):
        return np.asarray(values.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_floating(kind):
        floats = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(floats) | (floats != np.floor(floats)) | (np.abs(floats) >= 2.0**63)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise _fail(plan, int(rows[at]), f"{float(floats[at])!r} is not a whole number ({plan.avro_type})")
        integers = floats.astype(np.int64)
    elif pa.types.is_integer(kind):
        highest = INTEGER_RANGES["long"][1]
        if pa.types.is_uint64(kind) and len(values) and pc.max(values).as_py() > highest:
            at = int(np.flatnonzero(np.asarray(values.to_numpy(zero_copy_only=False)) > highest)[0])
            raise _fail(plan, int(rows[at]), does_not_fit(values[at].as_py(), "long"))
        integers = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        raise _wrong_column(plan, values, rows)
    if plan.avro_type == "int" and len(integers):
        low, high = INTEGER_RANGES["int"]
        bad = (integers < low) | (integers > high)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise _fail(plan, int(rows[at]), does_not_fit(int(integers[at]), "int"))
    return integers


def _strings(plan: WriterField, values: pa.Array, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, data)`` of a string column without nulls."""
    kind = values.type
    if pa.types.is_dictionary(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        values = values.cast(pa.string())
    elif not pa.types.is_string(values.type):
        raise _wrong_column(plan, values, rows)
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=len(values) + 1, offset=values.offset * 4)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, dtype=np.uint8)
    return offsets.astype(np.int64), data[offsets[0]:offsets[-1]]


def _value_segments(plan: WriterField, values: pa.Array, rows: np.ndarray) -> list[_Segment]:
    """Segments of non-null values; ``rows`` are their row numbers (for messages)."""
    kind = plan.avro_type
    if kind in ("int", "long"):
        return [_varints(_zigzag(_integers(plan, values, rows)))]
    if kind in ("float", "double"):
        if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
            raise _wrong_column(plan, values, rows)
        floats = np.asarray(values.to_numpy(zero_copy_only=False), dtype="<f8" if kind == "double" else "<f4")
        return [_Segment(floats.view(np.uint8), width=8 if kind == "double" else 4)]
    if kind == "boolean":
        if not pa.types.is_boolean(values.type):
            raise _wrong_column(plan, values, rows)
        return [_Segment(np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.uint8), width=1)]
    if kind == "enum":
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type) or pa.types.is_dictionary(values.type)):
            raise _wrong_column(plan, values, rows, "an enum")
        index = pc.index_in(values.cast(pa.string()), value_set=pa.array(plan.symbols, pa.string()))
        if index.null_count:
            at = int(np.flatnonzero(np.asarray(index.is_null()))[0])
            raise _fail(plan, int(rows[at]), f"{values[at].as_py()!r} is not a symbol of the enum {list(plan.symbols)}")
        return [_varints(_zigzag(np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)))]
    offsets, data = _strings(plan, values, rows)
    lengths = np.diff(offsets)
    return [_varints(_zigzag(lengths)), _Segment(data, lengths=lengths)]


class BatchEncoder:
    """Avro-encode a batch of events column by column (numpy), for one flat writer schema.

    Produces, byte for byte, what ``fastavro.schemaless_writer`` writes for each row, behind
    ``header`` (the wire format's prefix), at a fraction of the per-record cost.

    Parameters
    ----------
    writer_schema
        A flat record schema (fields of boolean, int, long, float, double, string, enum, or a union
        of null and one of those — every contract is one): JSON text, JSON value or fastavro-parsed.
    header
        Bytes written before every body.

    Columns are Arrow arrays (or anything ``pyarrow.array`` accepts). A null is the Avro null of a
    nullable field; for numpy float columns of *nullable* fields NaN also means null (the
    generator's convention), elsewhere NaN is the value NaN. Timestamp columns of
    ``timestamp-millis`` fields are written as epoch milliseconds.

    Examples
    --------
    >>> encoder = BatchEncoder({"type": "record", "name": "Score", "fields": [
    ...     {"name": "id", "type": "string"}, {"name": "score", "type": ["null", "double"]}]})
    >>> encoder.encode({"id": ["a", "b"], "score": [0.5, None]})
    [b'\\x02a\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\xe0?', b'\\x02b\\x00']
    """

    def __init__(self, writer_schema: Any, header: bytes = b"") -> None:
        self.parsed = avro_types.parse_schema(writer_schema)
        if self.parsed.get("type") != "record":
            raise ValueError("writer_schema must be an Avro record schema")
        self.header = bytes(header)
        self.fields = writer_fields(self.parsed)

    def encode(self, columns: pa.RecordBatch | pa.Table | Mapping[str, Any]) -> list[bytes]:
        """One payload per row.

        Raises
        ------
        EncodeError
            A value the writer schema cannot hold (a null in a non-nullable field, a fraction in an
            int field, an unknown enum symbol, a column of the wrong type, a missing column without
            default), naming the field and the row (0-based).
        """
        arrays, n = self._arrays(columns)
        if n == 0:
            return []
        segments: list[_Segment] = []
        for plan in self.fields:
            segments.extend(self._field_segments(plan, arrays.get(plan.name), n))
        return _assemble(self.header, segments, n)

    def _arrays(self, columns: pa.RecordBatch | pa.Table | Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        if isinstance(columns, (pa.RecordBatch, pa.Table)):
            return {name: columns.column(name) for name in columns.schema.names}, columns.num_rows
        lengths = {len(column) for column in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns: all columns must have the same length, got lengths {sorted(lengths)}")
        return dict(columns), lengths.pop() if lengths else 0

    def _field_segments(self, plan: WriterField, column: Any, n: int) -> list[_Segment]:
        if column is None:
            if not plan.has_default:
                raise EncodeError(f"field {plan.name!r}: no such column, and the field has no default")
            column = pa.nulls(n) if plan.default is None else pa.array([plan.default] * n)
        array = _as_arrow(column, plan.nullable)
        if len(array) != n:
            raise ValueError(f"columns: column {plan.name!r} has {len(array)} rows, expected {n}")
        rows = np.arange(n)
        if array.null_count and not plan.nullable:
            at = int(np.flatnonzero(np.asarray(array.is_null()))[0])
            raise _fail(plan, at, f"null, but the field is not nullable ({plan.avro_type})")
        if not plan.nullable:
            return _value_segments(plan, array, rows)
        valid = np.asarray(array.is_valid(), dtype=bool) if array.null_count else np.ones(n, dtype=bool)
        branch = np.where(valid, plan.value_branch, plan.null_branch).astype(np.uint8) * np.uint8(2)  # zigzag(0|1)
        present = np.flatnonzero(valid)
        values = array.drop_null() if array.null_count else array
        parts = [_Segment(branch, width=1)]
        for segment in _value_segments(plan, values, present) if len(present) else []:
            lengths = np.zeros(n, dtype=np.int64)
            lengths[present] = segment.sizes
            parts.append(_Segment(segment.flat, lengths=lengths))
        return parts


def _as_arrow(column: Any, nullable: bool) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    if isinstance(column, pa.Array):
        return column
    return pa.array(column, from_pandas=nullable)  # from_pandas: NaN is null


def _assemble(header: bytes, segments: list[_Segment], n: int) -> list[bytes]:
    """Interleave the segments row by row behind ``header``; one ``bytes`` per row."""
    sizes = np.full(n, len(header), dtype=np.int64)
    for segment in segments:
        sizes += segment.sizes
    ends = np.cumsum(sizes)
    starts = ends - sizes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    if header:
        out[starts[:, None] + np.arange(len(header))] = np.frombuffer(header, dtype=np.uint8)
    cursor = starts + len(header)
    for segment in segments:
        if segment.width is not None:
            if segment.width == 1:
                out[cursor] = segment.flat
            else:
                out[cursor[:, None] + np.arange(segment.width)] = segment.flat.reshape(n, segment.width)
            cursor += segment.width
            continue
        lengths = segment.lengths
        assert lengths is not None
        if len(segment.flat):
            source_starts = np.cumsum(lengths) - lengths
            out[np.repeat(cursor - source_starts, lengths) + np.arange(len(segment.flat))] = segment.flat
        cursor += lengths
    joined = out.tobytes()
    return [joined[start:end] for start, end in zip(starts.tolist(), ends.tolist())]
