"""The producer API for model servers: Avro-encode prediction events and publish them to Kafka.

A model server creates one :class:`EventProducer` per model and calls :meth:`~EventProducer.send`
for every scored request; ``driftline produce`` uses the batch path (:meth:`~EventProducer.encode_batch`)
to publish files and synthetic streams. Both write exactly what the worker's codec reads:

* **single-object encoding** (the default): ``C3 01``, the writer schema's CRC-64-AVRO fingerprint,
  the Avro body. No Schema Registry is needed; the worker resolves the fingerprint from its
  catalog, so the writer schema must be the contract's own or one in ``schemas/catalog/``.
* **Confluent framing**: ``00``, the schema id, the body, under the subject ``<topic>-value``
  (TopicNameStrategy) of the registry at ``schema_registry_url``. In the ``auto-register`` mode (the
  default) the writer schema is registered there — the registry refuses one its compatibility rule
  does not allow, before anything is sent; in the ``use-latest`` mode nothing is registered: events
  are written with the subject's latest registered version, looked up when the producer starts.

Messages are keyed by the event id. On a model topic of several partitions the key places the event:
librdkafka's default partitioner hashes it, so a model's events spread evenly and each id stays in
one partition (see :mod:`~driftline.stream.kafka.topics`). The key also lets a key-compacted copy of
the topic keep one message per event, and lets consumers spot a producer's retried duplicates.

Delivery is at-least-once with idempotence (``acks=all``, ``enable.idempotence=true``): librdkafka
retries transient failures without duplicating or reordering. A message that still fails (it timed
out, the topic is not writable) is reported by librdkafka's delivery report; the producer collects
every such report and :meth:`~EventProducer.flush` raises :class:`DeliveryError` — none is lost.

The batch path's Avro bodies come from the columnar encoder of :mod:`~driftline.schemas.columnar_encoder`;
this module adds the wire prefix, the keys and the Kafka client.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
from confluent_kafka import KafkaException, Producer

from driftline.schemas import avro_types
from driftline.schemas.columnar_encoder import INTEGER_RANGES, BatchEncoder, does_not_fit, is_whole_number
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.schemas.errors import DriftlineError, EncodeError, RegistryError
from driftline.schemas.wire import REGISTRY_MODES, SINGLE_OBJECT_MARKER, WIRE_FORMATS, encode_confluent, encode_single_object
from driftline.stream.kafka import registry as registry_api
from driftline.stream.kafka.connection import KafkaConnection
from driftline.stream.kafka.topics import CLIENT_LOGGER, prediction_topic

__all__ = [
    "DEFAULT_PRODUCER_CONFIG",
    "REGISTRY_MODES",
    "WIRE_FORMATS",
    "DeliveryError",
    "EncodedBatch",
    "EventProducer",
]


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
    int_fields: tuple[tuple[str, str], ...]  # (name, "int" or "long") of every integer field


class EventProducer:
    """Publish a model's prediction events to Kafka, Avro-encoded as the worker reads them.

    Parameters
    ----------
    kafka
        The brokers and the connection's security (:class:`~driftline.stream.kafka.connection.KafkaConnection`),
        or just bootstrap servers, ``host:port[,host:port]``, for a PLAINTEXT connection.
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
        A ``SchemaRegistryClient`` to use instead of one built from ``schema_registry_url`` (e.g.
        :func:`~driftline.stream.kafka.registry.registry_client`, with credentials).
    registry_mode
        Confluent framing only: ``"auto-register"`` (default) registers the writer schema under
        ``<topic>-value``; ``"use-latest"`` registers nothing and writes with the subject's latest
        version (then ``writer_schema`` must not be given). Either way a schema the registry
        refuses, or a subject without a version, raises :class:`RegistryError` here, before anything is sent.
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
        kafka: KafkaConnection | str,
        *,
        model: str,
        catalog: Catalog | None = None,
        wire_format: str = "single-object",
        schema_registry_url: str | None = None,
        registry_client: Any = None,
        registry_mode: str = "auto-register",
        topic: str | None = None,
        writer_schema: Any = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(kafka, KafkaConnection):
            kafka = KafkaConnection(kafka)  # a ValueError names what is wrong with it
        self.kafka = kafka
        if wire_format not in WIRE_FORMATS:
            raise ValueError(f"wire_format must be one of {list(WIRE_FORMATS)}, got {wire_format!r}")
        if wire_format == "confluent" and registry_client is None and not schema_registry_url:
            raise ValueError("schema_registry_url: Confluent framing needs a Schema Registry (or pass registry_client)")
        if registry_mode not in REGISTRY_MODES:
            raise ValueError(f"registry_mode must be one of {list(REGISTRY_MODES)}, got {registry_mode!r}")
        if registry_mode == "use-latest" and writer_schema is not None:
            raise ValueError("writer_schema: with registry_mode 'use-latest' the events are written with the subject's latest version")
        self.catalog = catalog if catalog is not None else Catalog.load()
        self.contract: Contract = self.catalog.contract(model)  # UnknownModelError names the known models
        self.model = model
        self.topic = topic if topic is not None else prediction_topic(model)
        if not self.topic:
            raise ValueError("topic must not be empty")
        self.wire_format = wire_format
        self.registry_mode = registry_mode
        self.subject = f"{self.topic}-value"
        self._registry = registry_client
        if wire_format == "confluent" and registry_client is None:
            assert schema_registry_url is not None
            self._registry = registry_api.registry_client(registry_api.SchemaRegistrySettings(schema_registry_url))
        self._writers: dict[int, _Writer] = {}
        if wire_format == "confluent" and registry_mode == "use-latest":
            self._default_writer = self._latest_writer()
        else:
            self._default_writer = self._writer(writer_schema if writer_schema is not None else self.contract.schema_json)
        self._id_field = self.contract.role_field("id").name
        self.sent = 0
        self.sent_bytes = 0
        self._failures = 0
        self._failure_texts: list[str] = []
        self._reported = 0
        config: dict[str, Any] = {**DEFAULT_PRODUCER_CONFIG, **dict(producer_config or {}), **kafka.client_config()}
        config["delivery.report.only.error"] = True  # a Python callback per delivered message costs throughput
        config["on_delivery"] = self._on_delivery
        config["error_cb"] = self._on_error
        config.setdefault("logger", CLIENT_LOGGER)
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
            schema_id = self._register(schema) if self.registry_mode == "auto-register" else self._lookup(schema)
        return self._add_writer(parsed, fingerprint, schema_id)

    def _add_writer(self, parsed: dict[str, Any], fingerprint: int, schema_id: int | None) -> _Writer:
        header = SINGLE_OBJECT_MARKER + avro_types.fingerprint_bytes(fingerprint) if schema_id is None else b"\x00" + schema_id.to_bytes(4, "big")
        batch = BatchEncoder(parsed, header)
        ints = tuple((p.name, p.avro_type) for p in batch.fields if p.avro_type in INTEGER_RANGES)
        writer = _Writer(parsed, schema_id, batch, ints)
        self._writers[fingerprint] = writer
        return writer

    def _latest_writer(self) -> _Writer:
        """The writer of the subject's latest registered version (``use-latest``: nothing is registered)."""
        try:
            latest = self._registry.get_latest_version(self.subject)
        except Exception as exc:
            raise RegistryError(
                f"the Schema Registry has no latest version of {self.subject} to write with: {registry_api.describe_registry_error(exc)} "
                "(--registry-mode use-latest registers nothing: register the schema first, e.g. with auto-register)"
            ) from exc
        schema_type = getattr(latest.schema, "schema_type", None) or "AVRO"
        if schema_type != "AVRO":
            raise RegistryError(f"the latest version of {self.subject} is a {schema_type} schema; driftline writes Avro")
        parsed = avro_types.parse_schema(latest.schema.schema_str)
        return self._add_writer(parsed, avro_types.fingerprint(avro_types.canonical_form(parsed)), int(latest.schema_id))

    @staticmethod
    def _schema_text(schema: Any) -> str:
        return schema if isinstance(schema, str) else json.dumps(avro_types.plain_json(schema))

    def _register(self, schema: Any) -> int:
        from confluent_kafka.schema_registry import Schema

        try:
            return int(self._registry.register_schema(self.subject, Schema(self._schema_text(schema), "AVRO")))
        except Exception as exc:
            if getattr(exc, "http_status_code", None) == 409:
                raise RegistryError(
                    f"the Schema Registry refused the writer schema under {self.subject}: the subject's compatibility rule "
                    f"does not allow it after its registered versions: {registry_api.describe_registry_error(exc)}"
                ) from exc
            raise RegistryError(f"could not register the writer schema under {self.subject}: {registry_api.describe_registry_error(exc)}") from exc

    def _lookup(self, schema: Any) -> int:
        """The id of a writer schema already registered under the subject (``use-latest`` registers nothing)."""
        from confluent_kafka.schema_registry import Schema

        try:
            return int(self._registry.lookup_schema(self.subject, Schema(self._schema_text(schema), "AVRO")).schema_id)
        except Exception as exc:
            raise RegistryError(
                f"a writer schema of the stream is not registered under {self.subject}, and --registry-mode use-latest "
                f"registers nothing: {registry_api.describe_registry_error(exc)}"
            ) from exc

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
        for name, avro_type in writer.int_fields:
            value = record.get(name)
            if isinstance(value, float) and not is_whole_number(value):
                raise EncodeError(f"field {name!r}: {value!r} is not a whole number")
            low, high = INTEGER_RANGES[avro_type]
            if isinstance(value, (int, np.integer)) and not low <= value <= high:
                raise EncodeError(f"field {name!r}: {does_not_fit(value, avro_type)}")
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
            with contextlib.suppress(DeliveryError):
                self.close(5.0)  # deliver what can be, without masking the error in flight
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

