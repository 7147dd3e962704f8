"""The SQL sink, its migrations and its checkpoints on a real PostgreSQL (``DRIFTLINE_DATABASE_URL``).

Every test works in its own freshly created schema (selected with libpq's ``search_path`` option in
the URL) and drops it afterwards, so tests neither see each other's rows nor leave any behind.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from worker_harness import url_in_schema

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract_catalog import Catalog
from driftline.sinks import (
    SinkError,
    SqlCheckpointStore,
    SqlProfileStore,
    SqlResultsSink,
    create_database_engine,
    current_revision,
    head_revision,
    metadata,
    upgrade_database,
)
from driftline.sinks.database import ANALYST_VIEWS, VERSION_TABLE
from driftline.sinks.tables import RESULT_TABLES
from driftline.stream.demo.generator import Episode, SyntheticStream
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import build_reference_profile
from driftline.stream.monitor.results import (
    Alert,
    BatchResult,
    ChallengerWindow,
    Checkpoint,
    FeatureWindow,
    ModelWindow,
    PerformanceWindow,
    SchemaChangeRecord,
    alert_identifier,
    to_canonical_json,
)

README = Path(__file__).resolve().parents[2] / "README.md"
FIXED_NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
START_MS = 1_700_000_040_000  # a whole minute
MINUTE_MS = 60_000
GROUP, TOPIC = "driftline", "predictions.credit_risk"


# ----------------------------------------------------------------------------------------- schemas


@pytest.fixture()
def new_schema(database_url: str) -> Iterator[Callable[[], str]]:
    """Creates uniquely named schemas on demand; returns URLs that work in them; drops them after."""
    admin = create_database_engine(database_url)
    created: list[str] = []

    def make() -> str:
        schema = f"driftline_test_{uuid.uuid4().hex[:12]}"
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        created.append(schema)
        return url_in_schema(database_url, schema)

    yield make
    with admin.begin() as connection:
        for schema in created:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture()
def schema_url(new_schema: Callable[[], str]) -> str:
    return new_schema()


@pytest.fixture()
def engine(schema_url: str) -> Iterator[sa.Engine]:
    upgrade_database(schema_url)
    engine = create_database_engine(schema_url)
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


def describe(engine: sa.Engine) -> dict[str, Any]:
    """Every driftline table's columns, primary key, indexes and checks, as PostgreSQL reports them."""
    inspector = sa.inspect(engine)
    return {
        table: {
            "columns": [
                (c["name"], c["type"].compile(engine.dialect), c["nullable"], c["default"])
                for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in inspector.get_indexes(table)
            ),
            "checks": sorted((ck["name"], ck["sqltext"]) for ck in inspector.get_check_constraints(table)),
            "foreign_keys": inspector.get_foreign_keys(table),
            "unique": inspector.get_unique_constraints(table),
        }
        for table in sorted(inspector.get_table_names())
        if table != VERSION_TABLE
    }


def rows(engine: sa.Engine, table_name: str) -> list[dict[str, Any]]:
    table = metadata.tables[table_name]
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(table).order_by(*table.primary_key.columns))]


def dump(engine: sa.Engine) -> dict[str, list[dict[str, Any]]]:
    return {name: rows(engine, name) for name in metadata.tables}


# -------------------------------------------------------------------------------------- migrations


def test_upgrade_creates_exactly_what_the_metadata_defines(new_schema: Callable[[], str]) -> None:
    migrated_url, reference_url = new_schema(), new_schema()
    assert current_revision(migrated_url) is None
    upgrade_database(migrated_url)
    assert current_revision(migrated_url) == head_revision() == "0006"

    migrated = create_database_engine(migrated_url)
    reference = create_database_engine(reference_url)
    try:
        metadata.create_all(reference)
        described = describe(migrated)
        assert set(sa.inspect(migrated).get_table_names()) == set(metadata.tables) | {VERSION_TABLE}
        assert set(sa.inspect(migrated).get_view_names()) == set(ANALYST_VIEWS)
        # What the metadata says, table by table ...
        for name, table in metadata.tables.items():
            assert [(c[0], c[1], c[2]) for c in described[name]["columns"]] == [
                (c.name, c.type.compile(migrated.dialect), c.nullable) for c in table.columns
            ], name
            primary_key = described[name]["primary_key"]
            assert (primary_key["name"], primary_key["constrained_columns"]) == (
                table.primary_key.name, [c.name for c in table.primary_key.columns],
            )
            assert [ix[:2] for ix in described[name]["indexes"]] == sorted(
                (ix.name, tuple(c.name for c in ix.columns)) for ix in table.indexes
            )
            assert [ck[0] for ck in described[name]["checks"]] == sorted(
                str(ck.name) for ck in table.constraints if isinstance(ck, sa.CheckConstraint)
            )
        assert described["window_aggregates"]["columns"][3][1] == "TIMESTAMP WITH TIME ZONE"
        assert described["window_aggregates"]["columns"][-3][1] == "JSONB"  # top_items, before updated_at and run
        assert described["checkpoints"]["columns"][4][1] == "BYTEA"
        # ... and, as a whole, what SQLAlchemy itself creates from the metadata.
        assert described == describe(reference)
        with migrated.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": VERSION_TABLE})
            assert compare_metadata(context, metadata) == []
    finally:
        migrated.dispose()
        reference.dispose()


def test_upgrading_again_changes_nothing_and_keeps_the_rows(schema_url: str, engine: sa.Engine) -> None:
    SqlProfileStore(engine).save("credit_risk", "v1", '{"features": {}}')
    before = describe(engine)
    upgrade_database(schema_url)
    upgrade_database(schema_url, head_revision())
    assert describe(engine) == before
    assert SqlProfileStore(engine).load("credit_risk", "v1") == '{"features": {}}'
    with engine.connect() as connection:
        assert connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [head_revision()]


# Each process says it is ready after its imports, then waits for the word to go: the upgrades really
# overlap however long the imports take (a fixed start time was missed on a loaded machine).
RACING_UPGRADE = """
import sys
from driftline.sinks import upgrade_database
print("ready", flush=True)
sys.stdin.readline()
upgrade_database(sys.argv[1])
"""


def test_workers_upgrading_at_once_wait_for_each_other(schema_url: str) -> None:
    # Separate processes, like worker pods starting together: only the database lock orders them.
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", RACING_UPGRADE, schema_url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(4)
    ]
    assert workers[0].stdin is not None
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    for worker in workers:  # every one is past its imports: go, all at once
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outcomes = [(worker.wait(timeout=60), *worker.communicate()) for worker in workers]
    assert [code for code, _, _ in outcomes] == [0, 0, 0, 0], [err[-600:] for _, _, err in outcomes]
    assert current_revision(schema_url) == head_revision()


def test_threads_upgrading_at_once_take_turns(schema_url: str) -> None:
    # Alembic's context is process-wide; the sink serialises migrations within one process.
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def upgrade() -> None:
        try:
            barrier.wait()
            upgrade_database(schema_url)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert current_revision(schema_url) == head_revision()


def test_tables_not_created_by_the_migrations_are_refused(schema_url: str) -> None:
    engine = create_database_engine(schema_url)
    try:
        metadata.create_all(engine)
        with pytest.raises(SinkError, match=r"already has driftline tables .* but no migration revision"):
            upgrade_database(schema_url)
        assert VERSION_TABLE not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_a_failed_connection_names_the_url_without_its_password(database_url: str) -> None:
    url = sa.make_url(database_url).set(password="hunter2", database="driftline_no_such_database")
    with pytest.raises(SinkError, match=r"could not upgrade the driftline tables of postgresql\+psycopg://[^ ]*\*\*\*@") as raised:
        upgrade_database(url.render_as_string(hide_password=False))
    assert "hunter2" not in str(raised.value)
    assert isinstance(raised.value.__cause__, sa.exc.OperationalError)


# --------------------------------------------------------------------------------- results, upserts


def feature_window(feature: str = "annual_income", window: int = 0, **changes: Any) -> FeatureWindow:
    values: dict[str, Any] = dict(
        model="credit_risk", model_version="v1", feature=feature, kind="numeric",
        window_start_ms=START_MS + window * MINUTE_MS, window_length_ms=MINUTE_MS, count=600, nulls=3,
        non_finite=1, out_of_range=2, unseen=0, minimum=9_000.0, maximum=310_000.0, mean=58_000.25,
        variance=4.5e8, psi=0.05, jensen_shannon=0.04, ks=0.03, wasserstein=1_250.5, psi_threshold=0.1,
        quantiles={"p01": 15_000.0, "p50": 54_000.0, "p99": 190_000.0},
    )
    values.update(changes)
    return FeatureWindow(**values)


def model_window(window: int = 0, **changes: Any) -> ModelWindow:
    values: dict[str, Any] = dict(
        model="credit_risk", model_version="v1", window_start_ms=START_MS + window * MINUTE_MS,
        window_length_ms=MINUTE_MS, events=606, accepted=600, rejected=6,
        rejected_by_reason=(("out_of_range", 4), ("wrong_type", 2)),
    )
    values.update(changes)
    return ModelWindow(**values)


def alert(event_time_ms: int = START_MS + 30_000, **changes: Any) -> Alert:
    values: dict[str, Any] = dict(
        model="credit_risk", model_version="v1", kind="mean_shift", feature="annual_income",
        detector="page_hinkley", severity="warning", window_start_ms=None, event_time_ms=event_time_ms,
        score=52.5, threshold=40.0, message="Page-Hinkley detected a mean shift in annual_income",
    )
    values.update(changes)
    key = (values["model"], values["model_version"], values["kind"], values["feature"], values["detector"],
           values["window_start_ms"], values["event_time_ms"])
    return Alert(alert_id=alert_identifier(*key), **values)


def schema_change(**changes: Any) -> SchemaChangeRecord:
    values: dict[str, Any] = dict(
        model="credit_risk", writer_id="0x1234abcd5678ef90", compatible=False,
        missing_fields=("debt_to_income",), new_fields=("dti_ratio",), type_changes=(),
        description="debt_to_income missing; dti_ratio new", first_seen_event_time_ms=START_MS,
    )
    values.update(changes)
    return SchemaChangeRecord(**values)


def checkpoint(next_offset: int, *, dead_lettered: int = 0, state: dict[str, Any] | None = None, **key: Any) -> Checkpoint:
    return Checkpoint(
        consumer_group=key.get("consumer_group", GROUP), topic=key.get("topic", TOPIC),
        partition=key.get("partition", 0), next_offset=next_offset,
        engine_state=state if state is not None else {"format": 1, "offset": next_offset},
        consumed=next_offset, accepted=next_offset - dead_lettered, dead_lettered=dead_lettered,
    )


def full_result() -> BatchResult:
    return BatchResult(
        feature_windows=[
            feature_window(), feature_window(window=1, psi=0.31),
            feature_window("channel", kind="categorical", minimum=None, maximum=None, mean=None, variance=None,
                           ks=None, wasserstein=None, quantiles={}, top_items=(("web", 400), ("branch", 200))),
        ],
        model_windows=[model_window(), model_window(1, events=590, accepted=590, rejected=0, rejected_by_reason=())],
        alerts=[alert(), alert(kind="no_data", feature=None, detector="window_gap", severity="critical",
                               window_start_ms=START_MS, event_time_ms=START_MS + MINUTE_MS)],
        schema_changes=[schema_change()],
        performance_windows=[PerformanceWindow(
            model="credit_risk", task="classification", window_start_ms=START_MS, window_length_ms=MINUTE_MS, count=120,
            invalid_labels=0, accuracy=0.8, precision=0.5, recall=0.25, f1=1 / 3, log_loss=0.45, true_positives=6,
            false_positives=6, true_negatives=90, false_negatives=18, mae=None, rmse=None,
        )],
        challenger_windows=[ChallengerWindow(
            model="credit_risk", window_start_ms=START_MS, window_length_ms=MINUTE_MS, count=118, champion_accuracy=0.8,
            challenger_accuracy=0.9, champion_only=3, challenger_only=15, p_value=0.0038, alpha=1e-6, challenger_better=False,
        )],
    )


def test_results_round_trip_with_postgres_types(sink: SqlResultsSink, engine: sa.Engine) -> None:
    sink.add(full_result())
    sink.flush()
    aggregates = rows(engine, "window_aggregates")
    assert [(row["feature"], row["window_start"]) for row in aggregates] == [
        ("annual_income", datetime(2023, 11, 14, 22, 14, tzinfo=UTC)),
        ("annual_income", datetime(2023, 11, 14, 22, 15, tzinfo=UTC)),
        ("channel", datetime(2023, 11, 14, 22, 14, tzinfo=UTC)),
    ]
    assert (aggregates[0]["mean"], aggregates[0]["p50"], aggregates[0]["p05"]) == (58_000.25, 54_000.0, None)
    assert aggregates[2]["top_items"] == [{"item": "web", "count": 400}, {"item": "branch", "count": 200}]
    assert rows(engine, "model_windows")[0]["rejected_by_reason"] == {"out_of_range": 4, "wrong_type": 2}
    assert {row["severity"] for row in rows(engine, "alerts")} == {"warning", "critical"}
    assert rows(engine, "schema_changes")[0]["missing_fields"] == ["debt_to_income"]
    (performance,) = rows(engine, "performance_windows")
    assert (performance["labelled"], performance["accuracy"], performance["f1"], performance["mae"]) == (120, 0.8, 1 / 3, None)
    assert performance["window_start"] == datetime(2023, 11, 14, 22, 14, tzinfo=UTC)
    with engine.connect() as connection:
        # jsonb, queryable in SQL: the point of storing JSON as JSON.
        assert connection.execute(sa.text(
            "SELECT rejected_by_reason ->> 'out_of_range' FROM model_windows WHERE rejected > 0"
        )).scalar_one() == "4"


def test_writing_the_same_results_twice_leaves_the_tables_identical(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    store.commit(checkpoint(1_200), [full_result()])
    first = dump(engine)
    store.commit(checkpoint(1_200), [full_result()])
    assert dump(engine) == first
    assert {name: len(table_rows) for name, table_rows in first.items()} == {
        "window_aggregates": 3, "model_windows": 2, "alerts": 2, "schema_changes": 1,
        "reference_profiles": 0, "checkpoints": 1, "performance_windows": 1, "challenger_windows": 1, "checkpoint_snapshots": 0,
    }


def test_a_rewrite_of_the_same_values_an_hour_later_touches_no_row(engine: sa.Engine) -> None:
    # JSONB, doubles, timestamps and NULLs compared by the upsert's IS DISTINCT FROM on PostgreSQL itself.
    clock = iter([datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 1, 1, tzinfo=UTC), datetime(2026, 12, 1, 2, tzinfo=UTC)])
    store = SqlCheckpointStore(engine, clock=lambda: next(clock))
    store.commit(checkpoint(1_200), [full_result()], snapshot=True)
    first = dump(engine)
    store.commit(checkpoint(1_200), [full_result()])
    assert dump(engine) == first
    assert [s.next_offset for s in store.snapshots(GROUP, TOPIC, 0)] == [1_200]
    assert store.load_snapshot(GROUP, TOPIC, 0, 1_200) == checkpoint(1_200)
    live_only = {name: rows for name, rows in first.items() if name in RESULT_TABLES}
    assert all(row["run"] == "live" for rows in live_only.values() for row in rows)
    replay = SqlCheckpointStore(engine, clock=lambda: next(clock), run="fix-1")
    replay.commit(checkpoint(1_200, consumer_group="replay:fix-1"), [full_result()])
    after = dump(engine)
    for name in RESULT_TABLES:
        assert [row for row in after[name] if row["run"] == "live"] == first[name], name
        assert len([row for row in after[name] if row["run"] == "fix-1"]) == len(first[name]), name


def test_upserts_replace_values_on_the_natural_key(sink: SqlResultsSink, engine: sa.Engine) -> None:
    sink.add(BatchResult(feature_windows=[feature_window(psi=0.1, count=100)]))
    sink.flush()
    sink.add(BatchResult(feature_windows=[feature_window(psi=0.4, count=140)]))
    sink.add(BatchResult(feature_windows=[feature_window(model_version="v2", psi=0.05)]))
    sink.flush()
    assert [(r["model_version"], r["psi"], r["count"]) for r in rows(engine, "window_aggregates")] == [
        ("v1", 0.4, 140), ("v2", 0.05, 600),
    ]
    # A window of another length is another row too (the length is part of the key).
    sink.add(BatchResult(feature_windows=[feature_window(window_length_ms=300_000, psi=0.2)]))
    sink.flush()
    assert len(rows(engine, "window_aggregates")) == 3


def test_reference_profiles_are_stored_byte_for_byte(profiles: SqlProfileStore, engine: sa.Engine) -> None:
    profile = '{\n  "features": {"région": {"bins": [0, 30000.5, 1e308]}},  "note": "é"\n}'
    profiles.save("credit_risk", "v1", profile)
    profiles.save("credit_risk", "v2", "{}")
    assert profiles.load("credit_risk", "v1") == profile
    profiles.save("credit_risk", "v1", '{"features": {}}')
    assert profiles.load("credit_risk", "v1") == '{"features": {}}'
    assert profiles.load("credit_risk", "v3") is None
    assert len(rows(engine, "reference_profiles")) == 2


# ------------------------------------------------------------------------------------- checkpoints


def test_a_successful_flush_commits_rows_and_checkpoint(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    assert store.load_checkpoint(GROUP, TOPIC, 0) is None
    store.commit(checkpoint(1_206, dead_lettered=6), [full_result()])
    assert len(rows(engine, "window_aggregates")) == 3
    loaded = store.load_checkpoint(GROUP, TOPIC, 0)
    assert loaded == checkpoint(1_206, dead_lettered=6)
    (row,) = rows(engine, "checkpoints")
    assert row["updated_at"] == FIXED_NOW


def test_a_flush_with_only_a_checkpoint_writes_it(store: SqlCheckpointStore) -> None:
    store.commit(checkpoint(40, dead_lettered=40))
    loaded = store.load_checkpoint(GROUP, TOPIC, 0)
    assert loaded is not None and (loaded.next_offset, loaded.dead_lettered) == (40, 40)


def test_upserting_a_checkpoint_twice_keeps_one_row(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    store.commit(checkpoint(100))
    store.commit(checkpoint(250, dead_lettered=5))
    store.commit(checkpoint(250, dead_lettered=5))
    (row,) = rows(engine, "checkpoints")
    assert (row["next_offset"], row["consumed"], row["accepted"], row["dead_lettered"]) == (250, 250, 245, 5)
    assert store.load_checkpoint(GROUP, TOPIC, 0) == checkpoint(250, dead_lettered=5)
    # Other partitions, topics and groups are other rows.
    for other in (checkpoint(7, partition=1), checkpoint(8, topic="predictions.churn"), checkpoint(9, consumer_group="replay")):
        store.commit(other)
    assert len(rows(engine, "checkpoints")) == 4


def test_a_row_the_database_refuses_commits_neither_rows_nor_checkpoint(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    store.commit(checkpoint(1_200), [full_result()])
    before = dump(engine)
    # A valid window (written first) and a model window whose count overflows BIGINT (refused by
    # the server), then the checkpoint: one transaction, so nothing of it may remain.
    refused = BatchResult(
        feature_windows=[feature_window(window=5)],
        model_windows=[model_window(5, events=2**63, accepted=2**63)],
    )
    with pytest.raises(SinkError, match=r"could not write driftline results to postgresql\+psycopg://") as raised:
        store.commit(checkpoint(2_400), [refused])
    assert isinstance(raised.value.__cause__, sa.exc.DBAPIError)
    assert "out of range" in str(raised.value.__cause__)
    assert dump(engine) == before
    loaded = store.load_checkpoint(GROUP, TOPIC, 0)
    assert loaded is not None and loaded.next_offset == 1_200


def test_a_connection_killed_during_the_flush_commits_neither(database_url: str, store: SqlCheckpointStore, engine: sa.Engine) -> None:
    store.commit(checkpoint(1_200), [full_result()])
    before = dump(engine)
    admin = create_database_engine(database_url)
    killed: list[int] = []

    def kill_before_the_checkpoint(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The rows are written; the server process dies before the checkpoint statement runs.
        if statement.startswith("INSERT INTO checkpoints") and not killed:
            pid = cursor.connection.info.backend_pid
            with admin.connect() as other:
                assert other.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar_one()
            killed.append(pid)

    results = [BatchResult(feature_windows=[feature_window(window=7)], alerts=[alert(START_MS + 7 * MINUTE_MS)])]
    sa.event.listen(engine, "before_cursor_execute", kill_before_the_checkpoint)
    try:
        with pytest.raises(SinkError) as raised:
            store.commit(checkpoint(2_400), results)
    finally:
        sa.event.remove(engine, "before_cursor_execute", kill_before_the_checkpoint)
        admin.dispose()
    assert killed
    assert isinstance(raised.value.__cause__, sa.exc.OperationalError)
    assert dump(engine) == before
    assert store.load_checkpoint(GROUP, TOPIC, 0) == checkpoint(1_200)
    # The same sink recovers on a new connection: the retried flush commits both.
    store.commit(checkpoint(2_400), [BatchResult(feature_windows=[feature_window(window=7)])])
    assert len(rows(engine, "window_aggregates")) == len(before["window_aggregates"]) + 1
    assert store.load_checkpoint(GROUP, TOPIC, 0) == checkpoint(2_400)


def test_real_engine_state_round_trips_and_the_restored_engine_continues_exactly(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    catalog = Catalog.load()
    contract = catalog.contract("credit_risk")
    config = EngineConfig(window_length_ms=60_000, allowed_lateness_ms=60_000)
    profile = build_reference_profile(contract, SyntheticStream(contract, seed=3).columns(10_000, seed_offset=1), model_version="v1")
    stream = SyntheticStream(contract, seed=5)
    n = 12_000
    columns = stream.columns(n)
    stream.apply_episodes(columns, [Episode("mean_shift", 6_000, n, "annual_income", size=1.0)])
    payloads = [encode_single_object(r, contract.schema_json) for r in stream.records(columns, stream.event_times(n))]
    codec = Codec(catalog)
    cut = 7_000

    uninterrupted = MonitorEngine(contract, profile, config)
    expected = uninterrupted.process(codec.decode_batch(payloads[:cut], model="credit_risk"))
    expected.extend(uninterrupted.process(codec.decode_batch(payloads[cut:], model="credit_risk")))
    expected.extend(uninterrupted.flush())

    first = MonitorEngine(contract, profile, config)
    before_cut = first.process(codec.decode_batch(payloads[:cut], model="credit_risk"))
    state = first.to_state()
    assert state["open_windows"], "the state must carry open windows for the test to mean anything"
    store.commit(checkpoint(cut, state=state), [before_cut])
    store.commit(checkpoint(cut, state=state), [before_cut])  # at-least-once: the same results and checkpoint again

    loaded = store.load_checkpoint(GROUP, TOPIC, 0)
    assert loaded is not None and loaded.engine_state == state and loaded.next_offset == cut
    assert len(rows(engine, "checkpoints")) == 1
    with engine.connect() as connection:
        stored_bytes = connection.execute(sa.text("SELECT octet_length(engine_state) FROM checkpoints")).scalar_one()
    assert 0 < stored_bytes < len(repr(state))  # compressed

    restored = MonitorEngine.from_state(loaded.engine_state, contract, profile, config)
    resumed = BatchResult()
    resumed.extend(before_cut)
    resumed.extend(restored.process(codec.decode_batch(payloads[loaded.next_offset:], model="credit_risk")))
    resumed.extend(restored.flush())
    for part in ("feature_windows", "model_windows", "alerts"):
        assert to_canonical_json(getattr(resumed, part)) == to_canonical_json(getattr(expected, part)), part
    assert any(a.kind == "mean_shift" and a.feature == "annual_income" for a in expected.alerts)


# --------------------------------------------------------------------------- the documented queries


def documented_queries() -> list[tuple[str, str]]:
    """(heading, SQL) of every ```sql block under "Example queries" in README.md."""
    text = README.read_text(encoding="utf-8").split("### Example queries", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^#### (.+?)\n.*?```sql\n(.*?)```", text, flags=re.MULTILINE | re.DOTALL)


def recent_data(now: datetime) -> tuple[BatchResult, list[Checkpoint]]:
    """A few windows of the last hour, with drift, rejections, a new category and alerts."""
    start_ms = (int(now.timestamp() * 1000) // MINUTE_MS - 10) * MINUTE_MS
    windows = range(5)
    return BatchResult(
        feature_windows=[
            *(feature_window("annual_income", w, window_start_ms=start_ms + w * MINUTE_MS, psi=0.02 + 0.1 * w) for w in windows),
            *(feature_window("loan_amount", w, window_start_ms=start_ms + w * MINUTE_MS, psi=0.03) for w in windows),
            *(feature_window("channel", w, window_start_ms=start_ms + w * MINUTE_MS, kind="categorical", minimum=None,
                             maximum=None, mean=None, variance=None, ks=None, wasserstein=None, quantiles={}, psi=0.5,
                             top_items=(("web", 300), ("partner_api", 200 + w), ("branch", 100 - w))) for w in windows),
        ],
        model_windows=[model_window(w, window_start_ms=start_ms + w * MINUTE_MS) for w in windows],
        performance_windows=[PerformanceWindow(
            model="credit_risk", task="classification", window_start_ms=start_ms + w * MINUTE_MS, window_length_ms=MINUTE_MS,
            count=500 if w < 4 else 0, invalid_labels=0, accuracy=0.8 - 0.1 * w if w < 4 else None, precision=None, recall=None,
            f1=None, log_loss=None, true_positives=0, false_positives=0, true_negatives=0, false_negatives=0, mae=None, rmse=None,
            predictions=600,
            estimated_accuracy=0.79 - 0.1 * w, estimated_accuracy_se=0.01,
        ) for w in windows],
        challenger_windows=[ChallengerWindow(
            model="credit_risk", window_start_ms=start_ms + w * MINUTE_MS, window_length_ms=MINUTE_MS, count=500,
            champion_accuracy=0.8 - 0.1 * w, challenger_accuracy=0.8, champion_only=10, challenger_only=10 + 40 * w,
            p_value=0.5 if w < 2 else 1e-9, alpha=1e-6, challenger_better=w >= 2,
        ) for w in range(4)],
        alerts=[
            alert(start_ms + 2 * MINUTE_MS),
            alert(start_ms + 3 * MINUTE_MS, kind="distribution_drift", detector="psi", window_start_ms=start_ms + 2 * MINUTE_MS),
            alert(start_ms + 4 * MINUTE_MS, kind="no_data", feature=None, detector="window_gap", severity="critical"),
        ],
    ), [checkpoint(3_030, dead_lettered=30), checkpoint(2_000, partition=1)]


def test_the_documentation_has_the_example_queries() -> None:
    titles = [title for title, _ in documented_queries()]
    assert 4 <= len(titles) <= 10
    assert sum("(view " in title for title in titles) >= 2  # the analyst views have examples too
    assert any("checkpoint lag" in title for title in titles)


@pytest.mark.parametrize(("title", "query"), documented_queries(), ids=[t for t, _ in documented_queries()])
def test_every_documented_query_runs_and_finds_the_rows(title: str, query: str, engine: sa.Engine) -> None:
    store = SqlCheckpointStore(engine)
    result, checkpoints = recent_data(datetime.now(UTC))
    store.commit(checkpoints[0], [result])
    for other in checkpoints[1:]:
        store.commit(other)
    # A replay's run beside the live one (every other query shows the live run alone): annual_income's
    # reference was fixed, so its PSI differs; the other features' do not.
    fixed = dataclasses.replace(result, feature_windows=[
        dataclasses.replace(w, psi=w.psi / 2) if w.feature == "annual_income" else w for w in result.feature_windows])
    SqlCheckpointStore(engine, run="fix-1").commit(checkpoint(3_030, dead_lettered=30, consumer_group="replay:fix-1"), [fixed])
    with engine.connect() as connection:
        found = [dict(row._mapping) for row in connection.execute(sa.text(query))]
    assert found, f"{title}: no rows"
    first = found[0]
    if title.startswith("Drift history"):
        assert [row["psi"] for row in found] == pytest.approx([0.02, 0.12, 0.22, 0.32, 0.42])
        assert [row["drifted"] for row in found] == [False, True, True, True, True]
    elif title.startswith("Top drifting"):
        assert [(row["feature"], row["drifted_windows"], row["windows"]) for row in found] == [
            ("channel", 5, 5), ("annual_income", 4, 5), ("loan_amount", 0, 5),
        ]
    elif title.startswith("Alerts of a model"):
        assert [(row["severity"], row["kind"], row["alerts"]) for row in found] == [
            ("critical", "no_data", 1), ("warning", "distribution_drift", 1), ("warning", "mean_shift", 1),
        ]
    elif title.startswith("Rejection rate"):
        assert len(found) == 10
        assert (first["reason"], first["rejected"], first["events"]) == ("out_of_range", 4, 606)
        assert float(first["rejection_rate"]) == round(4 / 606, 4)
    elif title.startswith("Share of each category"):
        assert [(row["category"], row["events"]) for row in found[:3]] == [("web", 300), ("partner_api", 200), ("branch", 100)]
    elif title.startswith("Current checkpoint lag"):
        assert sorted((row["partition"], row["next_offset"], float(row["dead_letter_rate"])) for row in found) == [
            (0, 3_030, round(30 / 3_030, 4)), (1, 2_000, 0.0),
        ]
        assert all(timedelta(0) <= row["since_last_checkpoint"] < timedelta(minutes=5) for row in found)
    elif title.startswith("Null rate and drift of every feature"):
        # The worst window of each feature: nulls 3 of 606 events; channel's PSI 0.5, annual_income's 0.42.
        assert [(row["feature"], row["worst_psi"], row["drifted"]) for row in found] == [
            ("channel", 0.5, True), ("annual_income", pytest.approx(0.42), True), ("loan_amount", 0.03, False),
        ]
        assert all(row["worst_null_rate"] == pytest.approx(3 / 606) for row in found)
    elif title.startswith("Realised against estimated accuracy"):
        assert [(row["labelled"], float(row["accuracy"]), float(row["estimated_accuracy"]), float(row["estimate_error"]),
                 row["challenger_better"]) for row in found] == [
            (500, 0.8, 0.79, -0.01, False), (500, 0.7, 0.69, -0.01, False), (500, 0.6, 0.59, -0.01, True),
            (500, 0.5, 0.49, -0.01, True),
        ]
    elif title.startswith("Compare a replay's run"):
        assert [(row["feature"], row["psi_live"], row["psi_fix"]) for row in found] == [
            ("annual_income", pytest.approx(0.02 + 0.1 * w), pytest.approx((0.02 + 0.1 * w) / 2)) for w in range(5)]
    else:
        pytest.fail(f"no expectations for the documented query {title!r}: add them here")
