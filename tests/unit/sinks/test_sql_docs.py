"""README's database section documents every table, column and index of the metadata, and nothing else.

Its example queries are executed against PostgreSQL in tests/integration/test_postgres.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from driftline.sinks import metadata
from driftline.sinks.database import VERSION_TABLE

README = Path(__file__).resolve().parents[3] / "README.md"


def database_section() -> str:
    """README's "Database (analysts' tables)" section, up to the next top-level heading."""
    text = README.read_text(encoding="utf-8")
    return text.split("\n## Database (analysts' tables)\n", 1)[1].split("\n## ", 1)[0]


def sections() -> dict[str, str]:
    """The text under each ``#### `table``` heading, by table name."""
    parts = re.split(r"^#### `([a-z_]+)`\s*$", database_section(), flags=re.MULTILINE)
    return {name: body.split("\n### ")[0] for name, body in zip(parts[1::2], parts[2::2])}


def documented_columns(section: str) -> list[str]:
    return re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.MULTILINE)


def test_every_table_has_a_section() -> None:
    assert set(sections()) == set(metadata.tables) | {VERSION_TABLE}


@pytest.mark.parametrize("table_name", sorted(metadata.tables))
def test_every_column_is_documented_in_order_with_type_unit_and_meaning(table_name: str) -> None:
    section = sections()[table_name]
    table = metadata.tables[table_name]
    assert documented_columns(section) == [column.name for column in table.columns]
    for row in re.findall(r"^\| `[a-z0-9_]+` \|.*$", section, flags=re.MULTILINE):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) >= 4 and all(cells), row
    key = ", ".join(f"`{column.name}`" for column in table.primary_key.columns)
    assert f"**Key:** ({key})" in section or f"**Key:** {key}" in section


@pytest.mark.parametrize("table_name", sorted(metadata.tables))
def test_every_index_is_named_and_explained(table_name: str) -> None:
    section = sections()[table_name]
    for index in metadata.tables[table_name].indexes:
        assert f"`{index.name}`" in section
