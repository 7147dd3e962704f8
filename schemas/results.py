"""What the codec returns: decoded batches (columns), single events, rejections and schema changes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .diff import SchemaDiff

__all__ = [
    "DecodedBatch",
    "DecodedBatches",
    "DecodedEvent",
    "FieldStatus",
    "RejectReason",
    "Rejection",
    "SchemaChange",
]


class RejectReason(enum.Enum):
    """Why an event was not accepted. Every rejected payload carries exactly one reason."""

    TRUNCATED = "truncated"  # the message ends before its header or record does
    CORRUPT = "corrupt"  # the bytes are not a valid encoding of the writer schema
    BAD_MAGIC = "bad_magic"  # neither Confluent framing (0x00) nor single-object encoding (0xC3 0x01)
    UNKNOWN_FINGERPRINT = "unknown_fingerprint"  # single-object fingerprint not in the catalog
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"  # Confluent schema id the registry does not know (or no registry)
    UNKNOWN_MODEL = "unknown_model"  # no contract for the writer's record, the event's model_name or the caller's model
    MODEL_MISMATCH = "model_mismatch"  # a known model, but not the one the event or the caller claims
    MISSING_FIELD = "missing_field"  # writer schema lacks a contract field that has no default
    TYPE_CHANGE = "type_change"  # writer type cannot be promoted to the contract type
    WRONG_TYPE = "wrong_type"  # this event's value (a union branch) does not resolve to the contract type
    NOT_FINITE = "not_finite"  # NaN or ±inf where the contract does not allow them
    OUT_OF_RANGE = "out_of_range"  # numeric value outside the contract's range
    UNSEEN_CATEGORY = "unseen_category"  # value outside a closed category set
    NULL_NOT_ALLOWED = "null_not_allowed"  # null in a field the contract declares non-nullable
    OVERSIZED = "oversized"  # longer than the codec's max_message_bytes
    EMPTY = "empty"  # zero bytes, or a null (tombstone) payload
    ENGINE_FAILURE = "engine_failure"  # decoded, but the monitor engine failed on it: set aside by the shell


class FieldStatus(enum.IntEnum):
    """Per-value status codes of :attr:`DecodedBatch.status` (``int8``).

    ``NULL`` is a null in a nullable field (legal; the engine holds it against the field's
    ``max_null_fraction`` per window). ``NULL_NOT_ALLOWED`` is a null in a field the contract declares
    non-nullable, which only a writer schema that made the field nullable can produce.
    ``WRONG_TYPE`` (an extension of the six base codes) marks a value of a writer union branch that
    does not resolve to the contract type. ``UNREAD`` marks every value of an event whose writer
    schema the contract cannot read (a missing field without default, a type Avro cannot promote):
    the event is rejected whole, placed in its window by its identity, and its values are unknown.
    """

    OK = 0
    NULL = 1
    NOT_FINITE = 2
    OUT_OF_RANGE = 3
    UNSEEN_CATEGORY = 4
    NULL_NOT_ALLOWED = 5
    WRONG_TYPE = 6
    UNREAD = 7


@dataclass(frozen=True)
class Rejection:
    """One payload that was not accepted.

    Attributes
    ----------
    reason
        The :class:`RejectReason`.
    index
        Position of the payload in the input of ``decode_batch`` (0 for ``decode``).
    field
        The contract (or writer) field concerned, if any.
    detail
        What was expected and what was found, for humans (dead-letter headers, logs).
    """

    reason: RejectReason
    index: int
    field: str | None
    detail: str

    def __str__(self) -> str:
        return f"#{self.index} {self.reason.name}: {self.detail}"


@dataclass(frozen=True)
class SchemaChange:
    """A writer schema that differs from its model's contract, reported once per writer schema.

    ``writer_id`` names the writer schema as the wire named it: the Schema Registry id (``"7"``) or
    the single-object fingerprint (``"0x…"``). ``fingerprint`` is its CRC-64-AVRO fingerprint, the
    identity the codec reports it under (the same schema arriving under several ids is reported once).

    ``first_index`` is the position, in the batch that reports the change, of the first payload
    written with this schema — the first such payload of the whole stream, since a change is
    reported in the first batch that holds one. ``first_event_time_ms`` is that payload's event time
    when the codec could read it (also from an event it rejects for the schema change), else None.
    Both depend on the payload only, never on how the stream was cut into batches.
    """

    model: str
    writer_id: str
    fingerprint: int
    writer_schema: dict[str, Any]
    diff: SchemaDiff
    first_index: int = 0
    first_event_time_ms: int | None = None

    @property
    def compatible(self) -> bool:
        return self.diff.compatible

    def __str__(self) -> str:
        return f"writer schema {self.writer_id} of {self.model}: {self.diff.describe()}"


@dataclass
class DecodedBatch:
    """Columns of one model's events from one batch of payloads (what the monitor engine consumes).

    Every payload attributed to the batch is either accepted or rejected:
    ``int(accepted.sum()) + len(rejections) == n_input`` always holds.

    Attributes
    ----------
    model
        The contract's model name.
    n_input
        Payloads attributed to this batch (all payloads given to ``decode_batch``).
    rows
        ``int64``: input position of every decoded row — decodable, of this model, with a usable
        event id, event time and model version — in input (arrival) order. Events of a writer
        schema the contract cannot read are decoded rows too when their identity reads (never
        accepted, every status ``UNREAD``), so that they count in the window of their event time.
    event_time_ms, model_version, event_id
        Per decoded row: ``int64`` epoch milliseconds, ``object`` arrays of ``str``.
    values
        Per contract feature and prediction field: ``float64`` for numeric fields (NaN where null
        or unusable), ``object`` arrays of ``str`` (``None`` where null) for categorical fields.
    status
        Per contract feature and prediction field: ``int8`` :class:`FieldStatus` codes.
    accepted
        ``bool`` per decoded row: no violation of a field whose policy is ``reject``.
    rejections
        Every rejected payload of the batch, in input order: decode failures and contract-rejected
        rows alike (the latter also appear in ``rows`` with ``accepted`` False).
    schema_changes
        Writer schemas first seen in this batch that differ from the contract.
    """

    model: str
    n_input: int
    rows: np.ndarray
    event_time_ms: np.ndarray
    model_version: np.ndarray
    event_id: np.ndarray
    values: dict[str, np.ndarray]
    status: dict[str, np.ndarray]
    accepted: np.ndarray
    rejections: list[Rejection] = field(default_factory=list)
    schema_changes: list[SchemaChange] = field(default_factory=list)

    @property
    def n_accepted(self) -> int:
        return int(np.count_nonzero(self.accepted))

    @property
    def n_rejected(self) -> int:
        return len(self.rejections)


@dataclass
class DecodedBatches:
    """Result of :meth:`~driftline.schemas.codec.Codec.decode_batches` for a stream mixing models.

    ``batches`` holds one :class:`DecodedBatch` per model (its ``n_input`` counts the payloads
    attributed to that model); ``rejections`` are the payloads no model can claim (corrupt bytes,
    unknown schemas, records without a contract). Counts reconcile:
    ``sum(b.n_accepted + b.n_rejected for b in batches.values()) + len(rejections) == n_input``.
    """

    n_input: int
    batches: dict[str, DecodedBatch]
    rejections: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class DecodedEvent:
    """One accepted event, as :meth:`~driftline.schemas.codec.Codec.decode` returns it."""

    model: str
    contract_version: int
    writer_id: str
    event_id: str
    event_time_ms: int
    model_version: str
    values: dict[str, float | str | None]
    status: dict[str, FieldStatus]
    schema_changes: tuple[SchemaChange, ...] = ()
