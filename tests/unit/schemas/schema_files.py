"""Where the repository's Avro schemas are (a module of its own: ``from conftest import`` is ambiguous when
several test directories with a conftest are collected in one run)."""

from __future__ import annotations

from pathlib import Path

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
