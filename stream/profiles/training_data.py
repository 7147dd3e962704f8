"""Training data as the monitor's reference: a Parquet file read with pyarrow into the engine's columns."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from driftline.schemas.contract import Contract
from driftline.stream.monitor.profile import ProfileError

__all__ = ["TrainingData", "columns_from_table", "event_times_from_table", "labels_from_table", "read_training_data"]


class TrainingData(NamedTuple):
    """What a training file gives a reference profile."""

    columns: dict[str, np.ndarray]
    model_version: str
    event_times_ms: np.ndarray | None  # epoch milliseconds, when the file has the contract's event-time column
    labels: np.ndarray | None = None  # the observed outcome per row (NaN where unknown), with --label-column


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


def event_times_from_table(table: pa.Table, contract: Contract) -> np.ndarray | None:
    """The contract's event-time column as epoch milliseconds (None if the table lacks it).

    Arrow timestamps of any unit are converted; integers are taken as milliseconds, as the
    contract's ``timestamp-millis`` says. Rows without a time are dropped (they cannot date anything).

    Raises
    ------
    ProfileError
        The column holds something else than timestamps or integers.
    """
    name = contract.role_field("event_time").name
    if name not in table.column_names:
        return None
    column = table.column(name)
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())
    elif not pa.types.is_integer(column.type):
        raise ProfileError(f"column {name!r} is {column.type}; the contract's event time needs timestamps or epoch milliseconds")
    values = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    times: np.ndarray = values[np.isfinite(values)].astype(np.int64)
    return times


def labels_from_table(table: pa.Table, name: str) -> np.ndarray:
    """The outcome column ``name`` as float64 (NaN where null).

    Raises
    ------
    ProfileError
        The table has no such column, or it does not hold numbers (or booleans).
    """
    if name not in table.column_names:
        raise ProfileError(f"no label column {name!r}; the file's columns are {', '.join(table.column_names)}")
    column = table.column(name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)):
        raise ProfileError(f"label column {name!r} is {column.type}; labels are numbers (0/1 for a classifier)")
    labels: np.ndarray = column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    return labels


def read_training_data(
    path: Path, contract: Contract, model_version: str | None = None, label_column: str | None = None
) -> TrainingData:
    """The monitored columns of a Parquet file, the model version they describe and their event times.

    ``model_version`` defaults to the most frequent value of the file's ``model_version`` column;
    ``label_column`` names the observed outcome of each row, if the training data is labelled.

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
    labels = None if label_column is None else labels_from_table(table, label_column)
    return TrainingData(columns_from_table(table, contract), model_version, event_times_from_table(table, contract), labels)
