"""What differs between a producer's writer schema and a model's contract.

Most production breakages are a missing field, a new field or a changed type. :func:`diff_schemas`
names each of them and decides, by Avro's schema-resolution rules, whether events written with the
writer schema can still be read as the contract: every contract field the writer lacks must have a
default, and every changed type must resolve (a promotion such as ``int`` to ``double``, or a
null-union widening).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import avro_types
from .avro_types import Resolution
from .contract import Contract

__all__ = ["SchemaDiff", "TypeChange", "diff_schemas"]

_RESOLUTION_NOTE = {
    "full": "promotable",
    "partial": "resolvable per event: events using the other branches are rejected",
    "none": "not promotable",
}


@dataclass(frozen=True)
class TypeChange:
    """A field whose writer type differs from the contract's type.

    ``resolution`` is ``"full"`` when Avro resolution promotes every value (``int`` → ``double``,
    ``string`` ↔ ``bytes``, ``double`` → ``["null", "double"]``), ``"partial"`` when the writer is a
    union only some of whose branches resolve (``["null", "double"]`` → ``double``: null values are
    rejected event by event) and ``"none"`` when no value can resolve (``string`` → ``double``).
    """

    field: str
    writer_type: str
    contract_type: str
    resolution: Resolution

    @property
    def promotable(self) -> bool:
        """Whether Avro resolution can read (at least some) writer values as the contract type."""
        return self.resolution != "none"

    def __str__(self) -> str:
        return f"{self.field}: {self.writer_type} -> {self.contract_type} ({_RESOLUTION_NOTE[self.resolution]})"


@dataclass(frozen=True)
class SchemaDiff:
    """Differences between a writer schema and a contract.

    Attributes
    ----------
    writer_name, contract_name
        Record full names of both schemas; Avro resolution requires them to match (or the
        writer's name to be one of the contract's aliases).
    contract_label
        ``model vN`` of the contract (the reader schema's name when diffing plain schemas).
    missing_fields
        Contract fields the writer does not have (under their name or an alias).
    defaulted_fields
        The missing fields the contract fills with its default; the others block resolution.
    new_fields
        Writer fields no contract field reads (ignored when resolving).
    type_changes
        Fields present in both whose types differ.
    renamed_fields
        ``(contract field, writer field)`` pairs that look like a rename: a blocking missing field
        and a new field of a type that would resolve to it.
    aliased_fields
        ``(contract field, writer field)`` pairs matched through the contract field's aliases.
    compatible
        True iff an event written with the writer schema can be resolved to the contract.
    """

    writer_name: str
    contract_name: str
    contract_label: str
    missing_fields: tuple[str, ...]
    defaulted_fields: tuple[str, ...]
    new_fields: tuple[str, ...]
    type_changes: tuple[TypeChange, ...]
    renamed_fields: tuple[tuple[str, str], ...]
    aliased_fields: tuple[tuple[str, str], ...]
    new_field_types: tuple[str, ...] = ()

    @property
    def names_match(self) -> bool:
        return self.writer_name == self.contract_name

    @property
    def blocking_missing_fields(self) -> tuple[str, ...]:
        """Missing fields without a default: events cannot be resolved."""
        return tuple(f for f in self.missing_fields if f not in self.defaulted_fields)

    @property
    def blocking_type_changes(self) -> tuple[TypeChange, ...]:
        return tuple(t for t in self.type_changes if t.resolution == "none")

    @property
    def compatible(self) -> bool:
        return self.names_match and not self.blocking_missing_fields and not self.blocking_type_changes

    @property
    def changed(self) -> bool:
        """Whether the writer schema differs from the contract at all (in fields or types)."""
        return bool(
            self.missing_fields or self.new_fields or self.type_changes or self.aliased_fields or not self.names_match
        )

    def describe(self) -> str:
        """One human-readable line, e.g. for an alert or a log.

        >>> from driftline.schemas.contract_catalog import Catalog
        >>> contract = Catalog.load().contract("credit_risk")
        >>> writer = {"type": "record", "name": contract.full_name, "fields": [
        ...     dict(f, name="dti_ratio") if f["name"] == "debt_to_income" else f
        ...     for f in contract.schema_json["fields"]]}
        >>> print(diff_schemas(writer, contract).describe())  # doctest: +NORMALIZE_WHITESPACE
        missing field 'debt_to_income' (no default); new field 'dti_ratio' (double); 'debt_to_income'
        looks renamed to 'dti_ratio'; incompatible with credit_risk v1: events are rejected
        """
        if not self.changed:
            return f"identical to {self.contract_label} (attributes, docs or field order aside)"
        parts: list[str] = []
        if not self.names_match:
            parts.append(f"record {self.writer_name!r} is not the contract's record {self.contract_name!r}")
        for name in self.missing_fields:
            if name in self.defaulted_fields:
                parts.append(f"missing field {name!r} (filled with the contract's default)")
            else:
                parts.append(f"missing field {name!r} (no default)")
        for name, label in zip(self.new_fields, self.new_field_types):
            parts.append(f"new field {name!r} ({label})")
        for contract_field, writer_field in self.renamed_fields:
            parts.append(f"{contract_field!r} looks renamed to {writer_field!r}")
        for contract_field, writer_field in self.aliased_fields:
            parts.append(f"{contract_field!r} read from {writer_field!r} (a contract alias)")
        parts.extend(str(change) for change in self.type_changes)
        verdict = "compatible with" if self.compatible else "incompatible with"
        consequence = "events are resolved to the contract" if self.compatible else "events are rejected"
        return "; ".join(parts) + f"; {verdict} {self.contract_label}: {consequence}"


def _enum_symbols(avro_type: Any, named: Mapping[str, Any]) -> tuple[str, ...] | None:
    for branch in avro_types.branches(avro_type):
        resolved = named.get(branch, branch) if isinstance(branch, str) else branch
        if isinstance(resolved, dict) and resolved.get("type") == "enum":
            return tuple(resolved.get("symbols", ()))
    return None


def diff_schemas(writer_schema: Any, contract: Contract | Mapping[str, Any] | str) -> SchemaDiff:
    """Compare a writer schema with a contract (or any reader record schema).

    Parameters
    ----------
    writer_schema
        The producer's schema: JSON text, decoded JSON or fastavro-parsed.
    contract
        The model's :class:`~driftline.schemas.contract.Contract`, or a plain reader schema.

    Raises
    ------
    WriterSchemaError
        If either schema is not a valid Avro record schema.
    """
    writer = avro_types.parse_schema(writer_schema)
    if isinstance(contract, Contract):
        reader, label, aliases = contract.parsed_schema, contract.label, contract.aliases
    else:
        reader = avro_types.parse_schema(contract)
        label, aliases = str(reader.get("name")), ()
    writer_named, reader_named = avro_types.named_types(writer), avro_types.named_types(reader)
    writer_fields = {str(f["name"]): f for f in writer.get("fields", ())}
    matched: set[str] = set()
    missing: list[str] = []
    defaulted: list[str] = []
    aliased: list[tuple[str, str]] = []
    changes: list[TypeChange] = []
    for field in reader.get("fields", ()):
        name = str(field["name"])
        source = name if name in writer_fields else next((a for a in field.get("aliases", ()) if a in writer_fields), None)
        if source is None:
            missing.append(name)
            if "default" in field:
                defaulted.append(name)
            continue
        matched.add(source)
        if source != name:
            aliased.append((name, source))
        writer_type, reader_type = writer_fields[source]["type"], field["type"]
        writer_label = avro_types.type_label(writer_type, writer_named)
        reader_label = avro_types.type_label(reader_type, reader_named)
        if writer_label != reader_label or _enum_symbols(writer_type, writer_named) != _enum_symbols(reader_type, reader_named):
            how = avro_types.resolution(writer_type, reader_type, writer_named, reader_named)
            changes.append(TypeChange(name, writer_label, reader_label, how))
    new = [name for name in writer_fields if name not in matched]
    renamed: list[tuple[str, str]] = []
    reader_types = {str(f["name"]): f["type"] for f in reader.get("fields", ())}
    for name in missing:
        if name in defaulted:
            continue
        candidates = [
            n for n in new
            if avro_types.resolution(writer_fields[n]["type"], reader_types[name], writer_named, reader_named) != "none"
        ]
        if len(candidates) == 1:
            renamed.append((name, candidates[0]))
    writer_name = str(writer.get("name"))
    contract_name = str(reader.get("name"))
    if writer_name in aliases:
        writer_name = contract_name  # resolution accepts the contract's record aliases
    return SchemaDiff(
        writer_name=writer_name,
        contract_name=contract_name,
        contract_label=label,
        missing_fields=tuple(missing),
        defaulted_fields=tuple(defaulted),
        new_fields=tuple(new),
        type_changes=tuple(changes),
        renamed_fields=tuple(renamed),
        aliased_fields=tuple(aliased),
        new_field_types=tuple(avro_types.type_label(writer_fields[n]["type"], writer_named) for n in new),
    )
