"""The detectors package is pure computation: no I/O imports, no I/O or dynamic-code builtins.

Every module in ``detectors/`` is parsed with ``ast``; imports must come from an allow-list and
calls to ``open``, ``print``, ``input``, ``exec``, ``eval`` (and ``__import__`` / ``compile``,
which would sidestep the import check) are rejected.  The checker is itself tested on snippets.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DETECTORS = Path(__file__).resolve().parents[3] / "detectors"

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
#: The package itself, when imported absolutely rather than relatively.
OWN_PACKAGE = "driftline.detectors"
FORBIDDEN_CALLS = frozenset({"open", "print", "input", "exec", "eval", "__import__", "compile", "breakpoint"})


def impurities(source: str) -> list[str]:
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
            if name == OWN_PACKAGE or name.startswith(OWN_PACKAGE + "."):
                continue
            if name.split(".")[0] not in ALLOWED_MODULES:
                problems.append(f"line {node.lineno}: import of {name}")
    return problems


def _modules() -> list[Path]:
    return sorted(DETECTORS.glob("*.py"))


def test_the_package_has_modules_to_check() -> None:
    names = {path.name for path in _modules()}
    assert {"__init__.py", "base.py", "calibration.py", "page_hinkley.py", "adwin.py", "psi.py"} <= names


@pytest.mark.parametrize("path", _modules(), ids=lambda path: path.name)
def test_detector_module_is_pure(path: Path) -> None:
    assert impurities(path.read_text(encoding="utf-8")) == []


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
