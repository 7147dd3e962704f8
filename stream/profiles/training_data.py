"""Training data as the monitor's reference: a Parquet file read with pyarrow into the engine's columns."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from driftline.schemas.contract import Contract
from driftline.stream.monitor.profile import ProfileError

__all__ = ["columns_from_table", "read_training_data"]


def columns_from_table(table: pa.Table, contract: Contract) -> dict[str, np.ndarray]:
    """Contract fields of an Arrow table as engine columns (float64 with NaN, or object arrays of str).

    Raises
    ------
    ProfileError
        A monitored field is missing or of the wrong type (every problem is named).
    """
    columns: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for spec in contract.monitored_fields:
        if spec.name not in table.column_names:
            problems.append(f"missing column {spec.name!r}")
            continue
        column = table.column(spec.name)
        if spec.kind == "categorical":
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_dictionary(column.type)):
                problems.append(f"column {spec.name!r} is {column.type}, the contract expects strings")
                continue
            columns[spec.name] = np.asarray(column.to_pylist(), dtype=object)
        else:
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)):
                problems.append(f"column {spec.name!r} is {column.type}, the contract expects numbers")
                continue
            columns[spec.name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    if problems:
        raise ProfileError("reference data does not fit contract " f"{contract.model} v{contract.version}: " + "; ".join(problems))
    return columns


def read_training_data(path: Path, contract: Contract, model_version: str | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The monitored columns of a Parquet file, and the model version they describe.

    ``model_version`` defaults to the most frequent value of the file's ``model_version`` column.

    Raises
    ------
    ProfileError
        The file does not exist or is not Parquet, it does not fit the contract, or it names no
        model version and none was given.
    """
    if not path.is_file():
        raise ProfileError(f"no such file: {path}" if not path.exists() else f"{path} is not a file")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ProfileError(f"{path} is not a readable Parquet file: {exc}") from exc
    if model_version is None:
        if "model_version" not in table.column_names:
            raise ProfileError(f"{path} has no model_version column; pass --model-version")
        versions = Counter(v for v in table.column("model_version").to_pylist() if v is not None)
        if not versions:
            raise ProfileError(f"{path}: the model_version column is empty; pass --model-version")
        model_version = str(versions.most_common(1)[0][0])
    return columns_from_table(table, contract), model_version
