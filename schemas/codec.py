"""The codec: bytes off the wire in, columns of contract-checked events (and typed rejections) out.

Both wire formats of :mod:`~driftline.schemas.wire` decode to the same thing. Per batch the codec

1. reads every header at once and groups the payloads by writer schema (Schema Registry id or
   single-object fingerprint);
2. resolves each writer schema once per codec lifetime to a *plan*: its contract (by record full
   name), its diff against the contract, and a decoder. A writer schema that differs from the
   contract is reported once as a :class:`SchemaChange`; if it is incompatible (a missing field
   without default, a type Avro cannot promote) every event written with it is rejected with the
   diff's reason — yet still decoded with its writer schema for its identity (id, event time,
   model version), so that it counts as a rejected event in the window of its own event time;
3. decodes each group column by column (:mod:`~driftline.schemas.columnar`), resolves the writer's
   columns to the contract and checks the values (:mod:`~driftline.schemas.checks`);
4. concatenates the groups back into input order.

Nothing raises on bad bytes: every payload ends up accepted or in ``rejections``. The only exception
from decoding is :class:`~driftline.schemas.errors.RegistryError`, when the Schema Registry itself
cannot be asked — an outage, not bad data, so the consumer should retry rather than dead-letter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import avro_types
from .checks import IDENTITY_ROLES, Block, Source, check_block, empty_block, unread_block
from .columnar import FlatDecoder, RecordDecoder, flat_layout
from .contract import Contract
from .contract_catalog import Catalog
from .diff import SchemaDiff, diff_schemas
from .errors import RegistryError, WriterSchemaError
from .results import (
    DecodedBatch,
    DecodedBatches,
    DecodedEvent,
    FieldStatus,
    Rejection,
    RejectReason,
    SchemaChange,
)
from .wire import CONFLUENT, SINGLE_OBJECT, encode_confluent, encode_single_object, frame_batch

__all__ = [
    "Codec",
    "DecodedBatch",
    "DecodedBatches",
    "DecodedEvent",
    "FieldStatus",
    "RejectReason",
    "Rejection",
    "SchemaChange",
    "encode_confluent",
    "encode_single_object",
    "in_memory_registry",
]


def in_memory_registry() -> Any:
    """confluent-kafka's own in-memory Schema Registry client, for tests and the embedded demo.

    ``SchemaRegistryClient({"url": "mock://"})`` builds an HTTP client in confluent-kafka 2.x; the
    in-memory implementation comes from ``SchemaRegistryClient.new_client`` with a ``mock://`` url.
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient.new_client({"url": "mock://"})


@dataclass
class _Plan:
    """How to read events of one writer schema (or why every one of them is rejected)."""

    writer_id: str
    fingerprint: int = 0
    writer_schema: dict[str, Any] | None = None
    contract: Contract | None = None
    rejection: tuple[RejectReason, str | None, str] | None = None
    diff: SchemaDiff | None = None
    decoder: FlatDecoder | RecordDecoder | None = None
    sources: dict[str, Source] = field(default_factory=dict)
    # Reads the identity fields of events the plan rejects for an incompatible writer schema.
    identity_decoder: FlatDecoder | RecordDecoder | None = None


@dataclass
class _Model:
    """What one batch gathers for one model."""

    contract: Contract
    n_input: int = 0
    blocks: list[Block] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    schema_changes: list[SchemaChange] = field(default_factory=list)


def _zero_width(avro_type: Any, named: dict[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """Can a value of this type take zero bytes? (Then a corrupt array count could allocate forever.)"""
    if isinstance(avro_type, list):
        return False  # every union value starts with its branch index
    if isinstance(avro_type, str):
        if avro_type == "null":
            return True
        if avro_type in named and avro_type not in seen:
            return _zero_width(named[avro_type], named, seen | {avro_type})
        return False
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind in ("record", "error"):
            return all(_zero_width(f["type"], named, seen) for f in avro_type.get("fields", ()))
        if kind == "fixed":
            return avro_type.get("size") == 0
        if kind in ("array", "map", "enum"):
            return False  # a block count or a symbol index takes at least one byte
        return _zero_width(kind, named, seen)
    return False


def _unbounded_field(parsed: dict[str, Any]) -> str | None:
    """First writer field holding an array or map of zero-width items, if any."""
    named = dict(avro_types.named_types(parsed))

    def walk(avro_type: Any) -> bool:
        if isinstance(avro_type, list):
            return any(walk(b) for b in avro_type)
        if isinstance(avro_type, dict):
            kind = avro_type.get("type")
            if kind == "array":
                return _zero_width(avro_type.get("items"), named) or walk(avro_type.get("items"))
            if kind == "map":
                return _zero_width(avro_type.get("values"), named) or walk(avro_type.get("values"))
            if kind in ("record", "error"):
                return any(walk(f["type"]) for f in avro_type.get("fields", ()))
        return False

    return next((str(f["name"]) for f in parsed.get("fields", ()) if walk(f["type"])), None)


class Codec:
    """Decode prediction events of the catalog's models from either wire format.

    Parameters
    ----------
    catalog
        Contracts and known writer schemas (single-object fingerprints are resolved here).
    registry_client
        A confluent-kafka ``SchemaRegistryClient`` for Confluent-framed events (see
        :func:`in_memory_registry`); without one, Confluent-framed events are rejected as
        ``UNKNOWN_SCHEMA_ID``.
    max_message_bytes
        Payloads longer than this are rejected as ``OVERSIZED`` without being read.
    """

    def __init__(self, catalog: Catalog, registry_client: Any = None, max_message_bytes: int = 1_000_000) -> None:
        if not isinstance(catalog, Catalog):
            raise ValueError(f"catalog must be a Catalog, got {type(catalog).__name__}")
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int) or max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be a positive integer, got {max_message_bytes!r}")
        self.catalog = catalog
        self.registry_client = registry_client
        self.max_message_bytes = max_message_bytes
        self._plans: dict[tuple[int, int], _Plan] = {}
        self._reported: set[tuple[str, int]] = set()
        self._history: list[SchemaChange] = []
        self._last_writer_id = ""

    @property
    def schema_changes(self) -> tuple[SchemaChange, ...]:
        """Every schema change reported over the codec's lifetime, in the order first seen."""
        return tuple(self._history)

    # -- public API -----------------------------------------------------------------------

    def decode(self, payload: bytes, model: str | None = None) -> DecodedEvent | Rejection:
        """Decode one payload: a :class:`DecodedEvent` if accepted, else its :class:`Rejection`.

        Exactly :meth:`decode_batch` of one payload; use the batch API on hot paths.
        """
        batch = self.decode_batch([payload], model)
        if batch.rejections:
            return batch.rejections[0]
        contract = self.catalog.contract(batch.model)
        values: dict[str, float | str | None] = {}
        for spec in contract.monitored_fields:
            value = batch.values[spec.name][0]
            values[spec.name] = None if batch.status[spec.name][0] == FieldStatus.NULL or value is None else (
                str(value) if spec.kind == "categorical" else float(value)
            )
        return DecodedEvent(
            model=contract.model,
            contract_version=contract.version,
            writer_id=self._last_writer_id,
            event_id=str(batch.event_id[0]),
            event_time_ms=int(batch.event_time_ms[0]),
            model_version=str(batch.model_version[0]),
            values=values,
            status={name: FieldStatus(int(codes[0])) for name, codes in batch.status.items()},
            schema_changes=tuple(batch.schema_changes),
        )

    def decode_batch(self, payloads: Sequence[bytes], model: str | None = None) -> DecodedBatch:
        """Decode a batch of one model's payloads (e.g. one poll of its topic) into columns.

        Parameters
        ----------
        payloads
            Raw message values, in arrival order.
        model
            The model the batch belongs to (e.g. from the topic name). Events of other models are
            rejected as ``MODEL_MISMATCH``; a model without a contract rejects every payload as
            ``UNKNOWN_MODEL``. ``None``: the model of the first event whose writer schema belongs to a
            contract (or the catalog's only model); events of other models are then rejected as ``MODEL_MISMATCH`` — use
            :meth:`decode_batches` for streams that mix models.

        Returns
        -------
        DecodedBatch
            ``accepted.sum() + len(rejections) == len(payloads)`` always holds.
        """
        n = len(payloads)
        if model is not None and model not in self.catalog:
            detail = f"the batch is for model {model!r}, which has no contract (known: {', '.join(self.catalog.names)})"
            return self._assemble(model, None, n, [], [Rejection(RejectReason.UNKNOWN_MODEL, i, None, detail) for i in range(n)], [])
        models, unattributed, order = self._decode(payloads, model)
        chosen = model or (order[0] if order else (self.catalog.names[0] if len(self.catalog) == 1 else ""))
        rejections = list(unattributed)
        for name, gathered in models.items():
            if name == chosen:
                rejections.extend(gathered.rejections)
                continue
            # Every payload of another model than the batch's is a mismatch, whatever else is wrong.
            indexes = {i for block in gathered.blocks for i in block.rows.tolist()} | {r.index for r in gathered.rejections}
            detail = f"a {name} event in a batch of {chosen} (its first event); decode_batches splits mixed streams"
            rejections.extend(Rejection(RejectReason.MODEL_MISMATCH, i, None, detail) for i in sorted(indexes))
        target = models.get(chosen)
        contract = target.contract if target is not None else self.catalog.get(chosen)
        return self._assemble(
            chosen, contract, n, target.blocks if target else [], rejections, target.schema_changes if target else []
        )

    def decode_batches(self, payloads: Sequence[bytes]) -> DecodedBatches:
        """Decode a batch that may mix models: one :class:`DecodedBatch` per model.

        Each model's batch counts (``n_input``) and rejects only the payloads attributed to it (by
        writer schema); payloads no model can claim are in :attr:`DecodedBatches.rejections`.
        """
        models, unattributed, _ = self._decode(payloads, None)
        batches = {
            name: self._assemble(name, m.contract, m.n_input, m.blocks, m.rejections, m.schema_changes)
            for name, m in models.items()
        }
        return DecodedBatches(n_input=len(payloads), batches=batches, rejections=sorted(unattributed, key=lambda r: r.index))

    # -- pipeline -------------------------------------------------------------------------

    def _decode(self, payloads: Sequence[bytes], target: str | None) -> tuple[dict[str, _Model], list[Rejection], list[str]]:
        framing = frame_batch(payloads, self.max_message_bytes)
        unattributed = [Rejection(reason, i, None, detail) for i, reason, detail in framing.rejections]
        models: dict[str, _Model] = {}
        first_row: dict[str, int] = {}
        negative: dict[tuple[int, int], _Plan] = {}
        for fmt, key, rows in _groups(framing.fmt, framing.key):
            plan = self._plan(fmt, key, negative)
            self._last_writer_id = plan.writer_id
            contract = plan.contract
            if contract is None:
                assert plan.rejection is not None
                reason, field_name, detail = plan.rejection
                unattributed.extend(Rejection(reason, i, field_name, detail) for i in rows.tolist())
                continue
            name = contract.model
            if target is not None and name != target:
                detail = f"a {name} event ({contract.full_name}, writer schema {plan.writer_id}) in a batch of {target}"
                unattributed.extend(Rejection(RejectReason.MODEL_MISMATCH, i, None, detail) for i in rows.tolist())
                continue
            gathered = models.setdefault(name, _Model(contract))
            gathered.n_input += len(rows)
            first_row[name] = min(first_row.get(name, len(payloads)), int(rows[0]))
            change = self._report(plan, gathered, int(rows[0]))
            if plan.rejection is not None:
                reason, field_name, detail = plan.rejection
                # One reason per payload, the writer schema's, whatever its identity reads as.
                gathered.rejections.extend(Rejection(reason, i, field_name, detail) for i in rows.tolist())
                block = self._unread_block(plan, contract, framing, rows)
                if block is not None:
                    gathered.blocks.append(block)
                if change is not None:
                    self._date(gathered, change, _event_time_of(block, int(rows[0])))
                continue
            assert plan.decoder is not None
            columns, good, failures = plan.decoder.decode(framing.joined, framing.buf, framing.start[rows], framing.end[rows])
            for failure in failures:
                reason = RejectReason.TRUNCATED if failure.truncated else RejectReason.CORRUPT
                detail = f"writer schema {plan.writer_id}: {failure.detail}"
                gathered.rejections.append(Rejection(reason, int(rows[failure.position]), failure.field, detail))
            block, rejected = check_block(contract, plan.sources, plan.writer_id, rows[good], columns, self.catalog.names)
            gathered.blocks.append(block)
            gathered.rejections.extend(rejected)
            if change is not None:
                self._date(gathered, change, _event_time_of(block, int(rows[0])))
        if target is None:
            # Events no model claims count against no model; with a target they are the target's.
            return models, unattributed, sorted(first_row, key=first_row.__getitem__)
        return models, unattributed, [target]

    def _report(self, plan: _Plan, gathered: _Model, first_row: int) -> int | None:
        """Report the plan's writer schema if it differs from the contract and is new; return where to date it.

        The return value is the change's position in ``gathered.schema_changes`` when its first
        event is ``first_row`` (a new change, or one this batch saw first at a later position under
        another id); None when there is nothing (new) to date.
        """
        if plan.diff is None or not plan.diff.changed or plan.writer_schema is None:
            return None
        key = (gathered.contract.model, plan.fingerprint)
        if key in self._reported:
            for position, known in enumerate(gathered.schema_changes):
                if known.fingerprint == plan.fingerprint and first_row < known.first_index:
                    gathered.schema_changes[position] = replace(known, writer_id=plan.writer_id, first_index=first_row)
                    return position
            return None
        self._reported.add(key)
        change = SchemaChange(
            model=gathered.contract.model,
            writer_id=plan.writer_id,
            fingerprint=plan.fingerprint,
            writer_schema=avro_types.plain_json(plan.writer_schema),
            diff=plan.diff,
            first_index=first_row,
        )
        gathered.schema_changes.append(change)
        return len(gathered.schema_changes) - 1

    def _date(self, gathered: _Model, position: int, event_time_ms: int | None) -> None:
        """Record the event time of a reported change's first event (None: unknown)."""
        change = replace(gathered.schema_changes[position], first_event_time_ms=event_time_ms)
        gathered.schema_changes[position] = change
        self._history = [c for c in self._history if c.fingerprint != change.fingerprint or c.model != change.model]
        self._history.append(change)

    def _unread_block(self, plan: _Plan, contract: Contract, framing: Any, rows: np.ndarray) -> Block | None:
        """The events ``plan`` rejects, placed by their identity (None: the writer schema cannot tell it)."""
        if plan.identity_decoder is None:
            return None
        columns, good, _ = plan.identity_decoder.decode(framing.joined, framing.buf, framing.start[rows], framing.end[rows])
        # Bytes the writer schema cannot decode leave their event undated (still rejected, with the plan's reason).
        block = unread_block(contract, plan.sources, plan.writer_id, rows[good], columns, self.catalog.names)
        return block if len(block.rows) else None

    def _assemble(
        self,
        model: str,
        contract: Contract | None,
        n_input: int,
        blocks: list[Block],
        rejections: list[Rejection],
        changes: list[SchemaChange],
    ) -> DecodedBatch:
        parts = blocks or ([empty_block(contract)] if contract is not None else [])
        if not parts:
            empty = np.empty(0, dtype=object)
            return DecodedBatch(model, n_input, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), empty, empty.copy(),
                                {}, {}, np.empty(0, dtype=bool), sorted(rejections, key=lambda r: r.index),
                                sorted(changes, key=lambda c: c.first_index))
        rows = np.concatenate([b.rows for b in parts])
        order = None if len(parts) == 1 else np.argsort(rows, kind="stable")

        def join(arrays: list[np.ndarray]) -> np.ndarray:
            joined = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            return joined if order is None else joined[order]

        return DecodedBatch(
            model=model,
            n_input=n_input,
            rows=join([b.rows for b in parts]),
            event_time_ms=join([b.event_time_ms for b in parts]),
            model_version=join([b.model_version for b in parts]),
            event_id=join([b.event_id for b in parts]),
            values={name: join([b.values[name] for b in parts]) for name in parts[0].values},
            status={name: join([b.status[name] for b in parts]) for name in parts[0].status},
            accepted=join([b.accepted for b in parts]),
            rejections=sorted(rejections, key=lambda r: r.index),
            schema_changes=sorted(changes, key=lambda c: c.first_index),
        )

    # -- writer schemas -------------------------------------------------------------------

    def _plan(self, fmt: int, key: int, negative: dict[tuple[int, int], _Plan]) -> _Plan:
        cached = self._plans.get((fmt, key)) or negative.get((fmt, key))
        if cached is not None:
            return cached
        if fmt == SINGLE_OBJECT:
            writer_id = avro_types.format_fingerprint(key)
            known = self.catalog.writer_schema(key)
            if known is None:
                detail = (
                    f"no writer schema with fingerprint {writer_id} in the catalog; add the producer's schema "
                    "to schemas/catalog/ or register it with Catalog.register_writer_schema"
                )
                negative[(fmt, key)] = _Plan(writer_id, rejection=(RejectReason.UNKNOWN_FINGERPRINT, None, detail))
                return negative[(fmt, key)]
            plan = self._build(writer_id, known.parsed_schema, key)
        else:
            writer_id = str(key)
            looked_up = self.registry_schema(key)
            if isinstance(looked_up, str):
                negative[(fmt, key)] = _Plan(writer_id, rejection=(RejectReason.UNKNOWN_SCHEMA_ID, None, looked_up))
                return negative[(fmt, key)]
            plan = self._build(writer_id, looked_up, avro_types.fingerprint(avro_types.canonical_form(looked_up)))
        self._plans[(fmt, key)] = plan
        return plan

    def registry_schema(self, schema_id: int) -> dict[str, Any] | str:
        """The parsed writer schema of a Schema Registry id, or why there is none (a message)."""
        if self.registry_client is None:
            return f"Confluent-framed event names schema id {schema_id}, but the codec has no Schema Registry client"
        try:
            schema = self.registry_client.get_schema(schema_id)
        except Exception as exc:
            if getattr(exc, "http_status_code", None) == 404:
                return f"the Schema Registry has no schema with id {schema_id}"
            raise RegistryError(f"Schema Registry lookup of schema id {schema_id} failed: {exc}") from exc
        schema_type = getattr(schema, "schema_type", None) or "AVRO"
        if schema_type != "AVRO":
            return f"schema id {schema_id} is a {schema_type} schema; driftline reads Avro"
        try:
            return avro_types.parse_schema(schema.schema_str)
        except WriterSchemaError as exc:
            hint = " (schema references are not supported)" if getattr(schema, "references", None) else ""
            return f"schema id {schema_id} is not a usable Avro schema{hint}: {exc}"

    def _build(self, writer_id: str, parsed: dict[str, Any], fingerprint: int) -> _Plan:
        plan = _Plan(writer_id, fingerprint, parsed)
        name = str(parsed.get("name"))
        contract = self.catalog.contract_for_record(name) if parsed.get("type") == "record" else None
        if contract is None:
            known = ", ".join(sorted(c.full_name for c in self.catalog)) or "none"
            plan.rejection = (
                RejectReason.UNKNOWN_MODEL, None,
                f"writer schema {writer_id} is {avro_types.type_label(parsed)}, which no contract reads (contract records: {known})",
            )
            return plan
        plan.contract = contract
        if fingerprint != contract.fingerprint:
            plan.diff = diff_schemas(parsed, contract)
            diff = plan.diff
            if diff.blocking_missing_fields:
                missing = diff.blocking_missing_fields[0]
                renamed = dict(diff.renamed_fields).get(missing)
                hint = f" (new field {renamed!r})" if renamed else (f" (new fields: {', '.join(diff.new_fields)})" if diff.new_fields else "")
                detail = f"writer schema {writer_id} has no field {missing!r}{hint}; contract {contract.label} requires it"
                plan.rejection = (RejectReason.MISSING_FIELD, missing, detail)
                _read_identity(plan, parsed, contract)
                return plan
            if diff.blocking_type_changes:
                change = diff.blocking_type_changes[0]
                detail = (
                    f"writer schema {writer_id} declares {change.field!r} as {change.writer_type}; contract "
                    f"{contract.label} expects {change.contract_type}, and Avro cannot promote one to the other"
                )
                plan.rejection = (RejectReason.TYPE_CHANGE, change.field, detail)
                _read_identity(plan, parsed, contract)
                return plan
        writer_fields = {str(f["name"]): f for f in parsed["fields"]}
        for spec in contract.fields:
            source = spec.name if spec.name in writer_fields else next((a for a in spec.aliases if a in writer_fields), None)
            label = avro_types.type_label(writer_fields[source]["type"], avro_types.named_types(parsed)) if source else "no such field"
            plan.sources[spec.name] = Source(source, label)
        needed = frozenset(s.writer_field for s in plan.sources.values() if s.writer_field is not None)
        layout = flat_layout(parsed)
        if layout is not None:
            plan.decoder = FlatDecoder(layout, needed)
            return plan
        unbounded = _unbounded_field(parsed)
        if unbounded is not None:
            plan.rejection = (
                RejectReason.TYPE_CHANGE, unbounded,
                f"writer schema {writer_id}: field {unbounded!r} is an array or map of zero-byte items, which "
                "driftline refuses to decode (a corrupt count would allocate without bound)",
            )
            return plan
        plan.decoder = RecordDecoder(parsed, needed)
        return plan


def _read_identity(plan: _Plan, parsed: dict[str, Any], contract: Contract) -> None:
    """Give a plan that rejects its writer schema a decoder of the identity fields only (if the schema can be decoded)."""
    writer_fields = {str(f["name"]): f for f in parsed.get("fields", ())}
    for role in IDENTITY_ROLES:
        spec = contract.role_field(role)
        source = spec.name if spec.name in writer_fields else next((a for a in spec.aliases if a in writer_fields), None)
        label = avro_types.type_label(writer_fields[source]["type"], avro_types.named_types(parsed)) if source else "no such field"
        plan.sources[spec.name] = Source(source, label)
    needed = frozenset(s.writer_field for s in plan.sources.values() if s.writer_field is not None)
    layout = flat_layout(parsed)
    if layout is not None:
        plan.identity_decoder = FlatDecoder(layout, needed)
    elif _unbounded_field(parsed) is None:
        plan.identity_decoder = RecordDecoder(parsed, needed)


def _event_time_of(block: Block | None, row: int) -> int | None:
    """The event time of input ``row`` if ``block`` placed it (None: it carries no usable identity)."""
    hit = np.array([], dtype=np.int64) if block is None else np.flatnonzero(block.rows == row)
    return int(block.event_time_ms[hit[0]]) if block is not None and hit.size else None


def _groups(fmt: np.ndarray, key: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """``(format, key, rows)`` of every writer schema in the batch, rows ascending."""
    groups: list[tuple[int, int, np.ndarray]] = []
    for wire_format in (CONFLUENT, SINGLE_OBJECT):
        rows = np.flatnonzero(fmt == wire_format)
        if not len(rows):
            continue
        keys = key[rows]
        if (keys == keys[0]).all():  # the common case: one writer schema
            groups.append((wire_format, int(keys[0]), rows))
            continue
        unique, inverse = np.unique(keys, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
        for value, members in zip(unique.tolist(), np.split(rows[order], bounds)):
            groups.append((wire_format, int(value), members))
    return groups
