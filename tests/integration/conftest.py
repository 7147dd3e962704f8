"""Fixtures for tests that talk to the real services started by ``deploy/local/services.sh``.

``make test`` starts the services and exports their addresses; a developer can do the same with
``eval "$(bash deploy/local/services.sh up)"``. A test that needs a service whose address is not
set **fails** when ``CI=true`` (CI must never pass by skipping) and is skipped otherwise, so
``pytest tests/unit`` stays usable on a laptop without services.
"""

from __future__ import annotations

import os

import pytest
from unavailable import unavailable

SERVICE_VARIABLES = {
    "kafka": "DRIFTLINE_KAFKA_BOOTSTRAP",
    "postgres": "DRIFTLINE_DATABASE_URL",
    "prometheus": "DRIFTLINE_PROMETHEUS_URL",
    "alertmanager": "DRIFTLINE_ALERTMANAGER_URL",
    "schema registry": "DRIFTLINE_SCHEMA_REGISTRY_URL",
}


def service_address(service: str) -> str:
    """The address of a running service, or fail (CI) / skip (elsewhere) when it is not set."""
    variable = SERVICE_VARIABLES[service]
    value = os.environ.get(variable, "").strip()
    if value:
        return value
    unavailable(f"{service} is not available: {variable} is not set (run `make test`, or `eval \"$(bash deploy/local/services.sh up)\"`)")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return service_address("kafka")


@pytest.fixture(scope="session")
def database_url() -> str:
    return service_address("postgres")


@pytest.fixture(scope="session")
def prometheus_url() -> str:
    return service_address("prometheus")


@pytest.fixture(scope="session")
def alertmanager_url() -> str:
    return service_address("alertmanager")


@pytest.fixture(scope="session")
def schema_registry_url() -> str:
    """The Confluent-compatible API of the Schema Registry (Apicurio's ``/apis/ccompat/v7`` locally)."""
    return service_address("schema registry")
