"""Fixtures of the SQL sink tests on SQLite: a temporary database and a sink with a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlite_sink import FIXED_NOW

from driftline.sinks import SqlSink


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'driftline.sqlite'}")
    yield engine
    engine.dispose()


@pytest.fixture()
def sink(engine: sa.Engine) -> SqlSink:
    sink = SqlSink(engine, clock=lambda: FIXED_NOW)
    sink.create_schema()
    return sink
