"""Model contracts: Avro record schemas with value-contract attributes, parsed into typed field contracts.

A contract is an Avro record schema with a record-level attribute
``"driftline": {"model": ..., "contract_version": ...}`` and, on every field, a ``"driftline"``
attribute naming the field's role and its value contract::

    {"name": "debt_to_income", "type": "double",
     "driftline": {"role": "feature", "range": [0, 1], "allow_nan": false, "on_violation": "reject"}}

Field attributes: ``role`` (required: ``id``, ``event_time``, ``model_name``, ``model_version``,
``feature``, ``prediction_score``, ``prediction_class``); for features and predictions also
``range`` (``[low, high]``, ``null`` for an open bound; numeric fields), ``categories`` (known values
of a categorical field), ``max_null_fraction`` (a window-level budget of nulls; nullable fields),
``allow_nan`` (NaN/inf are legal values; float and double fields) and ``on_violation`` (``reject``, the
default: the event goes to the dead-letter topic; ``count``: the event is accepted and the violation
counted). Unknown attributes are an error, so a typo never silently disables a check.

:func:`parse_contract` and :func:`load_contract` turn such a schema into a :class:`Contract`, one
:class:`FieldContract` per field; the :class:`~driftline.schemas.contract_catalog.Catalog` holds a directory of them.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import avro_types
from .errors import ContractError, WriterSchemaError

__all__ = [
    "CONTRACT_KINDS",
    "IDENTITY_ROLES",
    "MONITORED_ROLES",
    "PREDICTION_ROLES",
    "Contract",
    "FieldContract",
    "load_contract",
    "parse_contract",
]

IDENTITY_ROLES = ("id", "event_time", "model_name", "model_version")
PREDICTION_ROLES = ("prediction_score", "prediction_class")
MONITORED_ROLES = ("feature", *PREDICTION_ROLES)
_FIELD_KEYS = frozenset({"role", "range", "categories", "max_null_fraction", "allow_nan", "on_violation"})
_RECORD_KEYS = frozenset({"model", "contract_version", "description", "kind"})
#: What a contract describes: a model's prediction events (``predictions.<model>``), or the rows of
#: a feature pipeline (``features.<feature set>``: features only, monitored the same way).
CONTRACT_KINDS = ("model", "feature_set")
_MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_NUMERIC = frozenset({"boolean", "int", "long", "float", "double"})


@dataclass(frozen=True)
class FieldContract:
    """The value contract of one field of a model's events.

    Parameters
    ----------
    name
        Field name in the Avro record.
    role
        ``id``, ``event_time``, ``model_name``, ``model_version``, ``feature``, ``prediction_score``
        or ``prediction_class``.
    kind
        ``numeric`` (boolean, int, long, float, double), ``categorical`` (enum, or a string feature),
        ``string`` (identity strings) or ``timestamp`` (long with logical type timestamp-millis).
    avro_type
        The non-null Avro type: a primitive name or ``enum``.
    nullable
        Whether the field is a union with ``null``.
    range
        Inclusive ``(low, high)`` for numeric fields; an open bound is ``-inf``/``inf``.
    categories
        Known values of a categorical field (empty: any value is known).
    max_null_fraction
        Budget of nulls per window (nullable fields); checked by the engine, not per event.
    allow_nan
        Whether NaN/inf are legal values (float and double fields).
    on_violation
        ``reject`` (the event is dead-lettered) or ``count`` (accepted, the violation counted).
    """

    name: str
    role: str
    kind: str
    avro_type: str
    nullable: bool
    range: tuple[float, float] | None = None
    categories: tuple[str, ...] = ()
    max_null_fraction: float | None = None
    allow_nan: bool = False
    on_violation: str = "reject"
    logical_type: str | None = None
    aliases: tuple[str, ...] = ()
    has_default: bool = False
    default: Any = None
    doc: str = ""

    @property
    def monitored(self) -> bool:
        """Whether the field is a feature or a prediction (a column of decoded batches)."""
        return self.role in MONITORED_ROLES

    @property
    def prediction(self) -> bool:
        """Whether the field is an output of the model (its score or class)."""
        return self.role in PREDICTION_ROLES

    @property
    def rejects(self) -> bool:
        return self.on_violation == "reject"


@dataclass(frozen=True, eq=False)
class Contract:
    """A model's contract: its Avro schema and the value contract of every field.

    ``schema_json`` is the schema as written in the contract file (attributes included); it is
    shared, so treat it as read-only. ``parsed_schema`` is fastavro's parsed form.
    """

    model: str
    version: int
    full_name: str
    aliases: tuple[str, ...]
    fields: tuple[FieldContract, ...]
    schema_json: dict[str, Any]
    parsed_schema: dict[str, Any]
    canonical_form: str
    fingerprint: int
    source: str = "<memory>"
    description: str = ""
    kind: str = "model"  # one of CONTRACT_KINDS

    @property
    def label(self) -> str:
        """``model vN``, how messages name the contract."""
        return f"{self.model} v{self.version}"

    @property
    def monitored_fields(self) -> tuple[FieldContract, ...]:
        """Features and predictions, in contract order: what the engine watches, the one definition of it."""
        return tuple(f for f in self.fields if f.monitored)

    @property
    def prediction_fields(self) -> tuple[FieldContract, ...]:
        """The model's outputs (score, class), in contract order."""
        return tuple(f for f in self.fields if f.prediction)

    def field(self, name: str) -> FieldContract:
        """The contract of field ``name``; ``KeyError`` if the contract has no such field."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"contract {self.label} has no field {name!r}")

    def role_field(self, role: str) -> FieldContract:
        """The single field with identity role ``role`` (``id``, ``event_time``, …)."""
        spec = self.find_role(role)
        if spec is None:
            raise KeyError(f"contract {self.label} has no field with role {role!r}")
        return spec

    def find_role(self, role: str) -> FieldContract | None:
        """The first field with role ``role``, or ``None`` (e.g. a model without ``prediction_class``)."""
        for spec in self.fields:
            if spec.role == role:
                return spec
        return None


def _fail(source: str, message: str) -> ContractError:
    return ContractError(f"{source}: {message}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _base_type(avro_type: Any, named: Mapping[str, Any]) -> tuple[Any, bool] | None:
    """``(non-null type, nullable)`` of a contract field type, or None if it is not flat enough."""
    nullable = False
    if isinstance(avro_type, list):
        others = [b for b in avro_type if b != "null"]
        if len(others) != 1 or len(avro_type) != 2:
            return None
        nullable, avro_type = True, others[0]
    if isinstance(avro_type, str) and avro_type not in avro_types.PRIMITIVE_TYPES:
        avro_type = named.get(avro_type)
    if isinstance(avro_type, str) and avro_type in avro_types.PRIMITIVE_TYPES - {"null"}:
        return avro_type, nullable
    if isinstance(avro_type, dict) and avro_type.get("type") in _NUMERIC | {"string", "enum"}:
        return avro_type, nullable
    return None


def _parse_field(raw: Mapping[str, Any], named: Mapping[str, Any], source: str) -> FieldContract:
    name = str(raw["name"])
    where = f"field {name!r}"
    attrs = raw.get("driftline")
    if not isinstance(attrs, dict) or "role" not in attrs:
        raise _fail(source, f"{where} has no \"driftline\": {{\"role\": ...}} attribute")
    unknown = set(attrs) - _FIELD_KEYS
    if unknown:
        raise _fail(source, f"{where}: unknown driftline attribute(s) {sorted(unknown)}; known: {sorted(_FIELD_KEYS)}")
    role = attrs["role"]
    if role not in IDENTITY_ROLES + MONITORED_ROLES:
        raise _fail(source, f"{where}: role {role!r} is not one of {list(IDENTITY_ROLES + MONITORED_ROLES)}")
    base = _base_type(raw["type"], named)
    if base is None:
        raise _fail(
            source,
            f"{where}: type {avro_types.type_label(raw['type'], named)} is not supported in a contract "
            "(use a primitive, an enum, or a union of null and one of those)",
        )
    base_type, nullable = base
    logical = base_type.get("logicalType") if isinstance(base_type, dict) else None
    avro_type = str(base_type["type"] if isinstance(base_type, dict) else base_type)
    symbols = tuple(base_type.get("symbols", ())) if avro_type == "enum" else ()
    if logical is not None and not (logical == "timestamp-millis" and avro_type == "long"):
        raise _fail(source, f"{where}: logical type {logical!r} on {avro_type} is not supported (only timestamp-millis on long)")
    if logical == "timestamp-millis":
        kind = "timestamp"
    elif avro_type in _NUMERIC:
        kind = "numeric"
    elif avro_type == "enum" or (avro_type == "string" and role in MONITORED_ROLES):
        kind = "categorical"
    elif avro_type == "string":
        kind = "string"
    else:
        raise _fail(source, f"{where}: Avro type {avro_type} is not supported in a contract")

    if role in IDENTITY_ROLES:
        wanted = "timestamp" if role == "event_time" else "string"
        if kind != wanted or nullable:
            expected = "long with logicalType timestamp-millis" if wanted == "timestamp" else "string"
            raise _fail(source, f"{where}: role {role} needs a non-nullable {expected}, got {avro_types.type_label(raw['type'], named)}")
        if set(attrs) != {"role"}:
            raise _fail(source, f"{where}: role {role} takes no value-contract attributes, got {sorted(set(attrs) - {'role'})}")
    if role == "prediction_score" and kind != "numeric":
        raise _fail(source, f"{where}: a prediction_score must be numeric, got {avro_type}")

    value_range: tuple[float, float] | None = None
    if "range" in attrs:
        bounds = attrs["range"]
        if kind not in ("numeric", "timestamp"):
            raise _fail(source, f"{where}: range applies to numeric fields, this one is {kind}")
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(b is None or _number(b) for b in bounds)):
            raise _fail(source, f"{where}: range must be [low, high] (numbers, null for an open bound), got {bounds!r}")
        low = -math.inf if bounds[0] is None else float(bounds[0])
        high = math.inf if bounds[1] is None else float(bounds[1])
        if math.isnan(low) or math.isnan(high) or low > high:
            raise _fail(source, f"{where}: range low {bounds[0]} must not exceed high {bounds[1]}")
        value_range = (low, high)
    categories: tuple[str, ...] = symbols
    if "categories" in attrs:
        values = attrs["categories"]
        if kind != "categorical":
            raise _fail(source, f"{where}: categories apply to categorical fields, this one is {kind}")
        if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
            raise _fail(source, f"{where}: categories must be a non-empty list of strings, got {values!r}")
        if len(set(values)) != len(values):
            raise _fail(source, f"{where}: categories contain duplicates")
        if symbols and not set(values) <= set(symbols):
            raise _fail(source, f"{where}: categories {sorted(set(values) - set(symbols))} are not symbols of the enum")
        categories = tuple(values)
    max_null: float | None = None
    if "max_null_fraction" in attrs:
        value = attrs["max_null_fraction"]
        if not nullable:
            raise _fail(source, f"{where}: max_null_fraction needs a nullable field (a union with null)")
        if not (_number(value) and 0.0 <= value <= 1.0):
            raise _fail(source, f"{where}: max_null_fraction must be a number in [0, 1], got {value!r}")
        max_null = float(value)
    allow_nan = attrs.get("allow_nan", False)
    if not isinstance(allow_nan, bool):
        raise _fail(source, f"{where}: allow_nan must be true or false, got {allow_nan!r}")
    if allow_nan and avro_type not in ("float", "double"):
        raise _fail(source, f"{where}: allow_nan applies to float and double fields, this one is {avro_type}")
    on_violation = attrs.get("on_violation", "reject")
    if on_violation not in ("reject", "count"):
        raise _fail(source, f"{where}: on_violation must be \"reject\" or \"count\", got {on_violation!r}")

    # fastavro.parse_schema has already checked that a default fits the field's type.
    has_default = "default" in raw
    default = raw.get("default")
    return FieldContract(
        name=name,
        role=str(role),
        kind=kind,
        avro_type=avro_type,
        nullable=nullable,
        range=value_range,
        categories=categories,
        max_null_fraction=max_null,
        allow_nan=allow_nan,
        on_violation=str(on_violation),
        logical_type=logical,
        aliases=tuple(str(a) for a in raw.get("aliases", ())),
        has_default=has_default,
        default=default,
        doc=str(raw.get("doc", "")),
    )


def parse_contract(schema: Mapping[str, Any] | str, source: str = "<memory>") -> Contract:
    """Build a :class:`Contract` from a contract schema (JSON text or decoded JSON).

    Raises
    ------
    ContractError
        If the schema is not valid Avro, is not a record, lacks the ``driftline`` attributes, or
        any attribute is malformed or inconsistent with the field's type.
    """
    try:
        raw = avro_types.schema_json(schema)
        parsed = avro_types.parse_schema(raw)
    except WriterSchemaError as exc:
        raise _fail(source, str(exc)) from exc
    if not isinstance(raw, dict) or parsed.get("type") != "record":
        raise _fail(source, "a contract must be an Avro record schema")
    meta = raw.get("driftline")
    if not isinstance(meta, dict):
        raise _fail(source, 'record has no "driftline": {"model": ..., "contract_version": ...} attribute')
    unknown = set(meta) - _RECORD_KEYS
    if unknown:
        raise _fail(source, f"unknown record-level driftline attribute(s) {sorted(unknown)}; known: {sorted(_RECORD_KEYS)}")
    model = meta.get("model")
    if not (isinstance(model, str) and _MODEL_NAME.match(model)):
        raise _fail(source, f"driftline.model must be a name like 'credit_risk', got {model!r}")
    kind = meta.get("kind", "model")
    if kind not in CONTRACT_KINDS:
        raise _fail(source, f"driftline.kind must be one of {list(CONTRACT_KINDS)}, got {kind!r}")
    version = meta.get("contract_version")
    if not (isinstance(version, int) and not isinstance(version, bool) and version >= 1):
        raise _fail(source, f"driftline.contract_version must be a positive integer, got {version!r}")
    named = avro_types.named_types(parsed)
    fields = tuple(_parse_field(f, named, source) for f in parsed["fields"])
    for role in (*IDENTITY_ROLES, "prediction_score", "prediction_class"):
        holders = [f.name for f in fields if f.role == role]
        if len(holders) > 1:
            raise _fail(source, f"role {role} is held by several fields: {holders}")
        if not holders and role in IDENTITY_ROLES:
            raise _fail(source, f"no field has role {role}; every contract needs id, event_time, model_name and model_version")
    if not any(f.role == "feature" for f in fields):
        raise _fail(source, "the contract declares no feature field")
    if kind == "feature_set" and any(f.prediction for f in fields):
        raise _fail(source, "a feature set's contract has no prediction fields (its events carry features only)")
    full_name = str(parsed["name"])
    namespace = full_name.rpartition(".")[0]
    aliases = tuple(a if "." in a or not namespace else f"{namespace}.{a}" for a in raw.get("aliases", ()))
    canonical = avro_types.canonical_form(raw)
    return Contract(
        model=model,
        version=version,
        full_name=full_name,
        aliases=aliases,
        fields=fields,
        schema_json=dict(raw),
        parsed_schema=parsed,
        canonical_form=canonical,
        fingerprint=avro_types.fingerprint(canonical),
        source=source,
        description=str(meta.get("description", raw.get("doc", ""))),
        kind=str(kind),
    )


def _read_json(path: Path, error: type[Exception]) -> Any:
    """The JSON of a schema file, or ``error`` naming the file (the catalog reads its files with it too)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: cannot read schema: {exc}") from exc


def load_contract(path: str | os.PathLike[str]) -> Contract:
    """Read and parse one contract file (``.avsc``)."""
    return parse_contract(_read_json(Path(path), ContractError), source=str(path))
