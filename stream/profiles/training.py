"""``driftline baseline``: reference profile of a model version from a Parquet file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from driftline.schemas.contract import Catalog, Contract

from driftline.stream.monitor.profile import ProfileError, ReferenceProfile, build_reference_profile, monitored_fields

__all__ = ["columns_from_table", "load_profile", "profile_path", "run_baseline"]


def profile_path(profiles_dir: Path, model: str, model_version: str) -> Path:
    """Where the profile of one model version is stored."""
    safe_version = "".join(c if c.isalnum() or c in "._-" else "_" for c in model_version)
    return profiles_dir / model / f"{safe_version}.json"


def load_profile(profiles_dir: Path, model: str, model_version: str) -> ReferenceProfile:
    path = profile_path(profiles_dir, model, model_version)
    try:
        return ReferenceProfile.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProfileError(f"no reference profile for {model} {model_version} at {path}; run `driftline baseline`") from exc


def columns_from_table(table: pa.Table, contract: Contract) -> dict[str, np.ndarray]:
    """Contract fields of an Arrow table as engine columns (float64 with NaN, or object arrays of str)."""
    columns: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for spec in monitored_fields(contract):
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


def run_baseline(
    *,
    model: str,
    input_path: Path,
    model_version: str | None,
    profiles_dir: Path,
    schemas_dir: Path | None = None,
    false_alarm_rate: float = 1e-6,
) -> Path:
    """Read ``input_path``, build and store the reference profile; return the profile's path."""
    catalog = Catalog.load(schemas_dir) if schemas_dir is not None else Catalog.load()
    contract = catalog.contract(model)
    try:
        table = pq.read_table(input_path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ProfileError(f"cannot read Parquet file {input_path}: {exc}") from exc
    if model_version is None:
        if "model_version" not in table.column_names:
            raise ProfileError(f"{input_path} has no model_version column; pass --model-version")
        versions = Counter(v for v in table.column("model_version").to_pylist() if v is not None)
        if not versions:
            raise ProfileError(f"{input_path}: model_version column is empty; pass --model-version")
        model_version = versions.most_common(1)[0][0]
    profile = build_reference_profile(
        contract,
        columns_from_table(table, contract),
        model_version=str(model_version),
        false_alarm_rate=false_alarm_rate,
        source=str(input_path),
    )
    path = profile_path(profiles_dir, model, str(model_version))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(profile.to_json(), encoding="utf-8")
    tmp.replace(path)  # atomic: a crash never leaves a half-written profile behind
    return path
