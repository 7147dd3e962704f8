"""Runs the examples in every docstring of the four packages (they are part of the docs)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ["driftline.detectors", "driftline.schemas", "driftline.sinks", "driftline.stream"]


def _modules() -> list[str]:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        # Every module of every sub-package (stream/monitor, stream/runner, …), not only the top level.
        found = pkgutil.walk_packages(package.__path__, package_name + ".")
        names.extend(info.name for info in found if not info.name.endswith(".__main__"))  # running it would run the CLI
    return sorted(names)


def test_every_sub_package_is_searched_for_examples() -> None:
    assert {"driftline.stream.monitor.results", "driftline.stream.runner.memory", "driftline.stream.cli.arguments"} <= set(_modules())


@pytest.mark.parametrize("module_name", _modules())
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_the_detectors_carry_examples() -> None:
    attempted = sum(
        doctest.testmod(importlib.import_module(f"driftline.detectors.{name}")).attempted
        for name in ("page_hinkley", "adwin", "psi")
    )
    assert attempted >= 3
