"""The Kubernetes manifests (deploy/k8s), checked without a cluster: every one is valid against the Kubernetes
API's schemas (kubernetes-validate, strict: no unknown field), the worker's arguments are ones ``driftline
worker`` accepts, its probes hit the liveness and readiness endpoints on the port it serves them, its settings
and secrets come from the ConfigMap and the Secret, and the autoscaler scales it on the lag the worker exports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

import driftline.stream.cli.commands as cli
from driftline.sinks.metrics import DriftlineMetrics

#: The Kubernetes version the manifests are written for (kubernetes-validate's schemas).
KUBERNETES = "1.30"
K8S = Path(__file__).resolve().parents[3] / "deploy" / "k8s"
MANIFESTS = sorted([*K8S.glob("*.yaml"), K8S / "examples" / "secret.yaml"])


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
    # The database URL (and the webhook's) come from the Secret, in the variables the worker reads when the
    # options are absent; the broker and the metrics port from the ConfigMap.
    assert {env["name"]: env["valueFrom"]["secretKeyRef"]["name"] for env in container["env"]} == {
        "DRIFTLINE_DATABASE_URL": "driftline-secrets", "DRIFTLINE_WEBHOOK_URL": "driftline-secrets"}
    assert not {"--database-url", "--webhook-url", "--bootstrap", "--metrics-port"} & set(args)
    config = load_yaml(repository / "deploy" / "k8s" / "configmap.yaml")
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    assert set(config["data"]) == {"DRIFTLINE_KAFKA_BOOTSTRAP", "DRIFTLINE_METRICS_PORT"}
    secret = load_yaml(repository / "deploy" / "k8s" / "examples" / "secret.yaml")
    assert {env["valueFrom"]["secretKeyRef"]["key"] for env in container["env"]} == set(secret["stringData"])
    assert ports["metrics"] == int(config["data"]["DRIFTLINE_METRICS_PORT"]) == int(
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])


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
