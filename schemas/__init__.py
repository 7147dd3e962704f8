"""driftline.schemas — Avro contracts of the monitored models and the codec that enforces them.

A model's contract (``credit_risk.avsc``) is an Avro record schema whose ``driftline`` attributes
state each field's role and value contract (range, categories, null budget, NaN policy). The
:class:`Codec` decodes events from either wire format — Confluent framing through a Schema Registry,
or Avro single-object encoding through the local :class:`Catalog` — into columns for the monitor
engine, diffs writer schemas against the contract, and turns every bad input into a typed
:class:`Rejection` instead of an exception.
"""

from __future__ import annotations

from .codec import Codec, in_memory_registry
from .contract import Contract, FieldContract, load_contract, parse_contract
from .contract_catalog import Catalog, KnownSchema
from .diff import SchemaDiff, TypeChange, diff_schemas
from .errors import (
    CatalogError,
    ContractError,
    DriftlineError,
    EncodeError,
    RegistryError,
    UnknownModelError,
    WriterSchemaError,
)
from .results import (
    DecodedBatch,
    DecodedBatches,
    DecodedEvent,
    FieldStatus,
    Rejection,
    RejectReason,
    SchemaChange,
)
from .wire import encode_confluent, encode_single_object

__all__ = [
    "Catalog",
    "CatalogError",
    "Codec",
    "Contract",
    "ContractError",
    "DecodedBatch",
    "DecodedBatches",
    "DecodedEvent",
    "DriftlineError",
    "EncodeError",
    "FieldContract",
    "FieldStatus",
    "KnownSchema",
    "RegistryError",
    "RejectReason",
    "Rejection",
    "SchemaChange",
    "SchemaDiff",
    "TypeChange",
    "UnknownModelError",
    "WriterSchemaError",
    "diff_schemas",
    "encode_confluent",
    "encode_single_object",
    "in_memory_registry",
    "load_contract",
    "parse_contract",
]
