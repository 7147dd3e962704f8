"""The Kubernetes manifests (deploy/k8s), checked without a cluster: every one is valid against the Kubernetes
API's schemas (kubernetes-validate, strict: no unknown field), the worker's arguments are ones ``driftline
worker`` accepts, its probes hit the liveness and readiness endpoints on the port it serves them, its settings
and secrets come from the ConfigMap and the Secrets — the Kafka connection and the database URL that
driftline's own builders make from the container's environment and mounted files as Kubernetes would lay them
out, so a missing variable, Secret key or mount fails here — and the autoscaler scales it on the lag the worker
exports."""

from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import sqlalchemy as sa
from throwaway_ca import make_ca

import driftline.stream.cli.commands as cli
from driftline.sinks.metrics import DriftlineMetrics
from driftline.stream.cli.arguments import UsageError, database_url, kafka_connection

#: The Kubernetes version the manifests are written for (kubernetes-validate's schemas).
KUBERNETES = "1.30"
K8S = Path(__file__).resolve().parents[3] / "deploy" / "k8s"
MANIFESTS = sorted([*K8S.glob("*.yaml"), K8S / "examples" / "secret.yaml", K8S / "examples" / "kafka-ca-secret.yaml"])


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.relative_to(K8S).as_posix() for p in MANIFESTS])
def test_every_manifest_is_valid_for_the_kubernetes_api(path: Path, load_yaml: Callable[[Path], Any]) -> None:
    document = load_yaml(path)
    assert kubernetes_validate.validate(document, KUBERNETES, strict=True) is not None


def test_the_schema_check_can_fail(load_yaml: Callable[[Path], Any]) -> None:
    deployment = load_yaml(K8S / "worker.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["porte"] = "health"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_worker_deployment_runs_a_worker_the_cli_accepts_with_its_probes(repository: Path, load_yaml: Callable[[Path], Any]) -> None:
    deployment = load_yaml(repository / "deploy" / "k8s" / "worker.yaml")
    assert deployment["kind"] == "Deployment"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [str(arg) for arg in container["args"]]
    assert args[0] == "worker"
    arguments = cli.build_parser().parse_args(args)  # exits (SystemExit) on an unknown flag
    assert arguments.all_models and arguments.health_address == "0.0.0.0" and arguments.metrics_address == "0.0.0.0"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert set(ports) == {"metrics", "health"} and ports["health"] == arguments.health_port
    assert arguments.metrics_port is None  # (from DRIFTLINE_METRICS_PORT, the ConfigMap's: checked below)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    # The webhook's URL comes from the Secret's key, the passwords from its mounted files, in the variables the
    # worker reads when the options are absent; the broker, the database URL and the metrics port from the ConfigMap.
    assert {env["name"]: env["valueFrom"]["secretKeyRef"]["name"] for env in container["env"] if "valueFrom" in env} == {
        "DRIFTLINE_WEBHOOK_URL": "driftline-secrets"}
    assert not [arg for arg in args if arg in ("--database-url", "--webhook-url", "--bootstrap", "--metrics-port") or arg.startswith("--kafka")]
    config = load_yaml(repository / "deploy" / "k8s" / "configmap.yaml")
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    assert ports["metrics"] == int(config["data"]["DRIFTLINE_METRICS_PORT"]) == int(
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])


# -- the worker's connections, as its builders see the pod ---------------------------------------------------------------

def _manifests(repository: Path, load_yaml: Callable[[Path], Any]) -> dict[str, Any]:
    k8s = repository / "deploy" / "k8s"
    return {
        "deployment": load_yaml(k8s / "worker.yaml"),
        "config": load_yaml(k8s / "configmap.yaml"),
        "secrets": {secret["metadata"]["name"]: secret for secret in (load_yaml(k8s / "examples" / name)
                                                                      for name in ("secret.yaml", "kafka-ca-secret.yaml"))},
    }


def _pod_environment(manifests: dict[str, Any], root: Path) -> tuple[list[str], dict[str, str]]:
    """The worker container's arguments and environment as Kubernetes gives them, its Secret volumes' files written
    under ``root`` (a path under a mount is moved there too): the ConfigMap's variables (envFrom), the container's
    own (values, or the example Secret's key), each mounted Secret's listed keys as files of the pod's group (0440).

    Raises AssertionError where Kubernetes would not start the pod (a volume or key that is not there), or where a
    mounted file is named by no variable (the worker would not use it)."""
    (container,) = manifests["deployment"]["spec"]["template"]["spec"]["containers"]
    volumes = {volume["name"]: volume for volume in manifests["deployment"]["spec"]["template"]["spec"]["volumes"]}
    mounts: dict[str, Path] = {}
    files: list[Path] = []
    for mount in container["volumeMounts"]:
        assert mount["readOnly"] is True, mount
        source = volumes[mount["name"]]["secret"]
        data = manifests["secrets"][source["secretName"]]["stringData"]
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        for item in source["items"]:
            assert item["key"] in data, f"Secret {source['secretName']} has no key {item['key']!r}"
            (directory / item["path"]).write_text(data[item["key"]], encoding="utf-8")
            files.append(directory / item["path"])
        mounts[mount["mountPath"]] = directory
    environ = dict(manifests["config"]["data"])
    for env in container["env"]:
        if "valueFrom" in env:
            reference = env["valueFrom"]["secretKeyRef"]
            environ[env["name"]] = manifests["secrets"][reference["name"]]["stringData"][reference["key"]]
        else:
            value = env["value"]
            for path, directory in mounts.items():
                if value.startswith(path + "/"):
                    value = str(directory / value.removeprefix(path + "/"))
            environ[env["name"]] = value
    unread = [str(file) for file in files if str(file) not in environ.values()]
    assert not unread, f"mounted files that no variable names (the worker would not read them): {unread}"
    return [str(arg) for arg in container["args"]], environ


def _worker_connections(manifests: dict[str, Any], root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """The Kafka connection and the database URL that ``driftline worker`` builds in the pod (a throwaway CA stands
    for the example's placeholder certificate)."""
    manifests = copy.deepcopy(manifests)
    ca = make_ca(root / "throwaway", client_key_password="unused")
    for secret in manifests["secrets"].values():
        if "ca.crt" in secret["stringData"]:
            secret["stringData"]["ca.crt"] = ca.ca.read_text()
    args, environ = _pod_environment(manifests, root / "pod")
    for name in [name for name in os.environ if name.startswith(("DRIFTLINE_KAFKA_", "DRIFTLINE_DATABASE_"))]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    parsed: argparse.Namespace = cli.build_parser().parse_args(args)
    return kafka_connection(parsed), database_url(parsed)


def test_the_worker_pod_reaches_kafka_over_tls_with_scram_and_the_database_with_its_password(
    repository: Path, load_yaml: Callable[[Path], Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifests = _manifests(repository, load_yaml)
    kafka, url = _worker_connections(manifests, tmp_path, monkeypatch)
    secrets = manifests["secrets"]["driftline-secrets"]["stringData"]
    config = manifests["config"]["data"]
    assert kafka.describe().startswith(f"{config['DRIFTLINE_KAFKA_BOOTSTRAP']} (SASL_SSL, SCRAM-SHA-512 as driftline, CA ")
    assert kafka.client_config()["sasl.password"] == secrets["kafka-sasl-password"]
    assert str(kafka.ssl_ca_location).endswith("etc/driftline/kafka-ca/ca.crt")
    assert sa.make_url(url).password == secrets["database-password"]
    assert sa.make_url(config["DRIFTLINE_DATABASE_URL"]).password is None  # the ConfigMap holds no password
    (container,) = manifests["deployment"]["spec"]["template"]["spec"]["containers"]
    names = {env["name"] for env in container["env"]} | set(config)
    assert not {"DRIFTLINE_KAFKA_SASL_PASSWORD", "DRIFTLINE_DATABASE_PASSWORD"} & names  # files, not variables
    pod = manifests["deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert {volume["name"]: volume["secret"].get("defaultMode") for volume in pod["volumes"]}["secrets"] == 0o440


@pytest.mark.parametrize("broken", ["configmap: DRIFTLINE_KAFKA_SASL_USERNAME", "secret: kafka-sasl-password",
                                    "container: DRIFTLINE_KAFKA_SSL_CA_LOCATION", "container: DRIFTLINE_DATABASE_PASSWORD_FILE",
                                    "mount: kafka-ca"])
def test_the_connection_check_catches_a_missing_setting(
    broken: str, repository: Path, load_yaml: Callable[[Path], Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifests = _manifests(repository, load_yaml)
    kind, name = broken.split(": ")
    (container,) = manifests["deployment"]["spec"]["template"]["spec"]["containers"]
    if kind == "configmap":
        del manifests["config"]["data"][name]
    elif kind == "secret":
        del manifests["secrets"]["driftline-secrets"]["stringData"][name]
    elif kind == "container":
        container["env"] = [env for env in container["env"] if env["name"] != name]
    else:
        container["volumeMounts"] = [mount for mount in container["volumeMounts"] if mount["name"] != name]
    with pytest.raises((UsageError, AssertionError)):
        _, url = _worker_connections(manifests, tmp_path, monkeypatch)
        assert sa.make_url(url).password is not None, "the database URL has no password"


def test_the_autoscaler_scales_the_worker_on_the_lag_it_exports(repository: Path, load_yaml: Callable[[Path], Any]) -> None:
    from prometheus_client import CollectorRegistry

    deployment = load_yaml(repository / "deploy" / "k8s" / "worker.yaml")
    hpa = load_yaml(repository / "deploy" / "k8s" / "hpa.yaml")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    name = metric["external"]["metric"]["name"]
    exported = {m.name for m in DriftlineMetrics(CollectorRegistry(), models={"m": []}).registry.collect()}
    assert metric["type"] == "External" and name == "driftline_consumer_lag_messages" and name in exported
    adapter = load_yaml(repository / "deploy" / "k8s" / "examples" / "prometheus-adapter-values.yaml")
    (rule,) = adapter["rules"]["external"]
    assert rule["name"]["as"] == name and name in rule["metricsQuery"] and rule["seriesQuery"] == name
