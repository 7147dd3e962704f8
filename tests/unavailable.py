"""What a test does when something it needs (a service, a tool) is missing: fail under CI, skip elsewhere.

CI must never pass by skipping (``CI=true``); a developer without the services can still run the
rest. Used by the fixtures of ``tests/integration`` and ``tests/unit/deploy`` (on pytest's pythonpath).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(message: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
