"""The pure packages do no I/O: no I/O imports, no I/O or dynamic-code builtins.

Every module of ``detectors/`` and of the monitor core ``stream/monitor/`` is parsed with ``ast``;
imports must come from an allow-list and calls to ``open``, ``print``, ``input``, ``exec``, ``eval``
(and ``__import__`` / ``compile``, which would sidestep the import check) are rejected. Which
driftline packages each may import is checked by import-linter (pyproject.toml); this test adds
the standard library and third-party side. The checker is itself tested on snippets.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

#: Top-level modules a detector may import.  ``json`` is for (de)serialising state only; ``copy``
#: (used by sketches.py to clone sketches) does no I/O either.
ALLOWED_MODULES = frozenset(
    {
        "numpy",
        "scipy",
        "datasketches",
        "math",
        "dataclasses",
        "typing",
        "__future__",
        "collections",
        "abc",
        "enum",
        "functools",
        "itertools",
        "struct",
        "base64",
        "json",
        "copy",
    }
)
#: Each pure package, and the driftline packages it may import besides itself.
PURE_PACKAGES = {
    "detectors": ("driftline.detectors",),
    "stream/monitor": ("driftline.stream.monitor", "driftline.detectors", "driftline.schemas"),
}
#: What the monitor core adds to the allow-list: hashing for alert ids, UTC times for messages, heaps
#: for the label join's expiry orders, and for the challenger River's online models (their
#: computation only) with ``pickle`` — River's way to persist a model — into bytes in memory, and
#: ``importlib`` for the challenger's model factory that the engine's config names.
MONITOR_MODULES = frozenset({"hashlib", "datetime", "heapq", "numbers", "river", "pickle", "importlib"})
FORBIDDEN_CALLS = frozenset({"open", "print", "input", "exec", "eval", "__import__", "compile", "breakpoint"})


def impurities(source: str, own_packages: tuple[str, ...] = PURE_PACKAGES["detectors"], extra: frozenset[str] = frozenset()) -> list[str]:
    """Human-readable violations of the purity rules in one module's source."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:  # relative import inside the package
                continue
            names = [node.module or ""]
        elif isinstance(node, ast.Call):
            function = node.func
            name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)
            if isinstance(function, ast.Name) and name in FORBIDDEN_CALLS:
                problems.append(f"line {node.lineno}: call to {name}()")
            elif isinstance(function, ast.Attribute) and name in {"__import__"}:
                problems.append(f"line {node.lineno}: call to .{name}()")
            continue
        else:
            continue
        for name in names:
            if any(name == own or name.startswith(own + ".") for own in own_packages):
                continue
            if name.split(".")[0] not in ALLOWED_MODULES | extra:
                problems.append(f"line {node.lineno}: import of {name}")
    return problems


def _modules() -> list[tuple[str, Path]]:
    return [(package, path) for package in PURE_PACKAGES for path in sorted((REPOSITORY / package).glob("*.py"))]


def test_the_packages_have_modules_to_check() -> None:
    names = {f"{package}/{path.name}" for package, path in _modules()}
    assert {"detectors/__init__.py", "detectors/page_hinkley.py", "detectors/psi.py"} <= names
    assert {"stream/monitor/engine.py", "stream/monitor/tracks.py", "stream/monitor/window_state.py"} <= names


@pytest.mark.parametrize(("package", "path"), _modules(), ids=[f"{p}/{m.name}" for p, m in _modules()])
def test_module_is_pure(package: str, path: Path) -> None:
    extra = MONITOR_MODULES if package == "stream/monitor" else frozenset()
    assert impurities(path.read_text(encoding="utf-8"), PURE_PACKAGES[package], extra) == []


def test_the_monitor_core_may_not_reach_a_shell() -> None:
    monitor = PURE_PACKAGES["stream/monitor"]
    assert impurities("from driftline.stream.kafka.worker import run_worker", monitor, MONITOR_MODULES)
    assert impurities("import sqlalchemy", monitor, MONITOR_MODULES)
    assert impurities("from driftline.sinks import SqlResultsSink", monitor, MONITOR_MODULES)
    assert impurities("from driftline.schemas.codec import Codec\nimport hashlib", monitor, MONITOR_MODULES) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import os",
        "import os.path as p",
        "from os import path",
        "import socket",
        "from pathlib import Path",
        "import io",
        "import kafka",
        "from sqlalchemy import create_engine",
        "import prometheus_client",
        "import importlib",
        "import numpy, subprocess",
        "def f():\n    import os\n",
        "print('x')",
        "open('/tmp/x')",
        "data = input()",
        "exec('1')",
        "eval('1')",
        "__import__('os')",
        "import builtins\nbuiltins.__import__('os')",
    ],
)
def test_checker_rejects_impure_code(snippet: str) -> None:
    assert impurities(snippet)


@pytest.mark.parametrize(
    "snippet",
    [
        "from __future__ import annotations\nimport numpy as np\nimport numpy.typing as npt",
        "from scipy.stats import chi2\nfrom .base import DriftDetector",
        "from driftline.detectors.base import DriftDetector",
        "import json\nx = json.dumps({})",
        "from collections import Counter\nfrom datasketches import kll_doubles_sketch",
        "values.sum()\nnp.log(2.0)",
    ],
)
def test_checker_accepts_pure_code(snippet: str) -> None:
    assert impurities(snippet) == []
