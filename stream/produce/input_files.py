"""``driftline produce``'s input files: read Parquet, CSV or JSON lines, convert and check every row.

Files are read in batches with pyarrow and mapped to the contract's fields by column name
(:class:`RowMapper`); every value is converted to the type the Avro schema wants
(:func:`convert_column`: integers from whole floats, epoch milliseconds from timestamps, dates or
ISO-8601 text, numbers from CSV text). A row that does not fit is never dropped silently: it is
left out of its :class:`SourceBatch` and described by a :class:`RowProblem` (its row or line, its
column, why); the command decides whether that aborts or is skipped and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.schemas.columnar_encoder import INTEGER_RANGES, WriterField, does_not_fit, is_whole_number, writer_fields
from driftline.schemas.contract import Contract
from driftline.schemas.errors import DriftlineError

__all__ = [
    "InputError",
    "RowMapper",
    "RowProblem",
    "SourceBatch",
    "convert_column",
    "file_format",
    "read_file",
]

READ_BATCH_ROWS = 10_000
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TARGET = {"boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(), "double": pa.float64(),
           "string": pa.string(), "enum": pa.string()}


class InputError(DriftlineError):
    """The input cannot be read, or a row does not fit the contract."""


@dataclass(frozen=True)
class RowProblem:
    """A row that cannot be encoded: where (1-based line of a JSON-lines file, else data row) and why."""

    position: int
    unit: str
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.unit} {self.position}" + (f", column {self.field!r}" if self.field else "")
        return f"{where}: {self.reason}"


@dataclass
class SourceBatch:
    """Rows ready to encode (``columns``, only the good ones) and what was wrong with the others."""

    columns: dict[str, Any]
    rows: int
    invalid_rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)  # the first few
    writer_schema: Any = None  # None: the contract's


# -- converting columns to the writer's types ----------------------------------------------------------


def _epoch_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not is_whole_number(value):  # NaN and ±inf included: int() of infinity raises OverflowError
            raise ValueError(f"{value!r} is not whole epoch milliseconds")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is neither epoch milliseconds nor an ISO-8601 time") from None
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # naive times are UTC
        return (moment - _EPOCH) // timedelta(milliseconds=1)
    raise ValueError(f"{value!r} is not a time")


def _python_value(spec: WriterField, value: Any, text: bool) -> Any:
    """``value`` as the writer field wants it, or ``ValueError`` saying why it cannot be."""
    kind = spec.avro_type
    if kind in ("string", "enum"):
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        if kind == "enum" and value not in spec.symbols:
            raise ValueError(f"{value!r} is not one of the enum's symbols {list(spec.symbols)}")
        return value
    if spec.timestamp:
        return _epoch_ms(value)
    if isinstance(value, str):
        if not text:
            raise ValueError(f"{value!r} is text, the field is {kind}")
        stripped = value.strip()
        if kind == "boolean":
            if stripped.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{value!r} is not true/false")
            return stripped.lower() in ("true", "1")
        try:
            value = int(stripped) if kind in ("int", "long") and stripped.lstrip("+-").isdigit() else float(stripped)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if kind == "boolean":
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise ValueError(f"{value!r} is not a boolean")
    if not isinstance(value, (int, float)) or (isinstance(value, bool) and kind in ("float", "double")):
        raise ValueError(f"{value!r} is not a number")
    if kind in ("float", "double"):
        return float(value)
    if isinstance(value, float) and not is_whole_number(value):
        raise ValueError(f"{value!r} is not a whole number ({kind})")
    number = int(value)
    low, high = INTEGER_RANGES[kind]
    if not low <= number <= high:
        raise ValueError(does_not_fit(number, kind))
    return number


def _by_element(spec: WriterField, values: list[Any], text: bool) -> tuple[pa.Array, dict[int, str]]:
    """Convert element by element (the slow path: mixed types, or text that fails a vectorised cast)."""
    out: list[Any] = []
    bad: dict[int, str] = {}
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(_python_value(spec, value, text))
        except ValueError as exc:
            bad[i] = str(exc)
            out.append(None)
    return pa.array(out, type=pa.int64() if spec.timestamp else _TARGET[spec.avro_type]), bad


def _numeric(spec: WriterField, array: pa.Array) -> tuple[pa.Array, dict[int, str]] | None:
    """Vectorised conversion of a numeric, boolean or temporal column; None if the types do not mix."""
    kind = spec.avro_type
    source = array.type
    if spec.timestamp and (pa.types.is_timestamp(source) or pa.types.is_date(source)):
        tz = source.tz if pa.types.is_timestamp(source) else None
        array = array.cast(pa.timestamp("ms", tz=tz), safe=False).cast(pa.int64())
        source = array.type
    if not (pa.types.is_integer(source) or pa.types.is_floating(source) or pa.types.is_boolean(source)):
        return None
    if (kind == "boolean" and pa.types.is_floating(source)) or (spec.timestamp and pa.types.is_boolean(source)):
        return None
    valid = np.asarray(array.is_valid(), dtype=bool)
    numbers = np.asarray(array.fill_null(False if pa.types.is_boolean(source) else 0).to_numpy(zero_copy_only=False))
    bad = np.zeros(len(array), dtype=bool)
    if kind in ("float", "double"):
        floats = numbers.astype(np.float64)
        if kind == "float":
            with np.errstate(invalid="ignore"):
                bad = np.isfinite(floats) & (np.abs(floats) > np.finfo(np.float32).max)
        converted = pa.array(floats, type=pa.float64(), mask=~valid | bad).cast(_TARGET[kind], safe=False)
    elif kind == "boolean":
        bad = ~np.isin(numbers, (0, 1))
        converted = pa.array(numbers.astype(bool), mask=~valid | bad)
    else:
        low, high = INTEGER_RANGES[kind]
        if pa.types.is_floating(source):
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(numbers) | (numbers != np.floor(numbers)) | (numbers < low) | (numbers >= float(high) + 1)
            integers = np.where(bad, 0, numbers).astype(np.int64)
        elif pa.types.is_uint64(source):
            bad = numbers > np.uint64(high)
            integers = np.where(bad, 0, numbers).astype(np.int64)
        else:
            integers = numbers.astype(np.int64)
            bad = (integers < low) | (integers > high)
        converted = pa.array(integers, mask=~valid | bad).cast(pa.int64() if spec.timestamp else _TARGET[kind])
    rows = np.flatnonzero(bad & valid).tolist()
    # Only the first few rows of a batch are ever reported; the others need no particular reason.
    return converted, {i: _why(spec, array[i].as_py()) if n < 5 else f"does not fit {kind}" for n, i in enumerate(rows)}


def _why(spec: WriterField, value: Any) -> str:
    try:
        _python_value(spec, value, False)
    except ValueError as exc:
        return str(exc)
    return f"{value!r} does not fit {spec.avro_type}"


def convert_column(spec: WriterField, column: pa.Array | pa.ChunkedArray | list[Any], *, text: bool) -> tuple[pa.Array, dict[int, str]]:
    """A column as the writer field wants it, and the rows (0-based) that cannot be converted, with why.

    ``text``: strings are parsed as numbers and booleans (CSV); otherwise a string in a numeric field
    is a wrong type. Time fields take epoch milliseconds, timestamps, dates and ISO-8601 text
    everywhere (naive times are UTC). Nulls stay nulls; whether the field may be null is checked later.
    """
    if isinstance(column, list):
        try:
            column = pa.array(column)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return _by_element(spec, column, text)
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.int64() if spec.timestamp else _TARGET[spec.avro_type]), {}
    is_text = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
    if spec.avro_type in ("string", "enum") and is_text:
        array = array.cast(pa.string())
        if spec.avro_type == "string":
            return array, {}
        unknown = np.asarray(pc.invert(pc.is_in(array, value_set=pa.array(spec.symbols))).fill_null(False), dtype=bool)
        if not unknown.any():
            return array, {}
    elif not is_text:
        converted = _numeric(spec, array) if spec.avro_type not in ("string", "enum") else None
        if converted is not None:
            return converted
    elif text or spec.timestamp:
        # The fast path parses plain numbers, booleans and epoch milliseconds, then checks them as
        # any numeric column; anything else ("41.0", ISO times, bad cells) goes element by element.
        integral = spec.timestamp or spec.avro_type in ("int", "long")
        wide = pa.int64() if integral else pa.bool_() if spec.avro_type == "boolean" else pa.float64()
        try:
            parsed = pc.cast(array, wide)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        else:
            converted = _numeric(spec, parsed)
            if converted is not None:
                return converted
    return _by_element(spec, array.to_pylist(), text)


class RowMapper:
    """Map a file's columns to a contract's fields and convert them batch by batch.

    Parameters
    ----------
    contract
        The model's contract (the writer schema).
    model_version
        The model version of rows when the file has no such column.
    unit
        How positions are named in messages (``row`` or ``line``).

    A file may lack the model-name column (it is the contract's model), the model-version column
    when ``model_version`` is given, and any field with an Avro default; any other missing column is
    an :class:`InputError`. Columns that are not contract fields are ignored.
    """

    def __init__(self, contract: Contract, *, model_version: str | None = None, unit: str = "row") -> None:
        self.contract = contract
        self.fields = writer_fields(contract.parsed_schema)
        self.unit = unit
        self.fill: dict[str, Any] = {contract.role_field("model_name").name: contract.model}
        if model_version is not None:
            self.fill[contract.role_field("model_version").name] = model_version
        for spec in self.fields:
            if spec.has_default and spec.name not in self.fill:
                self.fill[spec.name] = spec.default

    def check_columns(self, names: Sequence[str], source: str) -> None:
        """``InputError`` if the file lacks a field that has no default."""
        missing = [spec.name for spec in self.fields if spec.name not in names and spec.name not in self.fill]
        if missing:
            raise InputError(
                f"{source}: no column {', '.join(map(repr, missing))}, which contract {self.contract.label} requires "
                f"(the file's columns: {', '.join(names) or 'none'})"
            )

    def conform(self, columns: Mapping[str, Any], rows: int, positions: np.ndarray, *, text: bool) -> SourceBatch:
        """Convert one batch; ``positions`` are the rows' 1-based positions in the file."""
        converted: dict[str, pa.Array] = {}
        bad_rows: dict[int, tuple[str, str]] = {}
        for spec in self.fields:
            column = columns.get(spec.name)
            if column is None:
                value = self.fill[spec.name]
                column = pa.nulls(rows) if value is None else pa.array([value] * rows)
            array, bad = convert_column(spec, column, text=text)
            if not spec.nullable and array.null_count > len(bad):
                for i in np.flatnonzero(np.asarray(array.is_null(), dtype=bool)).tolist():
                    bad.setdefault(i, "missing or null, and the field is not nullable")
            for i, reason in bad.items():
                bad_rows.setdefault(i, (spec.name, reason))
            converted[spec.name] = array
        batch = SourceBatch(converted, rows)
        if bad_rows:
            keep = np.ones(rows, dtype=bool)
            keep[list(bad_rows)] = False
            mask = pa.array(keep)
            batch.columns = {name: array.filter(mask) for name, array in converted.items()}
            batch.rows = int(keep.sum())
            batch.invalid_rows = len(bad_rows)
            batch.problems = [
                RowProblem(int(positions[i]), self.unit, *bad_rows[i]) for i in sorted(bad_rows)[:5]
            ]
        return batch


# -- reading files -----------------------------------------------------------------------------------


def file_format(path: Path, given: str | None) -> str:
    """``parquet``, ``csv`` or ``jsonl``: ``given``, else from the file's extension."""
    if given:
        return given
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: cannot tell the format from the extension {path.suffix!r}; pass --format parquet|csv|jsonl")
    return fmt


def read_file(path: Path, mapper: RowMapper, fmt: str | None = None, *, batch_rows: int = READ_BATCH_ROWS) -> Iterator[SourceBatch]:
    """Batches of ``path`` (Parquet, CSV or JSON lines) converted to the mapper's contract.

    Raises
    ------
    InputError
        The file cannot be read or parsed, or lacks a required column.
    """
    fmt = file_format(path, fmt)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if fmt == "parquet":
            yield from _read_parquet(path, mapper, batch_rows)
        elif fmt == "csv":
            yield from _read_csv(path, mapper, batch_rows)
        elif fmt == "jsonl":
            yield from _read_jsonl(path, mapper, batch_rows)
        else:
            raise InputError(f"unknown format {fmt!r}; use parquet, csv or jsonl")
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as {fmt}: {exc}") from exc


def _read_parquet(path: Path, mapper: RowMapper, batch_rows: int) -> Iterator[SourceBatch]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    mapper.check_columns(names, str(path))
    wanted = [spec.name for spec in mapper.fields if spec.name in names]
    done = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted):
        n = batch.num_rows
        columns = {name: batch.column(name) for name in wanted}
        yield mapper.conform(columns, n, np.arange(done + 1, done + n + 1), text=False)
        done += n


def _read_csv(path: Path, mapper: RowMapper, batch_rows: int) -> Iterator[SourceBatch]:
    import pyarrow.csv as pacsv

    skip_all = pacsv.ParseOptions(invalid_row_handler=lambda row: "skip")  # the probe only wants the header
    with pacsv.open_csv(path, parse_options=skip_all) as probe:
        names = probe.schema.names
    mapper.check_columns(names, str(path))
    wanted = [spec.name for spec in mapper.fields if spec.name in names]
    malformed: list[RowProblem] = []

    def on_malformed(row: Any) -> str:
        malformed.append(RowProblem(row.number or 0, "line", None, f"{row.actual_columns} fields, the header has {row.expected_columns}"))
        return "skip"

    # Every contract column is read as text and converted here, so that a bad cell names its row.
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in wanted}, include_columns=wanted, strings_can_be_null=True, null_values=[""]
    )
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=1 << 22),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_malformed),
        convert_options=convert,
    )
    done = 0
    with reader:
        for record_batch in reader:
            for start in range(0, record_batch.num_rows, batch_rows):
                part = record_batch.slice(start, batch_rows)
                n = part.num_rows
                batch = mapper.conform({name: part.column(name) for name in wanted}, n, np.arange(done + 1, done + n + 1), text=True)
                done += n
                if malformed:
                    batch.invalid_rows += len(malformed)
                    batch.problems = malformed[:5] + batch.problems
                    malformed.clear()
                yield batch
    if malformed:
        yield SourceBatch({name: pa.array([], type=pa.string()) for name in wanted}, 0, len(malformed), malformed[:5])


def _read_jsonl(path: Path, mapper: RowMapper, batch_rows: int) -> Iterator[SourceBatch]:
    names = [spec.name for spec in mapper.fields]
    with path.open("r", encoding="utf-8") as lines:
        number = 0
        while True:
            records: list[Mapping[str, Any]] = []
            positions: list[int] = []
            broken: list[RowProblem] = []
            for line in lines:
                number += 1
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    broken.append(RowProblem(number, "line", None, f"not valid JSON: {exc.msg} at column {exc.colno}"))
                    continue
                if not isinstance(record, dict):
                    broken.append(RowProblem(number, "line", None, f"a JSON {type(record).__name__}, not an object"))
                    continue
                records.append(record)
                positions.append(number)
                if len(records) >= batch_rows:
                    break
            if not records and not broken:
                return
            fill = mapper.fill
            columns = {name: [r.get(name, fill.get(name)) for r in records] for name in names}
            batch = mapper.conform(columns, len(records), np.asarray(positions, dtype=np.int64), text=False)
            if broken:
                batch.invalid_rows += len(broken)
                batch.problems = sorted(broken + batch.problems, key=lambda p: p.position)[:5]
            yield batch
