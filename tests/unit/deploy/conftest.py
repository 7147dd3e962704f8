"""Fixtures of the deployment-file tests: the repository's paths, a YAML loader, the metric names
driftline exports, and the Prometheus tools (``promtool``, ``amtool``).

The tools come with Debian's ``prometheus`` and ``prometheus-alertmanager`` packages, which
``deploy/local/services.sh up`` (run by ``make test``) installs. Like the service fixtures of
``tests/integration``, a missing tool **fails** the test when ``CI=true`` and skips it otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from unavailable import unavailable

REPOSITORY = Path(__file__).resolve().parents[3]

#: The system interpreter of Debian, whose python3-yaml parses YAML when the virtual environment
#: has no PyYAML (it is not among driftline's dependencies).
SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.fixture(scope="session")
def repository() -> Path:
    return REPOSITORY


def _system_yaml_loader() -> Callable[[str], Any] | None:
    if not SYSTEM_PYTHON.exists():
        return None
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import yaml"], capture_output=True, check=False)
    if probe.returncode != 0:
        return None

    def load(text: str) -> Any:
        result = subprocess.run(
            [str(SYSTEM_PYTHON), "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ValueError(f"invalid YAML: {result.stderr.strip().splitlines()[-1]}")
        return json.loads(result.stdout)

    return load


@pytest.fixture(scope="session")
def load_yaml() -> Callable[[Path], Any]:
    """``load_yaml(path)``: the parsed document (PyYAML's ``safe_load``)."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        loader = _system_yaml_loader()
        if loader is None:
            unavailable("no YAML parser: PyYAML is neither in the virtual environment nor in /usr/bin/python3")
        assert loader is not None
        return lambda path: loader(Path(path).read_text(encoding="utf-8"))
    return lambda path: yaml.safe_load(Path(path).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def exported_metric_names() -> frozenset[str]:
    """Every sample name driftline's metrics produce (``_total``, ``_bucket`` … included)."""
    from prometheus_client import CollectorRegistry

    from driftline.sinks.metrics import DriftlineMetrics

    registry = CollectorRegistry()
    DriftlineMetrics(registry, models={"model": ["feature"]})
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """``tool(name)``: the path of a command-line tool, or fail (CI) / skip (elsewhere)."""

    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            unavailable(
                f"{name} is not installed (Debian: prometheus / prometheus-alertmanager; "
                "`bash deploy/local/services.sh up` installs them)"
            )
        assert path is not None
        return path

    return find


@pytest.fixture(scope="session")
def local_prometheus_config(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local services' Prometheus configuration as ``deploy/local/prometheus.sh`` renders it (lib.sh's ports)."""
    rendered = subprocess.run(
        ["bash", str(repository / "deploy/local/prometheus.sh"), "config"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    path = tmp_path_factory.mktemp("prometheus") / "prometheus.yml"
    path.write_text(rendered, encoding="utf-8")
    return path
