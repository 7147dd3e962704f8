"""The catalog: every model contract of a directory, and every known writer schema by fingerprint.

The :class:`Catalog` loads every contract of a directory (parsed by :mod:`~driftline.schemas.contract`),
the schemas of other events (labels, alerts) and, from its ``catalog/`` subdirectory, further known
*writer* schemas, and indexes them all by CRC-64-AVRO fingerprint (:class:`KnownSchema`) for
single-object decoding.

>>> catalog = Catalog.load()
>>> catalog.models
('credit_risk',)
>>> contract = catalog.contract("credit_risk")
>>> catalog.writer_schema(contract.fingerprint).full_name == contract.full_name
True
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import avro_types
from .contract import Contract, _read_json, parse_contract
from .errors import CatalogError, ContractError, UnknownModelError, WriterSchemaError

__all__ = ["Catalog", "KnownSchema"]


@dataclass(frozen=True, eq=False)
class KnownSchema:
    """A writer schema the catalog knows by fingerprint (a contract's own, or another producer's)."""

    fingerprint: int
    full_name: str
    parsed_schema: dict[str, Any]
    canonical_form: str
    source: str


class Catalog:
    """Contracts by model name and record name, and every known writer schema by fingerprint.

    Parameters
    ----------
    contracts
        Model contracts; model names and record names must be unique.
    writer_schemas
        Further writer schemas (JSON text, JSON value or parsed) to know by fingerprint.
    event_schemas
        Schemas of other driftline events (labels, alerts), by record full name; also known by
        fingerprint.
    """

    def __init__(
        self,
        contracts: Iterable[Contract] = (),
        writer_schemas: Iterable[Any] = (),
        event_schemas: Iterable[Any] = (),
    ) -> None:
        self._contracts: dict[str, Contract] = {}
        self._by_record: dict[str, Contract] = {}
        self._writers: dict[int, KnownSchema] = {}
        self._events: dict[str, KnownSchema] = {}
        for contract in contracts:
            if contract.model in self._contracts:
                raise CatalogError(
                    f"model {contract.model!r} has two contracts: {self._contracts[contract.model].source} and {contract.source}"
                )
            for name in (contract.full_name, *contract.aliases):
                if name in self._by_record:
                    raise CatalogError(f"record {name!r} is claimed by contracts of {self._by_record[name].model!r} and {contract.model!r}")
                self._by_record[name] = contract
            self._contracts[contract.model] = contract
            self._writers[contract.fingerprint] = KnownSchema(
                contract.fingerprint, contract.full_name, contract.parsed_schema, contract.canonical_form, contract.source
            )
        for schema in writer_schemas:
            self.register_writer_schema(schema)
        for schema in event_schemas:
            known = self._register(schema, "<event schema>")
            self._events[known.full_name] = known

    @classmethod
    def load(cls, directory: str | os.PathLike[str] | None = None) -> Catalog:
        """Load ``directory`` (default: the contracts bundled with driftline).

        Every ``*.avsc`` with a record-level ``driftline`` attribute is a contract, any other
        ``*.avsc`` an event schema; every ``catalog/*.avsc`` is a known writer schema.
        """
        root = Path(directory) if directory is not None else Path(__file__).parent
        if not root.is_dir():
            raise CatalogError(f"contract directory {root} does not exist")
        contracts: list[Contract] = []
        events: list[Any] = []
        for path in sorted(root.glob("*.avsc")):
            value = _read_json(path, ContractError)
            if isinstance(value, dict) and "driftline" in value:
                contracts.append(parse_contract(value, source=str(path)))
            else:
                events.append((value, str(path)))
        catalog = cls(contracts)
        for value, source in events:
            known = catalog._register(value, source, error=CatalogError)
            catalog._events[known.full_name] = known
        for path in sorted((root / "catalog").glob("*.avsc")):
            catalog._register(_read_json(path, CatalogError), str(path), error=CatalogError)
        return catalog

    # -- lookups --------------------------------------------------------------------------

    @property
    def models(self) -> tuple[str, ...]:
        """Model names with a contract, sorted (feature sets are listed apart: :attr:`feature_sets`)."""
        return tuple(sorted(name for name, contract in self._contracts.items() if contract.kind == "model"))

    @property
    def names(self) -> tuple[str, ...]:
        """Every contract's name — models and feature sets — sorted."""
        return tuple(sorted(self._contracts))

    @property
    def feature_sets(self) -> tuple[str, ...]:
        """Feature-set names with a contract (``"kind": "feature_set"``), sorted."""
        return tuple(sorted(name for name, contract in self._contracts.items() if contract.kind == "feature_set"))

    @property
    def contracts(self) -> Mapping[str, Contract]:
        return dict(self._contracts)

    def contract(self, model: str) -> Contract:
        """The contract of ``model``; :class:`UnknownModelError` if there is none."""
        try:
            return self._contracts[model]
        except KeyError:
            raise UnknownModelError(f"no contract for model {model!r}; known models and feature sets: {', '.join(self.names) or 'none'}") from None

    def get(self, model: str) -> Contract | None:
        return self._contracts.get(model)

    def contract_for_record(self, full_name: str) -> Contract | None:
        """The contract whose record full name (or alias) is ``full_name``."""
        return self._by_record.get(full_name)

    def writer_schema(self, fingerprint: int) -> KnownSchema | None:
        """The known writer schema with CRC-64-AVRO ``fingerprint`` (an unsigned 64-bit int)."""
        return self._writers.get(fingerprint)

    @property
    def fingerprints(self) -> Mapping[int, str]:
        """Every known fingerprint and the record full name it belongs to."""
        return {fp: known.full_name for fp, known in self._writers.items()}

    def event_schema(self, full_name: str) -> dict[str, Any]:
        """Parsed schema of another driftline event (e.g. ``driftline.events.Label``)."""
        try:
            return self._events[full_name].parsed_schema
        except KeyError:
            raise CatalogError(f"no event schema {full_name!r}; known: {', '.join(sorted(self._events)) or 'none'}") from None

    def __contains__(self, model: object) -> bool:
        return model in self._contracts

    def __iter__(self) -> Iterator[Contract]:
        return iter(self._contracts.values())

    def __len__(self) -> int:
        return len(self._contracts)

    # -- registration ---------------------------------------------------------------------

    def register_writer_schema(self, schema: Any, source: str = "<registered>") -> int:
        """Know ``schema`` by fingerprint from now on; return its fingerprint.

        Raises
        ------
        WriterSchemaError
            If ``schema`` is not a valid Avro record schema.
        """
        return self._register(schema, source).fingerprint

    def _register(self, schema: Any, source: str, error: type[Exception] = WriterSchemaError) -> KnownSchema:
        try:
            parsed = avro_types.parse_schema(schema)
            canonical = avro_types.canonical_form(parsed)
        except WriterSchemaError as exc:
            raise error(f"{source}: {exc}") from exc
        if parsed.get("type") != "record":
            raise error(f"{source}: a writer schema must be an Avro record, got {avro_types.type_label(parsed)}")
        fingerprint = avro_types.fingerprint(canonical)
        known = self._writers.get(fingerprint)
        if known is None:
            known = KnownSchema(fingerprint, str(parsed["name"]), parsed, canonical, source)
            self._writers[fingerprint] = known
        return known
