"""Fixtures of the SQL sink tests on SQLite: a temporary migrated database, and each store with a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlite_sink import FIXED_NOW

from driftline.sinks import SqlCheckpointStore, SqlProfileStore, SqlResultsSink, upgrade_engine


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'driftline.sqlite'}")
    upgrade_engine(engine)
    yield engine
    engine.dispose()


@pytest.fixture()
def sink(engine: sa.Engine) -> SqlResultsSink:
    return SqlResultsSink(engine, clock=lambda: FIXED_NOW)


@pytest.fixture()
def store(engine: sa.Engine) -> SqlCheckpointStore:
    return SqlCheckpointStore(engine, clock=lambda: FIXED_NOW)


@pytest.fixture()
def profiles(engine: sa.Engine) -> SqlProfileStore:
    return SqlProfileStore(engine, clock=lambda: FIXED_NOW)
