"""Migrations and database URLs, on SQLite files (PostgreSQL: tests/integration/test_postgres.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from driftline.sinks import (
    SinkError,
    SqlProfileStore,
    UnsupportedDialectError,
    create_database_engine,
    current_revision,
    head_revision,
    metadata,
    upgrade_database,
    upgrade_engine,
)
from driftline.sinks.database import MIGRATIONS_DIRECTORY, VERSION_TABLE, _alembic_config


def describe(engine: sa.Engine) -> dict[str, Any]:
    """Every table's columns, primary key, indexes and checks, as the database reports them."""
    inspector = sa.inspect(engine)
    return {
        table: {
            "columns": [
                (c["name"], c["type"].compile(engine.dialect), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table),
            "indexes": sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in inspector.get_indexes(table)),
            "checks": sorted((ck["name"], ck["sqltext"]) for ck in inspector.get_check_constraints(table)),
        }
        for table in sorted(inspector.get_table_names())
        if table != VERSION_TABLE
    }


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'migrated.sqlite'}"


def test_the_migrations_ship_inside_the_package() -> None:
    assert (MIGRATIONS_DIRECTORY / "env.py").is_file()
    assert (MIGRATIONS_DIRECTORY / "script.py.mako").is_file()
    assert head_revision() == "0006"


def test_upgrade_creates_what_the_metadata_defines(url: str, tmp_path: Path) -> None:
    assert current_revision(url) is None
    upgrade_database(url)
    assert current_revision(url) == head_revision()
    migrated = sa.create_engine(url)
    reference = sa.create_engine(f"sqlite:///{tmp_path / 'create_all.sqlite'}")
    try:
        metadata.create_all(reference)
        assert set(describe(migrated)) == set(metadata.tables)
        assert describe(migrated) == describe(reference)
        with migrated.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": VERSION_TABLE})
            assert compare_metadata(context, metadata) == []
    finally:
        migrated.dispose()
        reference.dispose()


def test_upgrading_twice_changes_nothing_and_keeps_the_data(url: str) -> None:
    upgrade_database(url)
    engine = sa.create_engine(url)
    try:
        SqlProfileStore(engine).save("churn", "v1", "{}")
        before = describe(engine)
        upgrade_database(url)
        upgrade_database(url, "0006")
        assert describe(engine) == before
        assert SqlProfileStore(engine).load("churn", "v1") == "{}"
        with engine.connect() as connection:
            assert connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == ["0006"]
    finally:
        engine.dispose()


def test_upgrading_an_engine_runs_the_same_migrations(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        upgrade_engine(engine)
        upgrade_engine(engine)
        assert current_revision(url) == head_revision()
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_every_table(url: str) -> None:
    upgrade_database(url)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            command.downgrade(_alembic_config(connection), "base")
        assert sa.inspect(engine).get_table_names() == [VERSION_TABLE]
    finally:
        engine.dispose()
    assert current_revision(url) is None


def test_tables_created_without_migrations_are_not_migrated_over(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
    tables = r"\(alerts, challenger_windows, checkpoint_snapshots, checkpoints, .*\)"
    with pytest.raises(SinkError, match=rf"already has driftline tables {tables} but no migration revision"):
        upgrade_database(url)
    assert current_revision(url) is None


def test_unknown_revision_is_a_value_error(url: str) -> None:
    with pytest.raises(ValueError, match=r"revision: cannot upgrade sqlite:///.* to 'nonexistent'"):
        upgrade_database(url, "nonexistent")
    assert current_revision(url) is None


def test_a_bad_url_does_not_echo_its_password() -> None:
    with pytest.raises(ValueError, match="database_url: not an SQLAlchemy URL") as raised:
        upgrade_database("driftline:hunter2@db/driftline")
    assert "hunter2" not in str(raised.value) and raised.value.__cause__ is None


def test_an_unsupported_database_is_refused() -> None:
    with pytest.raises(UnsupportedDialectError, match="unsupported database 'mysql' in mysql://app:\\*\\*\\*@db/x"):
        create_database_engine("mysql://app:hunter2@db/x")


def test_postgresql_urls_use_psycopg_3() -> None:
    for url in ("postgresql://driftline@db/driftline", "postgres://driftline@db/driftline"):
        engine = create_database_engine(url)
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
        engine.dispose()


def test_an_unreachable_server_is_a_sink_error_naming_the_url_without_password() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    url = "postgresql+psycopg://driftline:hunter2@127.0.0.1:1/driftline?connect_timeout=2"
    for call in (lambda: upgrade_database(url), lambda: current_revision(url)):
        with pytest.raises(SinkError, match=r"postgresql\+psycopg://driftline:\*\*\*@127.0.0.1:1/driftline") as raised:
            call()
        assert "hunter2" not in str(raised.value)
        assert isinstance(raised.value.__cause__, sa.exc.OperationalError)


def test_the_analyst_views_exist_on_sqlite_too_and_roles_are_postgresql_only(url: str) -> None:
    from driftline.schemas.errors import DriftlineError
    from driftline.sinks import SqlResultsSink
    from driftline.sinks.database import ANALYST_VIEWS, grant_readonly
    from driftline.stream.monitor.results import BatchResult, ModelWindow

    upgrade_database(url)
    engine = sa.create_engine(url)
    try:
        assert set(sa.inspect(engine).get_view_names()) == set(ANALYST_VIEWS)
        window = ModelWindow(model="m", model_version="v1", window_start_ms=0, window_length_ms=60_000, events=10, accepted=8,
                             rejected=2, rejected_by_reason=(("wrong_type", 2),))
        sink = SqlResultsSink(engine)
        sink.add(BatchResult(model_windows=[window]))
        with engine.begin() as connection:
            sink.write(connection)
        with engine.connect() as connection:
            row = connection.execute(sa.text("SELECT events, rejected, rejection_rate FROM model_volume")).one()
        assert tuple(row) == (10, 2, 0.2)
    finally:
        engine.dispose()
    with pytest.raises(DriftlineError, match="roles are PostgreSQL's"):
        grant_readonly(url, "analysts")
    with pytest.raises(ValueError, match="plain lower-case identifier"):
        grant_readonly(url, "Analysts; DROP")


def view_columns(engine: sa.Engine) -> dict[str, list[str]]:
    inspector = sa.inspect(engine)
    return {view: [column["name"] for column in inspector.get_columns(view)] for view in sorted(inspector.get_view_names())}


def test_runs_keep_the_rows_written_before_them_as_the_live_run_and_downgrade_back(url: str) -> None:
    upgrade_database(url, "0005")
    engine = sa.create_engine(url)
    try:
        before_views = view_columns(engine)
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO model_windows (model, model_version, window_start, window_length_seconds, events, accepted, rejected, "
                "rejected_by_reason, updated_at) VALUES ('churn', 'v1', '2026-12-01 00:00:00', 60, 10, 9, 1, '{}', "
                "'2026-12-01 00:01:00')"))
        upgrade_database(url)
        with engine.begin() as connection:
            assert connection.execute(sa.text("SELECT run, accepted FROM model_volume")).all() == [("live", 9)]
            # A replay's row of the same window sits beside it.
            connection.execute(sa.text(
                "INSERT INTO model_windows (model, model_version, window_start, window_length_seconds, events, accepted, rejected, "
                "rejected_by_reason, updated_at, run) VALUES ('churn', 'v1', '2026-12-01 00:00:00', 60, 10, 10, 0, '{}', "
                "'2026-12-01 00:01:00', 'fix-1')"))
        assert {view: columns[:-1] for view, columns in view_columns(engine).items()} == before_views
        assert {columns[-1] for columns in view_columns(engine).values()} == {"run"}
        with engine.begin() as connection:
            command.downgrade(_alembic_config(connection), "0005")
        assert view_columns(engine) == before_views
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT accepted FROM model_volume")).scalars().all() == [9]
    finally:
        engine.dispose()
