"""The docker-compose stack, its Dockerfile, the Grafana provisioning and dashboard, and the metric
names the Prometheus rules and the dashboard's Prometheus panels query (its schema, its SQL panels
and its counterparts of the report's panels: test_grafana.py) — checked without Docker (none on these
machines): every file it mounts exists, the services agree with each other on addresses, the worker's
command line is one the ``driftline`` CLI accepts, and every PromQL expression names only metrics
that :mod:`driftline.sinks.metrics` exports.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: Series that Prometheus itself creates, which the rules and the dashboard may query.
PROMETHEUS_BUILTIN_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

#: What the dashboard must show (the issue's list of panels).
DASHBOARD_REQUIRED_METRICS = frozenset(
    {
        "driftline_events_accepted_total",
        "driftline_events_rejected_total",
        "driftline_drift_score",
        "driftline_active_alerts",
        "driftline_window_lag_seconds",
        "driftline_processing_latency_seconds_bucket",
        "driftline_consumer_lag_messages",
    }
)

_PROMQL_WORDS = frozenset(
    {
        # binary operators and modifiers
        "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
        "group_left", "group_right", "atan2", "inf", "nan",
        # aggregation operators
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)


def promql_metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expression)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries (Grafana's $__rate_interval too)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):
        token = match.group(0)
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if token.lower() in _PROMQL_WORDS:
            continue
        names.add(token)
    return names


def test_promql_metric_names_finds_selectors_and_nothing_else() -> None:
    expression = (
        'histogram_quantile(0.99, sum by (le) (rate(latency_seconds_bucket{job="x"}[$__rate_interval])))'
        ' / clamp_min(sum without (reason) (increase(rejected_total[5m] offset 1h)) + on (model) group_left(kind) '
        'other_gauge, 1e-9) > bool 2 and up{job=~"driftline|prometheus"} unless ALERTS'
    )
    assert promql_metric_names(expression) == {
        "latency_seconds_bucket",
        "rejected_total",
        "other_gauge",
        "up",
        "ALERTS",
    }


# ----------------------------------------------------------------------------- docker-compose.yml


@pytest.fixture(scope="module")
def compose(repository: Path, load_yaml: Callable[[Path], Any]) -> dict[str, Any]:
    document = load_yaml(repository / "docker-compose.yml")
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _option(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def test_compose_runs_the_whole_stack(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "postgres", "prometheus", "alertmanager", "grafana", "worker"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:3.9.1"
    assert services["postgres"]["image"].startswith("postgres:15")
    for name, service in services.items():
        assert ("image" in service) or ("build" in service), f"{name} has neither image nor build"
        image = service.get("image", "")
        if "build" not in service:
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image version, got {image!r}"


def test_compose_bind_mounts_exist(repository: Path, services: dict[str, dict[str, Any]]) -> None:
    mounted = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (repository / source).exists(), f"{name} mounts {source}, which does not exist"
                mounted += 1
    assert mounted >= 5  # prometheus config and rules, alertmanager config, grafana provisioning and dashboards


def test_compose_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses volume {source!r}, not declared under volumes:"


def test_compose_dependencies_wait_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, list):
            depends_on = {dependency: {"condition": "service_started"} for dependency in depends_on}
        for dependency, condition in depends_on.items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health, which has no healthcheck"
            elif condition["condition"] == "service_completed_successfully":
                assert services[dependency].get("restart", "no") == "no", f"{dependency} is a one-shot: restart must be 'no'"
    worker_waits_for = set(services["worker"]["depends_on"])
    assert {"kafka", "postgres"} <= worker_waits_for


def test_compose_kafka_is_kraft_and_consistent(services: dict[str, dict[str, Any]]) -> None:
    environment = _environment(services["kafka"])
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node_id = environment["KAFKA_NODE_ID"]
    voter_id, voter_address = environment["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")
    assert voter_id == node_id
    protocol_map = dict(pair.split(":") for pair in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = {listener.split("://")[0]: listener.split("://")[1] for listener in environment["KAFKA_LISTENERS"].split(",")}
    assert set(listeners) <= set(protocol_map)
    assert environment["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert voter_address.split(":")[1] == listeners[environment["KAFKA_CONTROLLER_LISTENER_NAMES"]].split(":")[-1]
    advertised = {listener.split("://")[0]: listener.split("://")[1] for listener in environment["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert set(advertised) <= set(listeners)
    # The worker's --bootstrap is what the broker advertises to the other containers.
    assert _option(_command(services["worker"]), "--bootstrap") in advertised.values()
    for single_node_setting in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert environment[single_node_setting] == "1"


def test_compose_schema_registry_is_the_local_ones_apicurio_and_the_worker_uses_it(
    repository: Path, services: dict[str, dict[str, Any]]
) -> None:
    registry = services["schema-registry"]
    # The same Apicurio Registry as deploy/local/registry.sh builds for the tests, in memory.
    version = re.search(r"^REGISTRY_VERSION=(\S+)$", (repository / "deploy/local/registry.sh").read_text(encoding="utf-8"), re.MULTILINE)
    assert version is not None
    assert registry["image"] == f"apicurio/apicurio-registry-mem:{version.group(1)}"
    # Apicurio's default compatibility is NONE; the local script and compose both make it BACKWARD.
    assert _environment(registry)["REGISTRY_RULES_GLOBAL_COMPATIBILITY"] == "BACKWARD"
    [published] = registry["ports"]
    host, host_port, container_port = published.split(":")
    assert host == "127.0.0.1" and host_port == "8081"
    # Ready when Quarkus says so, on the port the container listens on.
    probe = " ".join(registry["healthcheck"]["test"])
    assert f"/dev/tcp/127.0.0.1/{container_port}" in probe and "GET /health/ready" in probe and "' 200 '" in probe
    # The worker resolves schema ids through the Confluent API of that service, and waits for it.
    assert _option(_command(services["worker"]), "--schema-registry") == f"http://schema-registry:{container_port}/apis/ccompat/v7"
    assert services["worker"]["depends_on"]["schema-registry"]["condition"] == "service_healthy"


def test_compose_schema_registry_healthcheck_speaks_http(services: dict[str, dict[str, Any]]) -> None:
    """The healthcheck's hand-made HTTP request, run by bash against a local server: 200 healthy, 503 not."""
    import http.server
    import threading

    statuses = iter([200, 503])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(next(statuses) if self.path == "/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        kind, command = services["schema-registry"]["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        container_port = services["schema-registry"]["ports"][0].split(":")[-1]
        local = command.replace(f"/dev/tcp/127.0.0.1/{container_port}", f"/dev/tcp/127.0.0.1/{server.server_port}")
        results = [subprocess.run(["bash", "-c", local], capture_output=True, timeout=30).returncode for _ in range(2)]
        assert results[0] == 0 and results[1] != 0, results
    finally:
        server.shutdown()
        server.server_close()


def _build_cli_parser() -> Any:
    import driftline.stream.cli.commands as cli

    build = getattr(cli, "build_parser", None) or cli._build_parser
    return build()


def test_compose_worker_command_is_accepted_by_the_cli(repository: Path, services: dict[str, dict[str, Any]]) -> None:
    worker = _command(services["worker"])
    assert worker[0] == "worker"
    arguments = _build_cli_parser().parse_args(worker)  # exits (SystemExit) on an unknown flag
    assert arguments.metrics_port == 9464
    assert arguments.metrics_address == "0.0.0.0", "inside a container, metrics must bind beyond loopback for Prometheus"
    # The healthcheck probes the worker's liveness endpoint on the port it serves it on.
    healthcheck = " ".join(services["worker"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{arguments.health_port}/healthz" in healthcheck
    for model in arguments.models:
        assert (repository / "schemas" / f"{model}.avsc").exists(), f"the worker monitors {model}, which has no contract"
    # The database URL matches the postgres service's credentials and database.
    environment = _environment(services["postgres"])
    expected = (
        f"postgresql+psycopg://{environment['POSTGRES_USER']}:{environment['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{environment['POSTGRES_DB']}"
    )
    assert arguments.database_url == expected
    if "migrate" in services:
        migrate = _command(services["migrate"])
        migrate_arguments = _build_cli_parser().parse_args(migrate)
        assert migrate[:2] == ["db", "upgrade"]
        assert migrate_arguments.database_url == expected


def test_compose_prometheus_scrapes_the_worker(
    repository: Path, services: dict[str, dict[str, Any]], load_yaml: Callable[[Path], Any]
) -> None:
    config = load_yaml(repository / "deploy/prometheus/prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [target for static in jobs["driftline"]["static_configs"] for target in static["targets"]]
    metrics_port = _option(_command(services["worker"]), "--metrics-port")
    assert targets == [f"worker:{metrics_port}"]
    alertmanagers = [target for entry in config["alerting"]["alertmanagers"] for static in entry["static_configs"] for target in static["targets"]]
    assert alertmanagers == ["alertmanager:9093"]
    mounts = dict(volume.split(":")[:2] for volume in services["prometheus"]["volumes"] if volume.startswith("."))
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./deploy/prometheus/rules"] == "/etc/prometheus/rules"


@pytest.mark.parametrize("config_name", ["prometheus.yml", "local"])
def test_prometheus_configs_load_the_project_rules(
    repository: Path, load_yaml: Callable[[Path], Any], config_name: str, local_prometheus_config: Path
) -> None:
    config_directory = repository / "deploy/prometheus"
    config = load_yaml(local_prometheus_config if config_name == "local" else config_directory / config_name)
    rule_files = sorted(
        Path(found).resolve() for pattern in config["rule_files"] for found in glob.glob(str(config_directory / pattern))
    )
    expected = sorted(path.resolve() for path in (config_directory / "rules").glob("*.rules.yml"))
    assert expected and rule_files == expected
    assert "driftline" in {job["job_name"] for job in config["scrape_configs"]}


def _local_ports(repository: Path, offset: str = "0") -> dict[str, str]:
    """The ports deploy/local/lib.sh defines, as bash computes them (with ``DRIFTLINE_PORT_OFFSET=offset``)."""
    names = ["KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_SCRAM_PORT", "KAFKA_TLS_PORT", "KAFKA_MTLS_PORT", "POSTGRES_PORT",
             "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "METRICS_PORT", "SCHEMA_REGISTRY_PORT"]
    script = f'source "{repository}/deploy/local/lib.sh"; ' + "; ".join(f'echo "{name}=${{{name}}}"' for name in names)
    output = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True,
                            env={**os.environ, "DRIFTLINE_PORT_OFFSET": offset}).stdout
    return dict(line.split("=", 1) for line in output.split())


def test_port_offset_shifts_every_local_port(repository: Path) -> None:
    base, shifted = _local_ports(repository), _local_ports(repository, "300")
    assert base["KAFKA_PORT"] == "19092" and base["POSTGRES_PORT"] == "15432" and base["SCHEMA_REGISTRY_PORT"] == "18081"
    assert {name: int(port) + 300 for name, port in base.items()} == {name: int(port) for name, port in shifted.items()}
    refused = subprocess.run(["bash", "-c", f'source "{repository}/deploy/local/lib.sh"'], capture_output=True, text=True,
                             timeout=30, env={**os.environ, "DRIFTLINE_PORT_OFFSET": "150"})
    assert refused.returncode == 2 and "DRIFTLINE_PORT_OFFSET=150" in refused.stderr


def test_local_prometheus_config_targets_the_local_services(
    repository: Path, load_yaml: Callable[[Path], Any], local_prometheus_config: Path
) -> None:
    """The addresses of deploy/local/lib.sh, seen from the local Prometheus configuration rendered from them."""
    ports = _local_ports(repository, os.environ.get("DRIFTLINE_PORT_OFFSET", "0"))  # what prometheus.sh rendered with
    template = (repository / "deploy/prometheus/prometheus.local.yml.in").read_text(encoding="utf-8")
    assert not re.search(r"\b1\d{4}\b", template), "the template must not repeat a port of lib.sh"
    config = load_yaml(local_prometheus_config)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["driftline"]["static_configs"][0]["targets"] == [f"127.0.0.1:{ports['METRICS_PORT']}"]
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == [f"127.0.0.1:{ports['ALERTMANAGER_PORT']}"]
    assert jobs["prometheus"]["static_configs"][0]["targets"] == [f"127.0.0.1:{ports['PROMETHEUS_PORT']}"]
    assert config["global"]["scrape_interval"] == "1s"


# -------------------------------------------------------------------------------------- Dockerfile


def _dockerfile_instructions(path: Path) -> Iterator[tuple[str, str]]:
    logical = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        logical += stripped.removesuffix("\\").strip() + " "
        if stripped.endswith("\\"):
            continue
        instruction, _, arguments = logical.strip().partition(" ")
        yield instruction.upper(), arguments.strip()
        logical = ""


def test_dockerfile_copies_what_exists_and_runs_driftline(repository: Path) -> None:
    instructions = list(_dockerfile_instructions(repository / "Dockerfile"))
    assert instructions[0] == ("FROM", "python:3.11-slim")
    ignored = {
        line.strip().rstrip("/")
        for line in (repository / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = []
    for instruction, arguments in instructions:
        if instruction == "COPY":
            *sources, _destination = arguments.split()
            for source in sources:
                assert (repository / source).exists(), f"COPY {source}: no such file"
                assert source.rstrip("/") not in ignored, f"COPY {source}, but .dockerignore excludes it"
                copied.append(source.rstrip("/"))
    # Everything pyproject.toml packages and its readme.
    assert {"pyproject.toml", "README.md", "detectors", "schemas", "sinks", "stream"} <= set(copied)
    assert ("ENTRYPOINT", '["driftline"]') in instructions
    assert any(instruction == "USER" and arguments != "root" for instruction, arguments in instructions)
    assert {".git", ".venv", ".services"} <= ignored


# ------------------------------------------------------------------------------------------ Grafana


@pytest.fixture(scope="module")
def dashboard(repository: Path) -> dict[str, Any]:
    return json.loads((repository / "deploy/grafana/dashboards/driftline.json").read_text(encoding="utf-8"))


def _dashboard_panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from _dashboard_panels(panel.get("panels", []))


def _dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """The PromQL of the dashboard: the Prometheus panels' targets and variables (the SQL ones are test_grafana.py's)."""
    for panel in _dashboard_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if (target.get("datasource") or panel.get("datasource", {}))["type"] == "prometheus":
                yield target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("datasource", {}).get("type") != "prometheus":
            continue
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        label_values = re.match(r"\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$", query)
        yield label_values.group(1) if label_values else query


def test_dashboard_queries_only_exported_metrics(dashboard: dict[str, Any], exported_metric_names: frozenset[str]) -> None:
    used: set[str] = set()
    for expression in _dashboard_queries(dashboard):
        names = promql_metric_names(expression)
        unknown = names - exported_metric_names - PROMETHEUS_BUILTIN_SERIES
        assert not unknown, f"the dashboard queries {sorted(unknown)}, which driftline does not export: {expression}"
        used |= names
    missing = DASHBOARD_REQUIRED_METRICS - used
    assert not missing, f"no panel shows {sorted(missing)}"


def test_dashboard_panels_use_the_provisioned_datasources(
    repository: Path, dashboard: dict[str, Any], load_yaml: Callable[[Path], Any], services: dict[str, dict[str, Any]]
) -> None:
    datasources = load_yaml(repository / "deploy/grafana/provisioning/datasources/driftline.yml")["datasources"]
    prometheus = next(source for source in datasources if source["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090"
    # The analyst views, as the read-only role compose's grafana-role service creates, with the password both are given.
    postgres = next(source for source in datasources if source["type"] == "grafana-postgresql-datasource")
    host, port = postgres["url"].split(":")
    assert host in services and port == "5432" and "postgres" in services[host]["image"]
    assert postgres["jsonData"]["database"] == _environment(services[host])["POSTGRES_DB"]
    role_command = _command(services["grafana-role"])
    assert role_command[:3] == ["db", "grant-readonly", postgres["user"]]
    assert _build_cli_parser().parse_args(role_command).role == postgres["user"]  # exits on an unknown flag
    variable = _option(role_command, "--password-env")
    assert postgres["secureJsonData"]["password"] == f"${variable}"
    assert _environment(services["grafana"])[variable] == _environment(services["grafana-role"])[variable]
    assert services["grafana"]["depends_on"]["grafana-role"]["condition"] == "service_completed_successfully"
    assert services["grafana-role"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert _option(role_command, "--database-url") == _option(_command(services["migrate"]), "--database-url")

    provisioned = {source["uid"]: source["type"] for source in datasources}
    panel_ids = [panel["id"] for panel in _dashboard_panels(dashboard["panels"])]
    assert len(panel_ids) == len(set(panel_ids))
    for panel in _dashboard_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert provisioned.get(panel["datasource"]["uid"]) == panel["datasource"]["type"], panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert provisioned.get(variable["datasource"]["uid"]) == variable["datasource"]["type"], variable["name"]
    for annotation in dashboard["annotations"]["list"]:
        source = annotation["datasource"]
        assert source["type"] == "grafana" or provisioned.get(source["uid"]) == source["type"], annotation["name"]
    # The dashboard provider reads the directory compose mounts the dashboards into.
    providers = load_yaml(repository / "deploy/grafana/provisioning/dashboards/driftline.yml")["providers"]
    mounts = dict(volume.split(":")[:2] for volume in services["grafana"]["volumes"] if volume.startswith("."))
    assert providers[0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


# ------------------------------------------------------------------------------- Prometheus rules


def test_alert_rules_query_only_exported_metrics(
    repository: Path, load_yaml: Callable[[Path], Any], exported_metric_names: frozenset[str]
) -> None:
    rule_files = sorted((repository / "deploy/prometheus/rules").glob("*.rules.yml"))
    assert rule_files
    alerts = 0
    for path in rule_files:
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                names = promql_metric_names(rule["expr"])
                assert names, f"{rule.get('alert')}: no metric in {rule['expr']!r}"
                unknown = names - exported_metric_names - PROMETHEUS_BUILTIN_SERIES
                assert not unknown, f"{rule.get('alert')} queries {sorted(unknown)}, which driftline does not export"
                alerts += "alert" in rule
    assert alerts >= 4
