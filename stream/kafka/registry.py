"""The Schema Registry as driftline's commands reach it: its settings, its client, and the codecs built on it.

Confluent-framed events (magic byte 0 and a schema id) name their writer schema by its id in a
Schema Registry; :func:`codec_factory` gives the worker — and any other shell that decodes a topic,
such as a replay — codecs that resolve those ids through one shared ``SchemaRegistryClient``, so a
schema id is fetched once per process however many partitions' runners see it. ``driftline produce``
registers (or looks up) its writer schema through :func:`registry_client` too.

Settings are built once, when a command starts (:meth:`SchemaRegistrySettings.from_environment`):
the URL from ``--schema-registry`` or ``$DRIFTLINE_SCHEMA_REGISTRY_URL``, HTTP basic credentials only
from ``$DRIFTLINE_SCHEMA_REGISTRY_BASIC_AUTH`` (``user:password``, confluent-kafka's
``basic.auth.user.info``), never from the command line, where every user of the machine can read
them. Any Confluent-compatible registry works: Confluent's, or Apicurio's ``/apis/ccompat/v7`` (the
one ``deploy/local/registry.sh`` runs for the tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from driftline.schemas.codec import Codec
from driftline.schemas.contract_catalog import Catalog
from driftline.schemas.errors import RegistryError

from .connection import Secret

__all__ = [
    "BASIC_AUTH_VARIABLE",
    "LATEST_CACHE_SECONDS",
    "URL_VARIABLE",
    "SchemaRegistrySettings",
    "Secret",
    "check_registry",
    "codec_factory",
    "describe_registry_error",
    "registry_client",
]

#: Where the registry's URL comes from when no ``--schema-registry`` is given.
URL_VARIABLE = "DRIFTLINE_SCHEMA_REGISTRY_URL"
#: Where HTTP basic credentials come from (``user:password``); nowhere else.
BASIC_AUTH_VARIABLE = "DRIFTLINE_SCHEMA_REGISTRY_BASIC_AUTH"
#: How long a subject's latest version is cached by the client (``cache.latest.ttl.sec``). Without a
#: TTL confluent-kafka keeps the first answer of ``get_latest_version`` for the client's whole life, so
#: a long-lived process would never see a newer version; schemas by id never change and stay cached.
LATEST_CACHE_SECONDS = 30


@dataclass(frozen=True)
class SchemaRegistrySettings:
    """Where the Schema Registry is and how to reach it.

    Attributes
    ----------
    url
        Base URL of the Confluent-compatible API, e.g. ``http://127.0.0.1:8081`` (Confluent) or
        ``http://127.0.0.1:18081/apis/ccompat/v7`` (Apicurio); ``mock://`` is confluent-kafka's
        in-memory registry, which lives in one process only. It must not carry credentials.
    basic_auth
        HTTP basic credentials, ``user:password`` (``None``: none).
    latest_cache_seconds
        How long the client caches a subject's latest version (:data:`LATEST_CACHE_SECONDS`).
    timeout_seconds
        Timeout of one HTTP request to the registry.
    """

    url: str
    basic_auth: Secret | None = field(default=None, repr=False)
    latest_cache_seconds: int = LATEST_CACHE_SECONDS
    timeout_seconds: int = 10

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if "@" in parts.netloc:  # checked first: the messages below repeat the URL
            raise ValueError(
                f"the Schema Registry URL must not carry credentials; set {BASIC_AUTH_VARIABLE}=user:password instead"
            )
        if not self.url.startswith("mock://") and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError(f"the Schema Registry URL must be http(s)://host[:port][/path] (or mock://), got {self.url!r}")
        if self.basic_auth is not None and ":" not in self.basic_auth.reveal():
            raise ValueError(f"{BASIC_AUTH_VARIABLE} must be user:password")
        if self.latest_cache_seconds < 1:
            raise ValueError(f"latest_cache_seconds must be at least 1, got {self.latest_cache_seconds}")
        if self.timeout_seconds < 1:
            raise ValueError(f"timeout_seconds must be at least 1, got {self.timeout_seconds}")

    @classmethod
    def from_environment(cls, url: str | None, environ: Mapping[str, str] | None = None) -> SchemaRegistrySettings | None:
        """The settings of a command: ``url`` (its ``--schema-registry``) else ``$DRIFTLINE_SCHEMA_REGISTRY_URL``.

        ``None`` when neither names a registry. Credentials come from ``$DRIFTLINE_SCHEMA_REGISTRY_BASIC_AUTH``.

        >>> SchemaRegistrySettings.from_environment(None, {}) is None
        True
        >>> settings = SchemaRegistrySettings.from_environment(
        ...     None, {URL_VARIABLE: "http://registry:8081", BASIC_AUTH_VARIABLE: "driftline:s3cret"})
        >>> settings
        SchemaRegistrySettings(url='http://registry:8081', latest_cache_seconds=30, timeout_seconds=10)
        >>> settings.client_config()["basic.auth.user.info"]
        'driftline:s3cret'
        """
        environ = os.environ if environ is None else environ
        chosen = (url or "").strip() or environ.get(URL_VARIABLE, "").strip()
        if not chosen:
            return None
        user_info = environ.get(BASIC_AUTH_VARIABLE, "")
        return cls(chosen, basic_auth=Secret(user_info) if user_info else None)

    def client_config(self) -> dict[str, Any]:
        """The configuration of confluent-kafka's ``SchemaRegistryClient``."""
        config: dict[str, Any] = {
            "url": self.url,
            "cache.latest.ttl.sec": self.latest_cache_seconds,
            "timeout": self.timeout_seconds,
        }
        if self.basic_auth is not None:
            config["basic.auth.user.info"] = self.basic_auth.reveal()
        return config


def registry_client(settings: SchemaRegistrySettings) -> Any:
    """confluent-kafka's ``SchemaRegistryClient`` for ``settings`` (the in-memory one for ``mock://``)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient.new_client(settings.client_config())


def describe_registry_error(exc: BaseException) -> str:
    """One line for a failed registry request: the registry's own message and HTTP status, or why it could not be asked."""
    status = getattr(exc, "http_status_code", None)
    message = getattr(exc, "error_message", None)
    if status is not None and status > 0 and message:
        return f"{message} (HTTP {status})"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_registry(client: Any, settings: SchemaRegistrySettings) -> None:
    """Ask the registry something cheap (its subjects), so that a process that cannot reach it says so at start.

    Raises
    ------
    RegistryError
        The registry does not answer, or refuses the request (e.g. the credentials).
    """
    try:
        client.get_subjects()
    except Exception as exc:  # requests' and the client's errors alike: the registry cannot be used
        raise RegistryError(f"the Schema Registry at {settings.url} cannot be used: {describe_registry_error(exc)}") from exc


def codec_factory(
    catalog: Catalog,
    registry: SchemaRegistrySettings | None,
    *,
    max_message_bytes: int = 1_000_000,
    client: Any = None,
    check: bool = True,
) -> Callable[[], Codec]:
    """A maker of codecs for ``catalog``'s contracts; with ``registry``, they resolve Confluent schema ids there.

    The one way the shells that decode a topic (the worker, a replay) get their codecs. Every codec
    made shares one registry client (``client`` if given, else one built from ``registry``), so each
    schema id is fetched once per process; each call makes a new codec, since a codec reports a
    writer schema's change once in its life and a runner restored from its checkpoint must see it
    again. Without a registry, Confluent-framed events are rejected as ``unknown_schema_id``.

    Raises
    ------
    RegistryError
        With ``check`` (the default), the registry does not answer (:func:`check_registry`): a process
        that cannot resolve schema ids says so when it starts, not at its first Confluent-framed event.

    >>> make = codec_factory(Catalog.load(), None)
    >>> make() is make(), make().registry_client is None
    (False, True)
    """
    shared = client
    if shared is None and registry is not None:
        shared = registry_client(registry)
    if check and registry is not None:
        check_registry(shared, registry)

    def make() -> Codec:
        return Codec(catalog, registry_client=shared, max_message_bytes=max_message_bytes)

    return make
