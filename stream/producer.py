"""The producer API for model servers: Avro-encode prediction events and publish them to Kafka.

A model server creates one :class:`EventProducer` per model and calls :meth:`~EventProducer.send`
for every scored request; ``driftline produce`` uses the batch path (:meth:`~EventProducer.encode_batch`)
to publish files and synthetic streams. Both write exactly what the worker's codec reads:

* **single-object encoding** (the default): ``C3 01``, the writer schema's CRC-64-AVRO fingerprint,
  the Avro body. No Schema Registry is needed; the worker resolves the fingerprint from its
  catalog, so the writer schema must be the contract's own or one in ``schemas/catalog/``.
* **Confluent framing**: ``00``, the schema id, the body. The writer schema is registered under the
  subject ``<topic>-value`` (TopicNameStrategy) of the registry at ``schema_registry_url``.

Messages are keyed by the event id: the model topic has a single partition (see
:mod:`~driftline.stream.topics`), so the key places nothing; it lets a key-compacted copy of the
topic keep one message per event, and lets consumers spot a producer's retried duplicates.

Delivery is at-least-once with idempotence (``acks=all``, ``enable.idempotence=true``): librdkafka
retries transient failures without duplicating or reordering. A message that still fails (it timed
out, the topic is not writable) is reported by librdkafka's delivery report; the producer collects
every such report and :meth:`~EventProducer.flush` raises :class:`DeliveryError` — none is lost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaException, Producer

from driftline.schemas import avro_types
from driftline.schemas.contract import Catalog, Contract
from driftline.schemas.errors import DriftlineError, EncodeError, RegistryError
from driftline.schemas.wire import SINGLE_OBJECT_MARKER, encode_confluent, encode_single_object

from .topics import prediction_topic

__all__ = [
    "DEFAULT_PRODUCER_CONFIG",
    "WIRE_FORMATS",
    "BatchEncoder",
    "DeliveryError",
    "EncodedBatch",
    "EventProducer",
    "WriterField",
    "writer_fields",
]

WIRE_FORMATS = ("single-object", "confluent")

#: librdkafka settings of every :class:`EventProducer`; ``producer_config`` overrides any of them.
#: Batches fill for up to 10 ms (throughput at a small latency cost), up to 1 MiB or 10,000 messages,
#: compressed with lz4 (the cheapest codec on the producer's CPU; bundled in the confluent-kafka wheels).
DEFAULT_PRODUCER_CONFIG: Mapping[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 10,
    "batch.size": 1_048_576,
    "batch.num.messages": 10_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
}

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class DeliveryError(DriftlineError):
    """Kafka did not accept some messages (delivery reports with an error, or a fatal producer error).

    Attributes
    ----------
    failures
        How many messages failed.
    errors
        The first few failures as text (error, topic, key), for the message and logs.
    """

    def __init__(self, message: str, failures: int = 0, errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.failures = failures
        self.errors = tuple(errors)


# -- the columnar encoder ------------------------------------------------------------------------


@dataclass(frozen=True)
class WriterField:
    """One field of a flat writer record, as the encoders see it."""

    name: str
    avro_type: str  # boolean, int, long, float, double, string or enum
    nullable: bool
    null_branch: int  # union branch index of null and of the value (-1: not a union)
    value_branch: int
    symbols: tuple[str, ...]
    has_default: bool
    default: Any
    timestamp: bool


def writer_fields(parsed: Mapping[str, Any]) -> tuple[WriterField, ...]:
    """Every field of a flat, fastavro-parsed record schema; ``ValueError`` for anything else."""
    named = avro_types.named_types(parsed)
    plans = []
    for avro_field in parsed.get("fields", ()):
        name = str(avro_field["name"])
        avro_type = avro_field["type"]
        null_branch = value_branch = -1
        if isinstance(avro_type, list):
            others = [b for b in avro_type if b != "null"]
            if len(avro_type) != 2 or len(others) != 1:
                raise ValueError(f"field {name!r}: only unions of null and one type can be encoded by columns")
            null_branch = avro_type.index("null")
            value_branch = 1 - null_branch
            avro_type = others[0]
        if isinstance(avro_type, str) and avro_type in named:
            avro_type = named[avro_type]
        base = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
        if base not in ("boolean", "int", "long", "float", "double", "string", "enum"):
            raise ValueError(f"field {name!r}: type {avro_types.type_label(avro_type, named)} cannot be encoded by columns")
        plans.append(
            WriterField(
                name=name,
                avro_type=str(base),
                nullable=null_branch >= 0,
                null_branch=null_branch,
                value_branch=value_branch,
                symbols=tuple(avro_type.get("symbols", ())) if base == "enum" else (),
                has_default="default" in avro_field,
                default=avro_field.get("default"),
                timestamp=isinstance(avro_type, dict) and avro_type.get("logicalType") in ("timestamp-millis", "local-timestamp-millis"),
            )
        )
    return tuple(plans)


@dataclass
class _Segment:
    """Bytes of one part of every row: ``flat`` holds the rows' bytes back to back.

    ``width`` is set when every row has exactly that many bytes; else ``lengths`` has one per row.
    """

    flat: np.ndarray
    lengths: np.ndarray | None = None
    width: int | None = None

    @property
    def sizes(self) -> np.ndarray | int:
        """Bytes per row: the constant width, or the per-row lengths."""
        if self.lengths is not None:
            return self.lengths
        assert self.width is not None
        return self.width


def _zigzag(values: np.ndarray) -> np.ndarray:
    signed = values.astype(np.int64, copy=False)
    return ((signed << 1) ^ (signed >> 63)).view(np.uint64)


def _varints(unsigned: np.ndarray) -> _Segment:
    """Avro (protobuf-style) base-128 varints of unsigned 64-bit values."""
    n = len(unsigned)
    nbytes = np.ones(n, dtype=np.int64)
    for k in range(1, 10):
        more = unsigned >= np.uint64(1 << (7 * k))
        if not more.any():
            break
        nbytes += more
    width = int(nbytes.max()) if n else 1
    if width == 1:
        return _Segment(unsigned.astype(np.uint8), width=1)
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    grid = ((unsigned[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    position = np.arange(width)
    grid[position[None, :] < (nbytes - 1)[:, None]] |= 0x80
    return _Segment(grid[position[None, :] < nbytes[:, None]], lengths=nbytes)


def _fail(plan: WriterField, row: int, message: str) -> EncodeError:
    return EncodeError(f"field {plan.name!r}, row {row}: {message}")


def _integers(plan: WriterField, values: pa.Array, rows: np.ndarray) -> np.ndarray:
    """``int64`` values of an int/long field; refuses fractions, non-finite values, overflow."""
    kind = values.type
    if pa.types.is_timestamp(kind):
        values = values.cast(pa.timestamp("ms", tz=kind.tz), safe=False).cast(pa.int64())
        kind = values.type
    if pa.types.is_boolean(kind):
        return np.asarray(values.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_floating(kind):
        floats = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(floats) | (floats != np.floor(floats)) | (np.abs(floats) >= 2.0**63)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise _fail(plan, int(rows[at]), f"{float(floats[at])!r} is not a whole number ({plan.avro_type})")
        integers = floats.astype(np.int64)
    elif pa.types.is_integer(kind):
        if pa.types.is_uint64(kind) and len(values) and pc.max(values).as_py() > _INT64[1]:
            at = int(np.flatnonzero(np.asarray(values.to_numpy(zero_copy_only=False)) > _INT64[1])[0])
            raise _fail(plan, int(rows[at]), f"{values[at].as_py()} does not fit a long")
        integers = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        raise _fail(plan, int(rows[0]) if len(rows) else 0, f"a {kind} column cannot be written as {plan.avro_type}")
    if plan.avro_type == "int" and len(integers):
        bad = (integers < _INT32[0]) | (integers > _INT32[1])
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise _fail(plan, int(rows[at]), f"{int(integers[at])} does not fit an int (32 bits)")
    return integers


def _strings(plan: WriterField, values: pa.Array, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, data)`` of a string column without nulls."""
    kind = values.type
    if pa.types.is_dictionary(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        values = values.cast(pa.string())
    elif not pa.types.is_string(values.type):
        raise _fail(plan, int(rows[0]) if len(rows) else 0, f"a {kind} column cannot be written as {plan.avro_type}")
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=len(values) + 1, offset=values.offset * 4)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, dtype=np.uint8)
    return offsets.astype(np.int64), data[offsets[0]:offsets[-1]]


def _value_segments(plan: WriterField, values: pa.Array, rows: np.ndarray) -> list[_Segment]:
    """Segments of non-null values; ``rows`` are their row numbers (for messages)."""
    kind = plan.avro_type
    if kind in ("int", "long"):
        return [_varints(_zigzag(_integers(plan, values, rows)))]
    if kind in ("float", "double"):
        if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
            raise _fail(plan, int(rows[0]) if len(rows) else 0, f"a {values.type} column cannot be written as {kind}")
        floats = np.asarray(values.to_numpy(zero_copy_only=False), dtype="<f8" if kind == "double" else "<f4")
        return [_Segment(floats.view(np.uint8), width=8 if kind == "double" else 4)]
    if kind == "boolean":
        if not pa.types.is_boolean(values.type):
            raise _fail(plan, int(rows[0]) if len(rows) else 0, f"a {values.type} column cannot be written as boolean")
        return [_Segment(np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.uint8), width=1)]
    if kind == "enum":
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type) or pa.types.is_dictionary(values.type)):
            raise _fail(plan, int(rows[0]) if len(rows) else 0, f"a {values.type} column cannot be written as an enum")
        index = pc.index_in(values.cast(pa.string()), value_set=pa.array(plan.symbols, pa.string()))
        if index.null_count:
            at = int(np.flatnonzero(np.asarray(index.is_null()))[0])
            raise _fail(plan, int(rows[at]), f"{values[at].as_py()!r} is not a symbol of the enum {list(plan.symbols)}")
        return [_varints(_zigzag(np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)))]
    offsets, data = _strings(plan, values, rows)
    lengths = np.diff(offsets)
    return [_varints(_zigzag(lengths)), _Segment(data, lengths=lengths)]


class BatchEncoder:
    """Avro-encode a batch of events column by column (numpy), for one flat writer schema.

    Produces, byte for byte, what ``fastavro.schemaless_writer`` writes for each row, behind
    ``header`` (the wire format's prefix), at a fraction of the per-record cost.

    Parameters
    ----------
    writer_schema
        A flat record schema (fields of boolean, int, long, float, double, string, enum, or a union
        of null and one of those — every contract is one): JSON text, JSON value or fastavro-parsed.
    header
        Bytes written before every body.

    Columns are Arrow arrays (or anything ``pyarrow.array`` accepts). A null is the Avro null of a
    nullable field; for numpy float columns of *nullable* fields NaN also means null (the
    generator's convention), elsewhere NaN is the value NaN. Timestamp columns of
    ``timestamp-millis`` fields are written as epoch milliseconds.

    Examples
    --------
    >>> encoder = BatchEncoder({"type": "record", "name": "Score", "fields": [
    ...     {"name": "id", "type": "string"}, {"name": "score", "type": ["null", "double"]}]})
    >>> encoder.encode({"id": ["a", "b"], "score": [0.5, None]})
    [b'\\x02a\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\xe0?', b'\\x02b\\x00']
    """

    def __init__(self, writer_schema: Any, header: bytes = b"") -> None:
        self.parsed = avro_types.parse_schema(writer_schema)
        if self.parsed.get("type") != "record":
            raise ValueError("writer_schema must be an Avro record schema")
        self.header = bytes(header)
        self.fields = writer_fields(self.parsed)

    def encode(self, columns: pa.RecordBatch | pa.Table | Mapping[str, Any]) -> list[bytes]:
        """One payload per row.

        Raises
        ------
        EncodeError
            A value the writer schema cannot hold (a null in a non-nullable field, a fraction in an
            int field, an unknown enum symbol, a column of the wrong type, a missing column without
            default), naming the field and the row (0-based).
        """
        arrays, n = self._arrays(columns)
        if n == 0:
            return []
        segments: list[_Segment] = []
        for plan in self.fields:
            segments.extend(self._field_segments(plan, arrays.get(plan.name), n))
        return _assemble(self.header, segments, n)

    def _arrays(self, columns: pa.RecordBatch | pa.Table | Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        if isinstance(columns, (pa.RecordBatch, pa.Table)):
            return {name: columns.column(name) for name in columns.schema.names}, columns.num_rows
        lengths = {len(column) for column in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns: all columns must have the same length, got lengths {sorted(lengths)}")
        return dict(columns), lengths.pop() if lengths else 0

    def _field_segments(self, plan: WriterField, column: Any, n: int) -> list[_Segment]:
        if column is None:
            if not plan.has_default:
                raise EncodeError(f"field {plan.name!r}: no such column, and the field has no default")
            column = pa.nulls(n) if plan.default is None else pa.array([plan.default] * n)
        array = _as_arrow(column, plan.nullable)
        if len(array) != n:
            raise ValueError(f"columns: column {plan.name!r} has {len(array)} rows, expected {n}")
        rows = np.arange(n)
        if array.null_count and not plan.nullable:
            at = int(np.flatnonzero(np.asarray(array.is_null()))[0])
            raise _fail(plan, at, f"null, but the field is not nullable ({plan.avro_type})")
        if not plan.nullable:
            return _value_segments(plan, array, rows)
        valid = np.asarray(array.is_valid(), dtype=bool) if array.null_count else np.ones(n, dtype=bool)
        branch = np.where(valid, plan.value_branch, plan.null_branch).astype(np.uint8) * np.uint8(2)  # zigzag(0|1)
        present = np.flatnonzero(valid)
        values = array.drop_null() if array.null_count else array
        parts = [_Segment(branch, width=1)]
        for segment in _value_segments(plan, values, present) if len(present) else []:
            lengths = np.zeros(n, dtype=np.int64)
            lengths[present] = segment.sizes
            parts.append(_Segment(segment.flat, lengths=lengths))
        return parts


def _as_arrow(column: Any, nullable: bool) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    if isinstance(column, pa.Array):
        return column
    return pa.array(column, from_pandas=nullable)  # from_pandas: NaN is null


def _assemble(header: bytes, segments: list[_Segment], n: int) -> list[bytes]:
    """Interleave the segments row by row behind ``header``; one ``bytes`` per row."""
    sizes = np.full(n, len(header), dtype=np.int64)
    for segment in segments:
        sizes += segment.sizes
    ends = np.cumsum(sizes)
    starts = ends - sizes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    if header:
        out[starts[:, None] + np.arange(len(header))] = np.frombuffer(header, dtype=np.uint8)
    cursor = starts + len(header)
    for segment in segments:
        if segment.width is not None:
            if segment.width == 1:
                out[cursor] = segment.flat
            else:
                out[cursor[:, None] + np.arange(segment.width)] = segment.flat.reshape(n, segment.width)
            cursor += segment.width
            continue
        lengths = segment.lengths
        assert lengths is not None
        if len(segment.flat):
            source_starts = np.cumsum(lengths) - lengths
            out[np.repeat(cursor - source_starts, lengths) + np.arange(len(segment.flat))] = segment.flat
        cursor += lengths
    joined = out.tobytes()
    return [joined[start:end] for start, end in zip(starts.tolist(), ends.tolist())]


# -- the producer -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedBatch:
    """Payloads ready to send and their keys (event ids), row for row."""

    payloads: list[bytes]
    keys: list[str | None]

    @property
    def size_bytes(self) -> int:
        return sum(map(len, self.payloads))

    def __len__(self) -> int:
        return len(self.payloads)


@dataclass
class _Writer:
    """One writer schema as the producer writes it: its wire prefix and its encoders."""

    parsed: dict[str, Any]
    schema_id: int | None
    batch: BatchEncoder
    int_fields: tuple[tuple[str, tuple[int, int]], ...]


class EventProducer:
    """Publish a model's prediction events to Kafka, Avro-encoded as the worker reads them.

    Parameters
    ----------
    bootstrap_servers
        Kafka bootstrap servers, ``host:port[,host:port]``.
    model
        The model whose contract the events follow; they go to ``predictions.<model>``.
    catalog
        Where the contract comes from (default: the bundled contracts, ``Catalog.load()``).
    wire_format
        ``"single-object"`` (default; no Schema Registry) or ``"confluent"``.
    schema_registry_url
        The Schema Registry for Confluent framing; ``mock://`` is confluent-kafka's in-memory
        registry, only useful in-process (pass ``registry_client`` to share one with a codec).
    registry_client
        A ``SchemaRegistryClient`` to use instead of one built from ``schema_registry_url``.
    topic
        Publish here instead of ``predictions.<model>``.
    writer_schema
        The schema events are written with (default: the contract's). With single-object encoding
        the consumers' catalog must know it (``schemas/catalog/``).
    producer_config
        librdkafka settings added to (and overriding) :data:`DEFAULT_PRODUCER_CONFIG`.

    Examples
    --------
    >>> with EventProducer("127.0.0.1:9092", model="credit_risk") as producer:  # doctest: +SKIP
    ...     producer.send({"event_id": "e-1", "event_time": 1767225600000, ...})
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        model: str,
        catalog: Catalog | None = None,
        wire_format: str = "single-object",
        schema_registry_url: str | None = None,
        registry_client: Any = None,
        topic: str | None = None,
        writer_schema: Any = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
            raise ValueError("bootstrap_servers must name at least one broker, e.g. '127.0.0.1:9092'")
        if wire_format not in WIRE_FORMATS:
            raise ValueError(f"wire_format must be one of {list(WIRE_FORMATS)}, got {wire_format!r}")
        if wire_format == "confluent" and registry_client is None and not schema_registry_url:
            raise ValueError("schema_registry_url: Confluent framing needs a Schema Registry (or pass registry_client)")
        self.catalog = catalog if catalog is not None else Catalog.load()
        self.contract: Contract = self.catalog.contract(model)  # UnknownModelError names the known models
        self.model = model
        self.topic = topic if topic is not None else prediction_topic(model)
        if not self.topic:
            raise ValueError("topic must not be empty")
        self.wire_format = wire_format
        self._registry = registry_client
        if wire_format == "confluent" and registry_client is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._registry = SchemaRegistryClient.new_client({"url": schema_registry_url})
        self._writers: dict[int, _Writer] = {}
        self._default_writer = self._writer(writer_schema if writer_schema is not None else self.contract.schema_json)
        self._id_field = self.contract.role_field("id").name
        self.sent = 0
        self.sent_bytes = 0
        self._failures = 0
        self._failure_texts: list[str] = []
        self._reported = 0
        config: dict[str, Any] = {**DEFAULT_PRODUCER_CONFIG, **dict(producer_config or {})}
        config["bootstrap.servers"] = bootstrap_servers
        config["delivery.report.only.error"] = True  # a Python callback per delivered message costs throughput
        config["on_delivery"] = self._on_delivery
        config["error_cb"] = self._on_error
        try:
            self._producer: Any = Producer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ValueError(f"producer_config: librdkafka refused the configuration: {exc}") from exc

    # -- writer schemas ---------------------------------------------------------------------

    def _writer(self, schema: Any) -> _Writer:
        parsed = avro_types.parse_schema(schema)
        fingerprint = avro_types.fingerprint(avro_types.canonical_form(parsed))
        known = self._writers.get(fingerprint)
        if known is not None:
            return known
        schema_id: int | None = None
        if self.wire_format == "confluent":
            schema_id = self._register(schema)
            header = b"\x00" + schema_id.to_bytes(4, "big")
        else:
            header = SINGLE_OBJECT_MARKER + avro_types.fingerprint_bytes(fingerprint)
        batch = BatchEncoder(parsed, header)
        ints = tuple((p.name, _INT32 if p.avro_type == "int" else _INT64) for p in batch.fields if p.avro_type in ("int", "long"))
        writer = _Writer(parsed, schema_id, batch, ints)
        self._writers[fingerprint] = writer
        return writer

    def _register(self, schema: Any) -> int:
        from confluent_kafka.schema_registry import Schema

        text = schema if isinstance(schema, str) else json.dumps(avro_types.plain_json(schema))
        try:
            return int(self._registry.register_schema(f"{self.topic}-value", Schema(text, "AVRO")))
        except Exception as exc:
            raise RegistryError(f"could not register the writer schema under {self.topic}-value: {exc}") from exc

    @property
    def schema_id(self) -> int | None:
        """The Schema Registry id of the default writer schema (Confluent framing), else ``None``."""
        return self._default_writer.schema_id

    # -- sending ----------------------------------------------------------------------------

    def send(self, record: Mapping[str, Any]) -> None:
        """Encode one event with the writer schema and queue it (keyed by its event id).

        Nothing beyond encoding is checked (the worker enforces the contract), but a value Avro
        would silently truncate — a fraction or an overflow in an int field — is refused too.

        Raises
        ------
        EncodeError
            The record does not fit the writer schema; the message names the field.
        DeliveryError
            Earlier messages failed, or the producer is in a fatal state.
        """
        writer = self._default_writer
        for name, (low, high) in writer.int_fields:
            value = record.get(name)
            if isinstance(value, float) and not (math.isfinite(value) and value == math.floor(value)):
                raise EncodeError(f"field {name!r}: {value!r} is not a whole number")
            if isinstance(value, (int, np.integer)) and not low <= value <= high:
                raise EncodeError(f"field {name!r}: {value} does not fit {'an int (32 bits)' if high == _INT32[1] else 'a long'}")
        try:
            if writer.schema_id is None:
                payload = encode_single_object(record, writer.parsed)
            else:
                payload = encode_confluent(record, writer.parsed, writer.schema_id)
        except EncodeError as exc:
            raise EncodeError(_name_fields(record, writer.parsed, exc)) from exc
        key = record.get(self._id_field)
        self.send_raw(payload, key=None if key is None else str(key))

    def encode_batch(self, columns: pa.RecordBatch | pa.Table | Mapping[str, Any], *, writer_schema: Any = None) -> EncodedBatch:
        """Encode a batch column by column (see :class:`BatchEncoder`), keys included; sends nothing."""
        writer = self._default_writer if writer_schema is None else self._writer(writer_schema)
        payloads = writer.batch.encode(columns)
        names = columns.schema.names if isinstance(columns, (pa.RecordBatch, pa.Table)) else list(columns)
        if self._id_field in names:
            ids = columns[self._id_field]
            keys = ids.to_pylist() if isinstance(ids, (pa.Array, pa.ChunkedArray)) else [str(v) for v in ids]
        else:
            keys = [None] * len(payloads)  # a writer schema without the id field: unkeyed
        return EncodedBatch(payloads, keys)

    def send_encoded(self, batch: EncodedBatch) -> None:
        """Queue every payload of an :class:`EncodedBatch`."""
        for payload, key in zip(batch.payloads, batch.keys):
            self.send_raw(payload, key)
        self._producer.poll(0)

    def send_batch(self, columns: pa.RecordBatch | pa.Table | Mapping[str, Any], *, writer_schema: Any = None) -> int:
        """Encode and queue a batch; return its size in bytes."""
        encoded = self.encode_batch(columns, writer_schema=writer_schema)
        self.send_encoded(encoded)
        return encoded.size_bytes

    def send_raw(self, payload: bytes, key: str | bytes | None = None) -> None:
        """Queue already-encoded bytes as they are (the worker dead-letters what it cannot read)."""
        while True:
            try:
                self._producer.produce(self.topic, payload, key)
                break
            except BufferError:
                # The local queue is full: let librdkafka deliver (and report) before queueing more.
                self._producer.poll(0.05)
                self._raise_failures()
            except KafkaException as exc:
                raise DeliveryError(f"cannot queue a message for {self.topic}: {exc}", 1, [str(exc)]) from exc
        self.sent += 1
        self.sent_bytes += len(payload)
        if self._failures > self._reported:
            self._raise_failures()

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports; raise :class:`DeliveryError` if some messages failed."""
        self._producer.poll(timeout)
        self._raise_failures()

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` seconds for every queued message; return how many are still undelivered.

        Raises
        ------
        DeliveryError
            Some messages failed (each failure is reported once, by the first call that sees it).
        """
        remaining = int(self._producer.flush(timeout))
        self._raise_failures()
        return remaining

    def close(self, timeout: float = 30.0) -> int:
        """Flush, then release the Kafka client; return how many messages were left undelivered.

        Raises :class:`DeliveryError` as :meth:`flush` does; the client is released all the same.
        A closed producer refuses to send (``ValueError``).
        """
        if isinstance(self._producer, _Closed):
            return 0
        try:
            return self.flush(timeout)
        finally:
            # librdkafka's client holds this object's callbacks, a cycle only the garbage collector
            # would break; until then the client keeps its threads, connections and metadata polls.
            self._producer = _Closed()

    def __len__(self) -> int:
        """Messages queued and not yet delivered."""
        return len(self._producer)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if kind is not None:
            try:
                self.close(5.0)  # deliver what can be, without masking the error in flight
            except DeliveryError:
                pass
            return
        remaining = self.close()
        if remaining:
            raise DeliveryError(f"{remaining} message(s) to {self.topic} were still undelivered after 30 s", remaining)

    # -- delivery reports ---------------------------------------------------------------------

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is None:
            return
        self._failures += 1
        if len(self._failure_texts) < 5:
            key = message.key() if message is not None else None
            self._failure_texts.append(f"{error.str()} (topic {self.topic}, key {key!r})")

    def _on_error(self, error: Any) -> None:
        # Transport errors (a broker restarting) are retried by librdkafka and surface, if they
        # last, as failed deliveries; only a fatal error (idempotence broken) fails by itself.
        if error.fatal():
            self._failures += 1
            if len(self._failure_texts) < 5:
                self._failure_texts.append(f"fatal producer error: {error.str()}")

    def _raise_failures(self) -> None:
        new = self._failures - self._reported
        if new <= 0:
            return
        self._reported = self._failures
        raise DeliveryError(
            f"{new} message(s) to {self.topic} failed: " + "; ".join(self._failure_texts), new, self._failure_texts
        )


class _Closed:
    """Stands in for the Kafka client of a closed :class:`EventProducer`."""

    def __getattr__(self, name: str) -> Any:
        raise ValueError("the producer is closed")

    def __len__(self) -> int:
        return 0


def _name_fields(record: Mapping[str, Any], parsed: dict[str, Any], error: EncodeError) -> str:
    """The encoder's message, led by the names of the fields that do not fit."""
    from fastavro.validation import ValidationError, validate

    try:
        validate(record, parsed, raise_errors=True)
    except ValidationError as problem:
        names: list[str] = []
        for text in problem.errors:
            for avro_field in parsed["fields"]:
                name = str(avro_field["name"])
                if (f".{name} " in f"{text} " or f".{name})" in str(text)) and name not in names:
                    names.append(name)
        if names:
            return f"field {', '.join(repr(n) for n in names)}: {error}"
    except Exception:  # noqa: BLE001 - diagnosis only; the encoder's own message stands
        pass
    return str(error)

