"""The Schema Registry's settings, client and codec factory, without a registry server (the real one is in
``tests/integration/test_schema_registry.py``): credentials come from the environment only and never
show, the client gets the latest-version TTL, the codecs share one client, an unreachable registry is
one clear error."""

from __future__ import annotations

import socket

import pytest

from driftline.schemas import Catalog, in_memory_registry
from driftline.schemas.errors import RegistryError
from driftline.stream.kafka.registry import (
    BASIC_AUTH_VARIABLE,
    LATEST_CACHE_SECONDS,
    URL_VARIABLE,
    SchemaRegistrySettings,
    Secret,
    codec_factory,
    describe_registry_error,
    registry_client,
)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_url_comes_from_the_option_else_the_environment() -> None:
    environment = {URL_VARIABLE: "http://registry.internal:8081"}
    assert SchemaRegistrySettings.from_environment(None, {}) is None
    assert SchemaRegistrySettings.from_environment("  ", {}) is None
    from_environment = SchemaRegistrySettings.from_environment(None, environment)
    assert from_environment is not None and from_environment.url == "http://registry.internal:8081"
    given = SchemaRegistrySettings.from_environment("http://127.0.0.1:18081/apis/ccompat/v7", environment)
    assert given is not None and given.url == "http://127.0.0.1:18081/apis/ccompat/v7"
    assert given.basic_auth is None and "basic.auth.user.info" not in given.client_config()


def test_credentials_come_from_the_environment_and_never_show() -> None:
    settings = SchemaRegistrySettings.from_environment("https://registry:8081", {BASIC_AUTH_VARIABLE: "driftline:hunter2-secret"})
    assert settings is not None
    assert settings.client_config()["basic.auth.user.info"] == "driftline:hunter2-secret"
    for shown in (repr(settings), str(settings), repr(settings.basic_auth), str(settings.basic_auth), f"{settings}"):
        assert "hunter2" not in shown, shown
    assert Secret("a:b") == Secret("a:b") and Secret("a:b") != Secret("a:c")


def test_a_url_with_credentials_is_refused_without_repeating_them() -> None:
    # A URL is given on the command line, which every user of the machine can read (ps).
    with pytest.raises(ValueError, match=f"must not carry credentials; set {BASIC_AUTH_VARIABLE}") as refused:
        SchemaRegistrySettings("http://driftline:hunter2-secret@registry:8081")
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ValueError, match=r"http\(s\)://host"):
        SchemaRegistrySettings("registry:8081")
    with pytest.raises(ValueError, match="user:password"):
        SchemaRegistrySettings("http://registry:8081", basic_auth=Secret("no-colon"))


def test_the_client_caches_the_latest_version_for_a_while_only() -> None:
    settings = SchemaRegistrySettings("http://127.0.0.1:1")
    config = settings.client_config()
    assert config["cache.latest.ttl.sec"] == LATEST_CACHE_SECONDS
    client = registry_client(settings)
    # confluent-kafka keeps the latest versions in a TTL cache only when the TTL is set (else for ever).
    from cachetools import TTLCache

    assert isinstance(client._latest_version_cache, TTLCache)
    assert client._latest_version_cache.ttl == LATEST_CACHE_SECONDS


def test_the_codecs_of_a_factory_share_one_client() -> None:
    catalog = Catalog.load()
    shared = in_memory_registry()
    make = codec_factory(catalog, SchemaRegistrySettings("mock://"), client=shared)
    first, second = make(), make()
    assert first is not second
    assert first.registry_client is shared and second.registry_client is shared
    built = codec_factory(catalog, SchemaRegistrySettings("mock://"), max_message_bytes=500)
    assert built().registry_client is built().registry_client is not None
    assert built().max_message_bytes == 500
    assert codec_factory(catalog, None)().registry_client is None


def test_an_unreachable_registry_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/apis/ccompat/v7"
    settings = SchemaRegistrySettings(url, timeout_seconds=2)
    # The factory asks the registry (check_registry) before it makes any codec (the client retries twice: ~3 s).
    with pytest.raises(RegistryError, match=f"the Schema Registry at {url} cannot be used: ") as failure:
        codec_factory(Catalog.load(), settings)
    assert "\n" not in str(failure.value)
    codec_factory(Catalog.load(), settings, check=False)  # a caller that checks later (or never) builds it all the same


def test_registry_errors_are_described_by_the_registrys_own_message() -> None:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    refused = SchemaRegistryError(409, 409, "Schema being registered is incompatible with an earlier schema")
    assert describe_registry_error(refused) == "Schema being registered is incompatible with an earlier schema (HTTP 409)"
    assert describe_registry_error(ConnectionError("first line\nsecond line")) == "first line"
    assert describe_registry_error(ConnectionError()) == "ConnectionError"
