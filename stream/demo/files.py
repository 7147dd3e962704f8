"""Synthetic events written to a file: what ``driftline generate`` makes (training data, ``produce`` input)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from driftline.schemas.contract import Contract

from .sources import synthetic_batches

__all__ = ["write_events"]


def write_events(
    path: Path, fmt: str, contract: Contract, events: int, *, seed: int = 1, events_per_second: float = 10.0, model_version: str = "v1"
) -> int:
    """Write ``events`` clean synthetic events of ``contract`` to ``path`` as ``parquet``, ``jsonl`` or ``csv``; return the rows.

    Event times are epoch milliseconds; nulls are empty (CSV) or null. The file appears complete or
    not at all (it is written beside ``path`` and renamed).
    """
    if fmt not in ("parquet", "jsonl", "csv"):
        raise ValueError(f"fmt must be parquet, jsonl or csv, got {fmt!r}")
    tables = [_table(batch.columns, contract) for batch in synthetic_batches(
        contract, events, seed=seed, events_per_second=events_per_second, model_version=model_version)]
    table = pa.concat_tables(tables)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if fmt == "parquet":
            pq.write_table(table, tmp)
        elif fmt == "csv":
            pa_csv.write_csv(table, tmp)
        else:
            with tmp.open("w", encoding="utf-8") as out:
                for row in table.to_pylist():
                    out.write(json.dumps(row, allow_nan=False) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return int(table.num_rows)


def _table(columns: dict[str, Any], contract: Contract) -> pa.Table:
    """One batch as an Arrow table with the contract's fields in contract order (NaN of a numeric field: null)."""
    arrays = {}
    for spec in contract.fields:
        column = columns[spec.name]
        if isinstance(column, (pa.Array, pa.ChunkedArray)):
            arrays[spec.name] = column
        else:
            arrays[spec.name] = pa.array(column, from_pandas=True)
    return pa.table(arrays)
