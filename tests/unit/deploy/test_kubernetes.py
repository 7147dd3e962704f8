"""The Kubernetes manifest of the worker, checked without a cluster: its arguments are ones ``driftline
worker`` accepts, and its probes hit the liveness and readiness endpoints on the port the worker serves them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import driftline.stream.cli.commands as cli


def test_the_worker_deployment_runs_a_worker_the_cli_accepts_with_its_probes(repository: Path, load_yaml: Callable[[Path], Any]) -> None:
    deployment = load_yaml(repository / "deploy" / "kubernetes" / "worker.yaml")
    assert deployment["kind"] == "Deployment"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [str(arg) for arg in container["args"]]
    assert args[0] == "worker"
    arguments = cli.build_parser().parse_args(args)  # exits (SystemExit) on an unknown flag
    assert arguments.all_models and arguments.health_address == "0.0.0.0" and arguments.metrics_address == "0.0.0.0"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": arguments.metrics_port, "health": arguments.health_port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    # The database URL comes from a secret, in the variable the worker reads when --database-url is absent.
    assert [env["name"] for env in container["env"]] == ["DRIFTLINE_DATABASE_URL"]
    assert "--database-url" not in args
