"""Small Avro helpers shared by the contract loader, the schema diff and the codec.

Schemas are handled in fastavro's *parsed* form (``fastavro.parse_schema``): names are fully
qualified, a named type is spelled out where it is first defined and referenced by its full name
afterwards (``parsed["__named_schemas"]`` maps names to definitions).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from .errors import WriterSchemaError

__all__ = [
    "PRIMITIVE_TYPES",
    "PROMOTIONS",
    "Resolution",
    "branches",
    "canonical_form",
    "fingerprint",
    "fingerprint_bytes",
    "format_fingerprint",
    "named_types",
    "parse_schema",
    "plain_json",
    "resolution",
    "schema_json",
    "strip_logical_types",
    "type_label",
]

PRIMITIVE_TYPES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

# Avro's schema-resolution promotions (specification, "Schema Resolution"): writer type -> reader
# types it resolves to without loss of meaning.
PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}

#: How a writer type resolves to a reader type: always, only for some union branches, never.
Resolution = Literal["full", "partial", "none"]


def schema_json(schema: Any) -> Any:
    """The JSON value of ``schema``, given as a JSON string or as the decoded JSON value."""
    if isinstance(schema, (str, bytes)):
        text = schema.decode("utf-8") if isinstance(schema, bytes) else schema
        stripped = text.strip()
        if stripped.startswith(("{", "[", '"')):
            try:
                return json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise WriterSchemaError(f"schema is not valid JSON: {exc}") from exc
        return stripped  # a bare primitive name such as ``long``
    return schema


def parse_schema(schema: Any) -> dict[str, Any]:
    """Parse ``schema`` (JSON text or value) with fastavro; raise :class:`WriterSchemaError` if invalid."""
    value = schema_json(schema)
    if isinstance(value, dict) and value.get("__fastavro_parsed"):
        return value
    try:
        parsed = fastavro.parse_schema(value)
    except Exception as exc:  # fastavro raises several unrelated types for malformed schemas
        raise WriterSchemaError(f"not a valid Avro schema: {exc}") from exc
    if not isinstance(parsed, dict):
        raise WriterSchemaError(f"expected an Avro record schema, got {type_label(parsed)}")
    return parsed


def canonical_form(schema: Any) -> str:
    """Avro Parsing Canonical Form of ``schema`` (attributes, docs, defaults and aliases dropped)."""
    try:
        return str(to_parsing_canonical_form(schema_json(schema)))
    except Exception as exc:
        raise WriterSchemaError(f"cannot compute the canonical form: {exc}") from exc


def fingerprint(canonical: str) -> int:
    """CRC-64-AVRO (Rabin) fingerprint of a canonical form, as the unsigned 64-bit integer.

    fastavro returns the hex of the fingerprint's little-endian bytes (the order single-object
    encoding puts on the wire); the integer is the value the Avro specification and Java print.

    >>> fingerprint('"null"')
    7195948357588979594
    """
    return int.from_bytes(bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO")), "little")


def fingerprint_bytes(value: int) -> bytes:
    """The 8 bytes of a fingerprint as single-object encoding writes them (little-endian)."""
    return value.to_bytes(8, "little")


def format_fingerprint(value: int) -> str:
    """``0x`` and 16 hex digits: how fingerprints are named in messages."""
    return f"0x{value:016x}"


def plain_json(schema: Any) -> Any:
    """A copy of a (parsed) schema without fastavro's bookkeeping keys, fit for ``json.dumps``."""
    if isinstance(schema, dict):
        return {k: plain_json(v) for k, v in schema.items() if not k.startswith("__")}
    if isinstance(schema, list):
        return [plain_json(v) for v in schema]
    return schema


def strip_logical_types(schema: Any) -> Any:
    """A copy of a schema's JSON without ``logicalType`` keys.

    Decoding with the stripped schema yields the physical values (epoch milliseconds as ``int``
    instead of ``datetime``), which is what the columnar batches hold; canonical forms ignore
    logical types, so resolution is unaffected.
    """
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType" and not k.startswith("__")}
    if isinstance(schema, list):
        return [strip_logical_types(v) for v in schema]
    return schema


def named_types(parsed: Mapping[str, Any]) -> Mapping[str, Any]:
    """Named types (records, enums, fixed) of a parsed schema, by full name."""
    named = parsed.get("__named_schemas")
    return named if isinstance(named, Mapping) else {}


def _deref(avro_type: Any, named: Mapping[str, Any]) -> Any:
    if isinstance(avro_type, str) and avro_type not in PRIMITIVE_TYPES:
        return named.get(avro_type, avro_type)
    return avro_type


def branches(avro_type: Any) -> list[Any]:
    """The branches of a union, or ``[avro_type]`` for a non-union type."""
    return list(avro_type) if isinstance(avro_type, list) else [avro_type]


def type_label(avro_type: Any, named: Mapping[str, Any] | None = None) -> str:
    """A short human-readable spelling of a type: ``double``, ``[null, string]``, ``enum Color``."""
    named = named or {}
    if isinstance(avro_type, list):
        return "[" + ", ".join(type_label(b, named) for b in avro_type) + "]"
    if isinstance(avro_type, str):
        return avro_type
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if avro_type.get("logicalType"):
            return f"{kind} ({avro_type['logicalType']})"
        if kind in ("record", "error", "enum", "fixed"):
            return f"{kind} {avro_type.get('name')}"
        if kind == "array":
            return f"array<{type_label(avro_type.get('items'), named)}>"
        if kind == "map":
            return f"map<{type_label(avro_type.get('values'), named)}>"
        return type_label(kind, named)
    return repr(avro_type)


def _physical(avro_type: Any) -> Any:
    if isinstance(avro_type, dict) and avro_type.get("type") in PRIMITIVE_TYPES:
        return avro_type["type"]
    return avro_type


def _branch_resolves(writer: Any, reader: Any, writer_named: Mapping[str, Any], reader_named: Mapping[str, Any]) -> bool:
    """Does one (non-union) writer type resolve to one (non-union) reader type?"""
    writer = _physical(_deref(writer, writer_named))
    reader = _physical(_deref(reader, reader_named))
    if isinstance(writer, str) and isinstance(reader, str):
        return writer == reader or reader in PROMOTIONS.get(writer, frozenset())
    if isinstance(writer, dict) and isinstance(reader, dict) and writer.get("type") == reader.get("type"):
        kind = writer["type"]

        def short(name: object) -> str:
            return str(name).rsplit(".", 1)[-1]  # Avro matches unqualified names

        if kind == "enum":
            # Symbols the reader lacks are a value-level matter: the codec reports them as
            # unseen categories under the field's policy instead of failing the whole event.
            return short(writer.get("name")) == short(reader.get("name"))
        if kind == "fixed":
            return short(writer.get("name")) == short(reader.get("name")) and writer.get("size") == reader.get("size")
        if kind == "array":
            return resolution(writer.get("items"), reader.get("items"), writer_named, reader_named) == "full"
        if kind == "map":
            return resolution(writer.get("values"), reader.get("values"), writer_named, reader_named) == "full"
        if kind in ("record", "error"):
            return canonical_form(strip_logical_types(writer)) == canonical_form(strip_logical_types(reader))
    return False


def resolution(
    writer: Any,
    reader: Any,
    writer_named: Mapping[str, Any] | None = None,
    reader_named: Mapping[str, Any] | None = None,
) -> Resolution:
    """How values of type ``writer`` resolve to type ``reader`` under Avro schema resolution.

    ``"full"``: every value resolves (identical type, a promotion, null-union widening);
    ``"partial"``: the writer is a union and only some of its branches resolve, so events that use
    another branch (typically ``null`` for a non-nullable reader) fail one by one;
    ``"none"``: no value can resolve.

    >>> resolution("int", "double"), resolution(["null", "double"], "double"), resolution("string", "double")
    ('full', 'partial', 'none')
    """
    writer_named = writer_named or {}
    reader_named = reader_named or {}
    reader_branches = branches(reader)
    matches = [
        any(_branch_resolves(w, r, writer_named, reader_named) for r in reader_branches) for w in branches(writer)
    ]
    if all(matches):
        return "full"
    return "partial" if any(matches) else "none"
