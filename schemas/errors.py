"""Errors of driftline.

``DriftlineError`` is the root of every error driftline raises on purpose; each failure kind has its
own subclass. These errors are for bad *configuration* (a malformed contract, a model that is not in
the catalog, an unreachable Schema Registry, a producer encoding a record that does not fit its own
schema). Bad *data* — corrupt bytes, unknown writer schemas, out-of-range values — never raises: the
codec turns it into a :class:`~driftline.schemas.codec.Rejection` with a reason.
"""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "ContractError",
    "DriftlineError",
    "EncodeError",
    "RegistryError",
    "UnknownModelError",
    "WriterSchemaError",
]


class DriftlineError(Exception):
    """Root of every error driftline raises on purpose."""


class ContractError(DriftlineError):
    """A contract file (or schema given as a contract) is not a valid driftline contract."""


class CatalogError(DriftlineError):
    """The catalog of contracts and writer schemas cannot be loaded or is inconsistent."""


class UnknownModelError(CatalogError, LookupError):
    """A model was asked for by name but has no contract in the catalog."""


class WriterSchemaError(DriftlineError, ValueError):
    """A writer schema handed to the catalog or an encoder is not a valid Avro schema."""


class EncodeError(DriftlineError, ValueError):
    """A producer tried to encode a record that does not fit the schema it named."""


class RegistryError(DriftlineError):
    """The Schema Registry could not be asked (transport or server failure).

    An id the registry does not know is *data* (the event is rejected as ``UNKNOWN_SCHEMA_ID``);
    a registry that cannot be reached is an operational failure, so the consumer should stop and
    retry rather than dead-letter good events. The client's error is the ``__cause__``.
    """
