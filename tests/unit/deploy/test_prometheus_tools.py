"""Prometheus's and Alertmanager's own checkers on the project's configuration: ``promtool check
config`` on both Prometheus configurations (docker-compose and local services; each also checks the
rule files it loads), ``promtool check rules``, the rules' unit tests (``promtool test rules``) and
``amtool check-config``. No service is needed, only the tools (see conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _assert_succeeds(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{' '.join(result.args)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("config", ["deploy/prometheus/prometheus.yml", "local"])
def test_promtool_checks_the_prometheus_config(repository: Path, tool: Callable[[str], str], config: str, local_prometheus_config: Path) -> None:
    path = str(local_prometheus_config) if config == "local" else config
    result = _run([tool("promtool"), "check", "config", path], repository)
    _assert_succeeds(result)
    # The rules were found and checked with the configuration, not silently matched by no file.
    assert "driftline.rules.yml" in result.stdout + result.stderr


def test_promtool_checks_the_rules(repository: Path, tool: Callable[[str], str]) -> None:
    rule_files = sorted(str(path.relative_to(repository)) for path in (repository / "deploy/prometheus/rules").glob("*.rules.yml"))
    assert rule_files
    _assert_succeeds(_run([tool("promtool"), "check", "rules", *rule_files], repository))


def test_promtool_unit_tests_of_the_rules_pass(repository: Path, tool: Callable[[str], str]) -> None:
    test_files = sorted(str(path.relative_to(repository)) for path in (repository / "deploy/prometheus/rules/tests").glob("*.yml"))
    assert test_files
    _assert_succeeds(_run([tool("promtool"), "test", "rules", *test_files], repository))


def test_promtool_rule_tests_catch_a_broken_rule(repository: Path, tool: Callable[[str], str], tmp_path: Path) -> None:
    """The rule tests can fail: with a threshold that never fires, they do."""
    rules = (repository / "deploy/prometheus/rules/driftline.rules.yml").read_text(encoding="utf-8")
    broken = rules.replace(
        "sum by (model, kind, feature) (driftline_active_alerts) > 0", "sum by (model, kind, feature) (driftline_active_alerts) > 1"
    )
    assert broken != rules
    (tmp_path / "driftline.rules.yml").write_text(broken, encoding="utf-8")
    shutil.copytree(repository / "deploy/prometheus/rules/tests", tmp_path / "tests")
    result = _run([tool("promtool"), "test", "rules", *sorted(str(path) for path in (tmp_path / "tests").glob("*.yml"))], tmp_path)
    assert result.returncode != 0
    assert "DriftlineAlertActive" in result.stdout + result.stderr


def test_amtool_checks_the_alertmanager_config(repository: Path, tool: Callable[[str], str]) -> None:
    result = _run([tool("amtool"), "check-config", "deploy/alertmanager/alertmanager.yml"], repository)
    _assert_succeeds(result)
    assert "SUCCESS" in result.stdout
