"""The two wire formats of prediction events, and their encoders.

Confluent framing (what Confluent's serializers write)::

    0x00 | schema id: 4 bytes big-endian | Avro binary

Avro single-object encoding (Avro specification, "Single object encoding")::

    0xC3 0x01 | CRC-64-AVRO fingerprint of the writer schema: 8 bytes little-endian | Avro binary

:func:`frame_batch` reads the headers of a whole batch at once with numpy; the codec then groups the
messages by writer schema.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
import numpy as np

from . import avro_types
from .columnar import PADDING
from .contract import Contract
from .errors import EncodeError
from .results import RejectReason

__all__ = [
    "CONFLUENT",
    "CONFLUENT_HEADER_BYTES",
    "REGISTRY_MODES",
    "SINGLE_OBJECT",
    "SINGLE_OBJECT_HEADER_BYTES",
    "SINGLE_OBJECT_MARKER",
    "WIRE_FORMATS",
    "Framing",
    "encode_confluent",
    "encode_single_object",
    "frame_batch",
]

CONFLUENT = 1
SINGLE_OBJECT = 2
CONFLUENT_HEADER_BYTES = 5
SINGLE_OBJECT_MARKER = b"\xc3\x01"
SINGLE_OBJECT_HEADER_BYTES = 10
#: The wire formats producers choose from, by name (the codec reads both).
WIRE_FORMATS = ("single-object", "confluent")
#: How a producer of Confluent framing gets its schema id: it registers its writer schema under the
#: subject (``auto-register``), or writes with the subject's latest registered version (``use-latest``).
REGISTRY_MODES = ("auto-register", "use-latest")

# Encoders are called per event by producers; parsing and fingerprinting the schema each time would
# dominate. The cache is keyed by the schema object's identity and keeps the object alive, so an id
# is never reused while cached — schemas handed to the encoders must therefore not be mutated.
_ENCODER_CACHE: dict[int, tuple[Any, dict[str, Any], bytes]] = {}
_ENCODER_CACHE_SIZE = 256


def _prepared(schema: Any) -> tuple[dict[str, Any], bytes]:
    if isinstance(schema, Contract):
        return schema.parsed_schema, avro_types.fingerprint_bytes(schema.fingerprint)
    hit = _ENCODER_CACHE.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1], hit[2]
    parsed = avro_types.parse_schema(schema)
    fingerprint = avro_types.fingerprint(avro_types.canonical_form(parsed))
    if len(_ENCODER_CACHE) >= _ENCODER_CACHE_SIZE:
        _ENCODER_CACHE.pop(next(iter(_ENCODER_CACHE)))
    _ENCODER_CACHE[id(schema)] = (schema, parsed, avro_types.fingerprint_bytes(fingerprint))
    return parsed, _ENCODER_CACHE[id(schema)][2]


def _encode(header: bytes, record: Any, parsed: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(header)
    try:
        fastavro.schemaless_writer(out, parsed, record)
    except Exception as exc:  # fastavro raises TypeError, ValueError, KeyError, … for a misfit record
        raise EncodeError(f"record does not fit schema {parsed.get('name')}: {type(exc).__name__}: {exc}") from exc
    return out.getvalue()


def encode_confluent(record: Any, schema: Any, schema_id: int) -> bytes:
    """Encode ``record`` with Confluent framing.

    Parameters
    ----------
    record
        The event (a mapping of field values; ``timestamp-millis`` fields as epoch ms or datetime).
    schema
        The writer schema: JSON text, decoded JSON, fastavro-parsed, or a :class:`Contract`.
    schema_id
        The id the Schema Registry gave ``schema``.

    Raises
    ------
    ValueError
        If ``schema_id`` is not an unsigned 32-bit integer.
    WriterSchemaError, EncodeError
        If the schema is invalid or the record does not fit it.
    """
    if isinstance(schema_id, bool) or not isinstance(schema_id, (int, np.integer)) or not 0 <= schema_id < 2**32:
        raise ValueError(f"schema_id must be an integer in [0, 2**32), got {schema_id!r}")
    parsed, _ = _prepared(schema)
    return _encode(b"\x00" + int(schema_id).to_bytes(4, "big"), record, parsed)


def encode_single_object(record: Any, schema: Any) -> bytes:
    """Encode ``record`` with Avro single-object encoding (C3 01, fingerprint, body).

    ``schema`` is JSON text, decoded JSON, fastavro-parsed, or a :class:`Contract`. A consumer can
    decode the result only if its catalog knows the schema (its own contracts and ``catalog/``, or
    :meth:`Catalog.register_writer_schema`).

    >>> from driftline.schemas.contract_catalog import Catalog
    >>> contract = Catalog.load().contract("credit_risk")
    >>> payload = encode_single_object({f.name: 0 for f in contract.fields} | {
    ...     "event_id": "e1", "model_name": "credit_risk", "model_version": "v1", "home_ownership": "OWN",
    ...     "loan_purpose": "car", "employment_type": None, "region": "west", "channel": "web"}, contract)
    >>> payload[:2].hex(), int.from_bytes(payload[2:10], "little") == contract.fingerprint
    ('c301', True)
    """
    parsed, fingerprint = _prepared(schema)
    return _encode(SINGLE_OBJECT_MARKER + fingerprint, record, parsed)


@dataclass
class Framing:
    """Headers of a batch: per payload its format, writer key and the span of its Avro body.

    ``fmt`` is 0 for payloads rejected while framing (see ``rejections``), :data:`CONFLUENT` or
    :data:`SINGLE_OBJECT`; ``key`` is the schema id or the fingerprint (as ``uint64``); the body of
    payload ``i`` is ``joined[start[i]:end[i]]``; ``buf`` is ``joined`` plus zero padding as ``uint8``.
    """

    joined: bytes
    buf: np.ndarray
    fmt: np.ndarray
    key: np.ndarray
    start: np.ndarray
    end: np.ndarray
    rejections: list[tuple[int, RejectReason, str]]


def _normalise(payloads: Sequence[Any], max_bytes: int) -> tuple[list[bytes], list[tuple[int, RejectReason, str]]]:
    """Plain ``bytes`` for every payload; tombstones, non-bytes and oversized payloads become b""."""
    rejections: list[tuple[int, RejectReason, str]] = []
    clean = list(payloads)
    for i, payload in enumerate(clean):
        if type(payload) is not bytes:
            if payload is None:
                rejections.append((i, RejectReason.EMPTY, "null payload (a tombstone), no event"))
                clean[i] = b""
                continue
            if isinstance(payload, (bytearray, memoryview)):
                clean[i] = payload = bytes(payload)
            else:
                rejections.append((i, RejectReason.CORRUPT, f"payload is a {type(payload).__name__}, not bytes"))
                clean[i] = b""
                continue
        if len(payload) > max_bytes:
            rejections.append((i, RejectReason.OVERSIZED, f"{len(payload)} bytes, more than max_message_bytes={max_bytes}"))
            clean[i] = b""
    return clean, rejections


def frame_batch(payloads: Sequence[Any], max_bytes: int) -> Framing:
    """Read the headers of every payload; reject empty, oversized, truncated or unframed ones."""
    n = len(payloads)
    if all(type(p) is bytes for p in payloads):
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
        clean: Sequence[bytes] = payloads
        rejections: list[tuple[int, RejectReason, str]] = []
        if n and lengths.max() > max_bytes:
            clean, rejections = _normalise(payloads, max_bytes)
            lengths = np.fromiter(map(len, clean), dtype=np.int64, count=n)
    else:
        clean, rejections = _normalise(payloads, max_bytes)
        lengths = np.fromiter(map(len, clean), dtype=np.int64, count=n)
    joined = b"".join(clean)
    buf = np.frombuffer(joined + bytes(PADDING), dtype=np.uint8)
    offsets = np.zeros(n, dtype=np.int64)
    if n:
        np.cumsum(lengths[:-1], out=offsets[1:])
    end = offsets + lengths
    first = buf[offsets]
    second = buf[offsets + 1]
    confluent = (first == 0) & (lengths >= CONFLUENT_HEADER_BYTES)
    single = (first == 0xC3) & (second == 0x01) & (lengths >= SINGLE_OBJECT_HEADER_BYTES)
    fmt = np.where(confluent, CONFLUENT, np.where(single, SINGLE_OBJECT, 0)).astype(np.int8)
    key = np.zeros(n, dtype=np.uint64)
    start = offsets.copy()
    if confluent.any():
        rows = np.flatnonzero(confluent)
        id_bytes = np.ascontiguousarray(buf[offsets[rows, None] + np.arange(1, 5)])
        key[rows] = id_bytes.view(">u4").ravel()
        start[rows] += CONFLUENT_HEADER_BYTES
    if single.any():
        rows = np.flatnonzero(single)
        fp_bytes = np.ascontiguousarray(buf[offsets[rows, None] + np.arange(2, 10)])
        key[rows] = fp_bytes.view("<u8").ravel()
        start[rows] += SINGLE_OBJECT_HEADER_BYTES
    already = {i for i, _, _ in rejections}
    for i in np.flatnonzero(fmt == 0).tolist():
        if i in already:
            continue
        size = int(lengths[i])
        head = bytes(clean[i][:2])
        if size == 0:
            rejections.append((i, RejectReason.EMPTY, "empty payload (0 bytes)"))
        elif head[0] == 0:
            rejections.append((i, RejectReason.TRUNCATED, f"{size} byte(s): Confluent framing needs a {CONFLUENT_HEADER_BYTES}-byte header"))
        elif head == SINGLE_OBJECT_MARKER or head == b"\xc3":
            rejections.append((i, RejectReason.TRUNCATED, f"{size} byte(s): single-object encoding needs a {SINGLE_OBJECT_HEADER_BYTES}-byte header"))
        else:
            hint = " (looks like JSON)" if head[:1] in (b"{", b"[") else ""
            rejections.append(
                (i, RejectReason.BAD_MAGIC, f"starts with 0x{head.hex()}{hint}: neither Confluent framing (0x00) "
                 "nor Avro single-object encoding (0xc301)")
            )
    return Framing(joined, buf, fmt, key, start, end, sorted(rejections, key=lambda r: r[0]))
