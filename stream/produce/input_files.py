"""``driftline produce``'s input files: read Parquet, CSV or JSON lines, map and check every row.

Files are read in batches with pyarrow and mapped to the contract's fields by column name
(:class:`RowMapper`), every column converted to the type the Avro schema wants
(:func:`~driftline.stream.produce.coercion.convert_column`). A row that does not fit is never dropped
silently: it is left out of its :class:`SourceBatch` and described by a :class:`RowProblem` (its row
or line, its column, why); the command decides whether that aborts or is skipped and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from driftline.schemas.columnar_encoder import writer_fields
from driftline.schemas.contract import Contract
from driftline.schemas.errors import DriftlineError

from .coercion import convert_column

__all__ = [
    "InputError",
    "RowMapper",
    "RowProblem",
    "SourceBatch",
    "file_format",
    "read_file",
]

READ_BATCH_ROWS = 10_000
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


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
    positions: np.ndarray | None = None  # the 1-based positions in the file of the rows in ``columns``


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
        batch = SourceBatch(converted, rows, positions=np.asarray(positions, dtype=np.int64))
        if bad_rows:
            keep = np.ones(rows, dtype=bool)
            keep[list(bad_rows)] = False
            mask = pa.array(keep)
            batch.columns = {name: array.filter(mask) for name, array in converted.items()}
            batch.rows = int(keep.sum())
            batch.positions = np.asarray(positions, dtype=np.int64)[keep]
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
