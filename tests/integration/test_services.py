"""The real services that ``deploy/local/services.sh up`` starts (or ``docker compose up`` provides)
answer as the rest of the suite expects: Kafka round-trips a message, PostgreSQL 15 accepts
SQLAlchemy + psycopg, Prometheus runs driftline's job and rules and reaches Alertmanager, and — on
the local services — an alert goes the whole way from a scraped metric to Alertmanager; the Schema
Registry speaks the Confluent API with BACKWARD compatibility.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from unavailable import unavailable
from worker_harness import eventually, get_json, http_get

REPOSITORY = Path(__file__).resolve().parents[2]
RULES = REPOSITORY / "deploy/prometheus/rules/driftline.rules.yml"

# ------------------------------------------------------------------------------------------- Kafka


def test_kafka_answers_a_metadata_request(kafka_bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert metadata.brokers, "no broker in the metadata"
    assert metadata.cluster_id
    assert metadata.controller_id in metadata.brokers


def test_kafka_round_trips_a_message_on_a_fresh_topic(kafka_bootstrap: str) -> None:
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"driftline-services-test-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], operation_timeout=30)
    created[topic].result(timeout=30)
    try:
        delivered: list[Any] = []
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        producer.produce(
            topic,
            key=b"model-a",
            value=b"\x00\x01 one message",
            headers=[("reason", b"round-trip")],
            on_delivery=lambda error, message: delivered.append(error or message),
        )
        assert producer.flush(30) == 0, "the message was not delivered within 30 s"
        assert len(delivered) == 1 and not isinstance(delivered[0], KafkaError), delivered
        assert delivered[0].offset() == 0, "a fresh topic starts at offset 0"

        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": f"{topic}-group",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        try:
            deadline = time.monotonic() + 60
            message = None
            while message is None and time.monotonic() < deadline:
                polled = consumer.poll(1.0)
                if polled is not None:
                    assert polled.error() is None, polled.error()
                    message = polled
            assert message is not None, "nothing consumed within 60 s"
            assert (message.topic(), message.partition(), message.offset()) == (topic, 0, 0)
            assert message.key() == b"model-a"
            assert message.value() == b"\x00\x01 one message"
            assert message.headers() == [("reason", b"round-trip")]
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic], operation_timeout=30)


# ---------------------------------------------------------------------------------------- Postgres


def test_postgres_15_accepts_sqlalchemy_with_psycopg(database_url: str) -> None:
    from sqlalchemy import create_engine, make_url, text

    url = make_url(database_url)
    assert url.drivername == "postgresql+psycopg", "the project's driver is psycopg 3"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version()")).scalar_one()
            assert re.match(r"PostgreSQL 15\.\d+", version), version
            assert connection.execute(text("SHOW server_version_num")).scalar_one().startswith("15")
            assert connection.execute(text("SELECT current_database()")).scalar_one() == url.database
            # Writes work (a temporary table disappears with the session).
            connection.execute(text("CREATE TEMPORARY TABLE services_probe (id integer PRIMARY KEY, note text)"))
            connection.execute(text("INSERT INTO services_probe VALUES (1, 'ok')"))
            assert connection.execute(text("SELECT note FROM services_probe WHERE id = 1")).scalar_one() == "ok"
    finally:
        engine.dispose()


# ------------------------------------------------------------------------- Prometheus, Alertmanager


def test_prometheus_is_ready_with_the_driftline_job_and_rules(prometheus_url: str) -> None:
    status, _ = http_get(f"{prometheus_url}/-/ready")
    assert status == 200
    config = get_json(f"{prometheus_url}/api/v1/status/config")["data"]["yaml"]
    assert re.search(r"^- job_name: driftline$", config, flags=re.MULTILINE), config

    def driftline_target() -> dict[str, Any] | None:
        targets = get_json(f"{prometheus_url}/api/v1/targets?state=active")["data"]["activeTargets"]
        return next((target for target in targets if target["labels"].get("job") == "driftline"), None)

    eventually(driftline_target, 30, "Prometheus lists a target of job driftline")

    expected_alerts = set(re.findall(r"^\s*- alert: (\w+)\s*$", RULES.read_text(encoding="utf-8"), flags=re.MULTILINE))
    assert expected_alerts
    groups = get_json(f"{prometheus_url}/api/v1/rules?type=alert")["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert expected_alerts <= loaded, f"rules not loaded: {sorted(expected_alerts - loaded)}"
    assert all(rule["health"] != "err" for group in groups for rule in group["rules"])


def test_alertmanager_is_ready_and_stores_an_alert(alertmanager_url: str) -> None:
    status, _ = http_get(f"{alertmanager_url}/-/ready")
    assert status == 200
    assert get_json(f"{alertmanager_url}/api/v2/status")["cluster"]["status"] == "disabled"

    name = f"DriftlineServicesProbe{uuid.uuid4().hex[:8]}"
    request = urllib.request.Request(
        f"{alertmanager_url}/api/v2/alerts",
        data=json.dumps([{"labels": {"alertname": name, "severity": "none"}, "annotations": {"summary": "probe"}}]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    alerts = get_json(f"{alertmanager_url}/api/v2/alerts?filter=alertname%3D%22{name}%22")
    assert [alert["labels"]["alertname"] for alert in alerts] == [name]


def test_prometheus_sends_alerts_to_the_alertmanager(prometheus_url: str, alertmanager_url: str) -> None:
    alertmanager_port = urlsplit(alertmanager_url).port

    def active() -> list[str] | None:
        urls = [entry["url"] for entry in get_json(f"{prometheus_url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]]
        return urls if any(urlsplit(url).port == alertmanager_port for url in urls) else None

    urls = eventually(active, 30, f"Prometheus lists an active Alertmanager on port {alertmanager_port}")
    assert all(url.endswith("/api/v2/alerts") for url in urls)


def test_a_scraped_driftline_alert_reaches_alertmanager(prometheus_url: str, alertmanager_url: str) -> None:
    """The local stack end to end: metrics served on DRIFTLINE_METRICS_PORT are scraped (job
    driftline), the DriftlineAlertActive rule fires, and Alertmanager receives the alert."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    metrics_port = int(os.environ.get("DRIFTLINE_METRICS_PORT", "19464"))
    targets = get_json(f"{prometheus_url}/api/v1/targets?state=active")["data"]["activeTargets"]
    scraped = {target["labels"]["instance"] for target in targets if target["labels"].get("job") == "driftline"}
    if f"127.0.0.1:{metrics_port}" not in scraped:
        unavailable(f"this Prometheus scrapes {sorted(scraped)}, not the local test port {metrics_port} (not the local services)")

    model = f"services-probe-{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    active_alerts = Gauge("driftline_active_alerts", "probe", ["model", "kind"], registry=registry)
    active_alerts.labels(model=model, kind="mean_shift").set(1)
    try:
        server, thread = start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
    except OSError as error:
        pytest.fail(f"cannot serve metrics on 127.0.0.1:{metrics_port} (is a worker running?): {error}")
    try:

        def received() -> dict[str, Any] | None:
            alerts = get_json(f"{alertmanager_url}/api/v2/alerts?filter=model%3D%22{model}%22")
            return next((alert for alert in alerts if alert["labels"]["alertname"] == "DriftlineAlertActive"), None)

        alert = eventually(received, 60, f"DriftlineAlertActive for model {model} in Alertmanager")
        assert alert["labels"]["kind"] == "mean_shift"
        assert alert["labels"]["severity"] == "warning"
        assert alert["status"]["state"] == "active"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------------- Schema Registry


def _registry_request(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Status and JSON body of a Confluent Schema Registry API request (an HTTP error status is returned, not raised)."""
    request = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_the_schema_registry_speaks_the_confluent_api_with_backward_compatibility(schema_registry_url: str) -> None:
    status, config = _registry_request("GET", f"{schema_registry_url}/config")
    assert status == 200 and config["compatibilityLevel"] == "BACKWARD", config
    subject = f"services-probe-{uuid.uuid4().hex[:12]}-value"
    first = {"type": "record", "name": "Probe", "fields": [{"name": "a", "type": "int"}]}
    status, registered = _registry_request("POST", f"{schema_registry_url}/subjects/{subject}/versions", {"schema": json.dumps(first)})
    assert status == 200 and isinstance(registered["id"], int), registered
    try:
        status, schema = _registry_request("GET", f"{schema_registry_url}/schemas/ids/{registered['id']}")
        assert status == 200 and json.loads(schema["schema"]) == first
        # A required field without a default: data written before cannot be read with it (BACKWARD).
        required = {**first, "fields": [*first["fields"], {"name": "b", "type": "int"}]}
        status, refused = _registry_request("POST", f"{schema_registry_url}/subjects/{subject}/versions", {"schema": json.dumps(required)})
        assert status == 409, (status, refused)
        optional = {**first, "fields": [*first["fields"], {"name": "b", "type": ["null", "int"], "default": None}]}
        status, accepted = _registry_request("POST", f"{schema_registry_url}/subjects/{subject}/versions", {"schema": json.dumps(optional)})
        assert status == 200 and accepted["id"] != registered["id"], accepted
        status, latest = _registry_request("GET", f"{schema_registry_url}/subjects/{subject}/versions/latest")
        assert status == 200 and (latest["version"], latest["id"]) == (2, accepted["id"]), latest
        root = schema_registry_url.removesuffix("/apis/ccompat/v7")
        if root != schema_registry_url:
            # Apicurio (the local build): its dynamic configuration, indexed at build time by the extension step
            # deploy/local/registry/config-index-deployment rebuilds, is there.
            status, properties = _registry_request("GET", f"{root}/apis/registry/v2/admin/config/properties")
            assert status == 200 and "registry.ccompat.legacy-id-mode.enabled" in {p["name"] for p in properties}, properties
    finally:
        _registry_request("DELETE", f"{schema_registry_url}/subjects/{subject}")
