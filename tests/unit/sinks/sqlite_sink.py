"""What the SQL sink tests share besides their fixtures (``conftest.py``): the sink's clock, reading tables back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from driftline.sinks.tables import metadata

FIXED_NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)  # the clock of the ``sink`` fixture


def rows(engine: sa.Engine, table_name: str) -> list[dict[str, Any]]:
    """Every row of a driftline table, in primary-key order."""
    table = metadata.tables[table_name]
    query = sa.select(table).order_by(*table.primary_key.columns)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]
