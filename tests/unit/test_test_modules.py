"""Test modules need unique basenames.

pytest imports test files without packages (rootdir-relative, no ``__init__.py``), so two
``test_x.py`` in different folders collide when both are collected in one run — ``make test`` runs unit and
integration together and stops at collection. ``make unit`` alone would never see it, hence this check.
"""

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_unique_basename() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in sorted(TESTS.rglob("test_*.py")):
        by_name[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert len(by_name) > 50, "the tests folder was not found"
    assert not clashes, f"test modules sharing a basename: {clashes}"
