"""``driftline db grant-readonly``: a role that reads every analyst view and can change nothing, on the real PostgreSQL.

The test logs in as the role (over TCP, with the password the command set) and tries everything:
it reads each view (and finds the rows written through the sinks), and every INSERT, UPDATE and
DELETE on the views and the tables, every SELECT or DROP of a table, and CREATE TABLE / VIEW /
SCHEMA are refused — also with its read-only default turned off, so the grants alone are tested.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from test_postgres import recent_data
from worker_harness import empty_schema, unique

from driftline.sinks import SqlCheckpointStore
from driftline.sinks.database import ANALYST_VIEWS, create_database_engine, upgrade_database
from driftline.sinks.tables import metadata

PASSWORD = "s3cret-" + unique("")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftline.stream.cli", "db", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, check=False)


@pytest.fixture()
def migrated(database_url: str) -> Iterator[str]:
    with empty_schema(database_url) as url:
        upgrade_database(url)
        engine = create_database_engine(url)
        try:
            result, checkpoints = recent_data(datetime.now(UTC))
            SqlCheckpointStore(engine).commit(checkpoints[0], [result])
        finally:
            engine.dispose()
        yield url


@pytest.fixture()
def role(migrated: str) -> Iterator[str]:
    name = unique("analyst_")
    yield name
    owner = create_database_engine(migrated)
    try:
        with owner.begin() as connection:
            if connection.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": name}).first():
                connection.exec_driver_sql(f'DROP OWNED BY "{name}"')
                connection.exec_driver_sql(f'DROP ROLE "{name}"')
    finally:
        owner.dispose()


def _refused(engine: sa.Engine, statement: str) -> str:
    """The error PostgreSQL gives for ``statement`` (fails the test if it succeeded)."""
    with engine.connect() as connection:
        try:
            connection.exec_driver_sql(statement)
        except DBAPIError as exc:
            return str(exc.orig)
    pytest.fail(f"the read-only role could run: {statement}")


def test_the_readonly_role_reads_every_view_and_changes_nothing(migrated: str, role: str) -> None:
    done = _cli("grant-readonly", role, "--database-url", migrated, "--password-env", "ANALYST_PASSWORD",
                env={"ANALYST_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    assert f"{role} is a login role that reads feature_drift, model_volume, model_performance, alert_log" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    again = _cli("grant-readonly", role, "--database-url", migrated, "--password-env", "ANALYST_PASSWORD",
                 env={"ANALYST_PASSWORD": PASSWORD})
    assert again.returncode == 0, again.stderr  # idempotent

    url = sa.make_url(migrated).set(username=role, password=PASSWORD).render_as_string(hide_password=False)
    analyst = create_database_engine(url)
    # The same login with read-only turned off (any user may): then the grants alone must stop it.
    unguarded = create_database_engine(url)
    sa.event.listen(unguarded, "connect", lambda dbapi, _: _read_write(dbapi))
    try:
        with analyst.connect() as connection:
            assert connection.execute(sa.text("SELECT current_user")).scalar_one() == role
            assert connection.execute(sa.text("SHOW default_transaction_read_only")).scalar_one() == "on"
            found = {view: connection.execute(sa.text(f"SELECT count(*) FROM {view}")).scalar_one() for view in ANALYST_VIEWS}
        # recent_data: 3 features x 5 windows, 5 model windows, 5 performance windows, 3 alerts.
        assert found == {"feature_drift": 15, "model_volume": 5, "model_performance": 5, "alert_log": 3}
        assert "read-only transaction" in _refused(analyst, "CREATE TEMP TABLE mine (x int)")  # its default

        schema = sa.make_url(migrated).query["options"].split("search_path=")[1]  # type: ignore[union-attr]
        for view in ANALYST_VIEWS:
            for statement in (f"INSERT INTO {view} (model) VALUES ('x')", f"UPDATE {view} SET model = 'x'", f"DELETE FROM {view}"):
                message = _refused(unguarded, statement)
                # A view over one table (model_volume, alert_log) would pass writes on: the privilege stops them.
                assert "permission denied" in message or (view in ("feature_drift", "model_performance") and "view" in message), (
                    statement, message)
        for table in [*metadata.tables, "driftline_alembic_version"]:
            assert "permission denied" in _refused(unguarded, f"SELECT * FROM {table}"), table
            assert "permission denied" in _refused(unguarded, f"DELETE FROM {table}"), table
            assert "must be owner" in _refused(unguarded, f"DROP TABLE {table}"), table
        for statement in (f'CREATE TABLE "{schema}".mine (x int)', "CREATE TABLE public.mine (x int)",
                          f'CREATE VIEW "{schema}".mine AS SELECT 1 AS x', f'CREATE SCHEMA "{schema}_mine"'):
            assert "permission denied" in _refused(unguarded, statement), statement
    finally:
        analyst.dispose()
        unguarded.dispose()
    owner = create_database_engine(migrated)
    try:
        with owner.connect() as connection:  # nothing changed: every row still there
            assert connection.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one() == 3
    finally:
        owner.dispose()


def _read_write(dbapi_connection: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("SET default_transaction_read_only = off")
    cursor.close()
    dbapi_connection.commit()  # type: ignore[attr-defined]


def test_grant_readonly_says_what_is_wrong(migrated: str, database_url: str, role: str) -> None:
    bad = _cli("grant-readonly", "Robert'); DROP TABLE alerts;--", "--database-url", migrated)
    assert bad.returncode != 0 and "plain lower-case identifier" in bad.stderr, bad.stderr
    unset = _cli("grant-readonly", role, "--database-url", migrated, "--password-env", "NOT_SET_ANYWHERE")
    assert unset.returncode != 0 and "NOT_SET_ANYWHERE is not set" in unset.stderr, unset.stderr
    with empty_schema(database_url) as empty:
        missing = _cli("grant-readonly", role, "--database-url", empty)
    assert missing.returncode != 0 and "driftline db upgrade" in missing.stderr, missing.stderr
