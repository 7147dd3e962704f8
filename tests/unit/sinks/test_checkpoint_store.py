"""The SQL checkpoint store on SQLite: validation, storage format, one transaction with the rows.

The same guarantees on PostgreSQL, with real failures (constraint violations, a killed
connection), are tested in ``tests/integration/test_postgres.py``.
"""

from __future__ import annotations

import json
import zlib
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlite_sink import FIXED_NOW, rows

from driftline.sinks import SinkError, SqlCheckpointStore
from driftline.stream.monitor.results import BatchResult, Checkpoint, FeatureWindow

START_MS = 1_700_000_040_000

# Shaped like MonitorEngine.to_state(): nesting, exact floats, big ints, non-ASCII names.
ENGINE_STATE: dict[str, Any] = {
    "format": 1,
    "model": "credit_risk",
    "clock": {"watermark_ms": 1_767_225_600_000, "max_event_ms": None},
    "tracks": {"v1": {"accepted_seen": 2**40 + 1, "page_hinkley": {"annual_income": {"mean": 0.1 + 0.2, "sum": -1e-308}}}},
    "open_windows": [{"version": "v1", "start_ms": 1_767_225_600_000, "features": {"région": {"sketch": "AAEC"}}}],
    "schema_changes_seen": [],
}


def checkpoint(**changes: Any) -> Checkpoint:
    values: dict[str, Any] = dict(
        consumer_group="driftline",
        topic="predictions.credit_risk",
        partition=3,
        next_offset=1_000,
        engine_state=ENGINE_STATE,
        consumed=1_000,
        accepted=990,
        dead_lettered=10,
    )
    values.update(changes)
    return Checkpoint(**values)


def feature_window(**changes: Any) -> FeatureWindow:
    values: dict[str, Any] = dict(
        model="credit_risk", model_version="v1", feature="annual_income", kind="numeric",
        window_start_ms=START_MS, window_length_ms=60_000, count=100, nulls=0, non_finite=0,
        out_of_range=0, unseen=0, minimum=1.0, maximum=2.0, mean=1.5, variance=0.25, psi=0.1,
        jensen_shannon=0.01, ks=0.05, wasserstein=0.2, psi_threshold=0.2,
    )
    values.update(changes)
    return FeatureWindow(**values)


def test_checkpoint_round_trips_through_the_database(store: SqlCheckpointStore) -> None:
    assert store.load_checkpoint("driftline", "predictions.credit_risk", 3) is None
    store.commit(checkpoint())
    loaded = store.load_checkpoint("driftline", "predictions.credit_risk", 3)
    assert loaded == checkpoint()
    assert loaded is not None and loaded.engine_state == ENGINE_STATE
    assert loaded.engine_state["tracks"]["v1"]["page_hinkley"]["annual_income"]["mean"] == 0.1 + 0.2
    # The key has three parts: another partition, topic or group has no checkpoint.
    assert store.load_checkpoint("driftline", "predictions.credit_risk", 4) is None
    assert store.load_checkpoint("driftline", "predictions.churn", 3) is None
    assert store.load_checkpoint("replay", "predictions.credit_risk", 3) is None


def test_engine_state_is_stored_as_zlib_of_its_utf8_json(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    store.commit(checkpoint())
    (row,) = rows(engine, "checkpoints")
    assert json.loads(zlib.decompress(row["engine_state"]).decode("utf-8")) == ENGINE_STATE
    assert (row["next_offset"], row["consumed"], row["accepted"], row["dead_lettered"]) == (1_000, 1_000, 990, 10)
    assert row["partition"] == 3


def test_a_commit_without_results_still_writes_its_checkpoint(store: SqlCheckpointStore) -> None:
    store.commit(checkpoint(next_offset=5, consumed=5, accepted=0, dead_lettered=5))
    loaded = store.load_checkpoint("driftline", "predictions.credit_risk", 3)
    assert loaded is not None and (loaded.next_offset, loaded.dead_lettered) == (5, 5)


def test_rows_and_checkpoint_are_written_together(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    store.commit(checkpoint(), [BatchResult(feature_windows=[feature_window()])])
    assert len(rows(engine, "window_aggregates")) == 1
    assert len(rows(engine, "checkpoints")) == 1


def test_upserting_a_checkpoint_keeps_one_row_with_the_latest_values(engine: sa.Engine) -> None:
    clock = iter([FIXED_NOW, FIXED_NOW + timedelta(seconds=5)])
    store = SqlCheckpointStore(engine, clock=lambda: next(clock))
    store.commit(checkpoint())
    later_state = {**ENGINE_STATE, "open_windows": []}
    store.commit(checkpoint(next_offset=2_000, engine_state=later_state, consumed=2_000, accepted=1_985, dead_lettered=15))
    (row,) = rows(engine, "checkpoints")
    assert row["next_offset"] == 2_000
    loaded = store.load_checkpoint("driftline", "predictions.credit_risk", 3)
    assert loaded is not None and loaded.engine_state == later_state and loaded.accepted == 1_985
    assert row["updated_at"] == FIXED_NOW + timedelta(seconds=5)


def test_each_partition_keeps_its_own_checkpoint(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    store.commit(checkpoint(next_offset=10, consumed=10, accepted=10, dead_lettered=0))
    store.commit(checkpoint(partition=0, next_offset=7, consumed=7, accepted=7, dead_lettered=0))
    store.commit(checkpoint())
    assert sorted((row["partition"], row["next_offset"]) for row in rows(engine, "checkpoints")) == [(0, 7), (3, 1_000)]


def test_a_failed_commit_writes_neither_rows_nor_checkpoint(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    store.commit(checkpoint())
    # SQLite enforces NOT NULL: a window without a kind fails the first statement of the transaction.
    broken = BatchResult(feature_windows=[feature_window(window_start_ms=START_MS + 60_000, kind=None)])
    with pytest.raises(SinkError, match="could not write driftline results to sqlite:///"):
        store.commit(checkpoint(next_offset=2_000, consumed=2_000, accepted=1_990), [broken])
    assert rows(engine, "window_aggregates") == []
    loaded = store.load_checkpoint("driftline", "predictions.credit_risk", 3)
    assert loaded is not None and loaded.next_offset == 1_000


def test_a_checkpoint_that_cannot_be_serialised_writes_nothing(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="engine_state is not JSON-serialisable"):
        store.commit(checkpoint(engine_state={"sketch": object()}), [BatchResult(feature_windows=[feature_window()])])
    assert rows(engine, "window_aggregates") == [] and rows(engine, "checkpoints") == []


def test_a_corrupt_engine_state_is_reported_not_returned(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    store.commit(checkpoint())
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE checkpoints SET engine_state = :state"), {"state": b"not zlib"})
    with pytest.raises(SinkError, match=r"checkpoint of driftline predictions.credit_risk\[3\] is corrupt"):
        store.load_checkpoint("driftline", "predictions.credit_risk", 3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"consumer_group": ""}, "consumer_group must be a non-empty string"),
        ({"topic": ""}, "topic must be a non-empty string"),
        ({"partition": -1}, r"partition must be in \[0, 2\*\*31 - 1\]"),
        ({"partition": 2**31}, r"partition must be in \[0, 2\*\*31 - 1\]"),
        ({"next_offset": -1}, "next_offset must be in"),
        ({"next_offset": 2**63}, "next_offset must be in"),
        ({"consumed": 1_001}, r"consumed must equal accepted \+ dead_lettered, got 1001 != 990 \+ 10"),
        ({"accepted": -10, "dead_lettered": 1_010}, "accepted must be in"),
        ({"engine_state": [1, 2]}, "engine_state must be a dict"),
    ],
)
def test_checkpoint_fields_are_validated(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checkpoint(**changes)


def test_the_database_enforces_the_checkpoint_invariants_too(store: SqlCheckpointStore, engine: sa.Engine) -> None:
    # Another writer (a manual fix, a future tool) cannot store counts that do not reconcile.
    store.commit(checkpoint())
    for update in ("consumed = consumed + 1", "next_offset = -1"):
        with pytest.raises(sa.exc.IntegrityError, match="CHECK constraint failed"), engine.begin() as connection:
            connection.execute(sa.text(f"UPDATE checkpoints SET {update}"))


def test_ping_passes_on_a_database_that_answers_and_raises_on_one_that_does_not(store: SqlCheckpointStore, tmp_path: Any) -> None:
    store.ping()
    gone = SqlCheckpointStore(sa.create_engine(f"sqlite:///{tmp_path}/no/such/folder/db.sqlite"))
    with pytest.raises(SinkError, match="does not answer"):
        gone.ping()


def test_a_snapshot_is_kept_with_its_checkpoint_and_old_ones_go_after_the_retention(engine: sa.Engine) -> None:
    now = [FIXED_NOW]
    store = SqlCheckpointStore(engine, clock=lambda: now[0], snapshot_retention=timedelta(hours=2))
    store.commit(checkpoint(next_offset=100, consumed=100, accepted=100, dead_lettered=0), snapshot=True)
    now[0] += timedelta(hours=1)
    store.commit(checkpoint(next_offset=200, consumed=200, accepted=200, dead_lettered=0))  # not a snapshot
    store.commit(checkpoint(next_offset=300, consumed=300, accepted=300, dead_lettered=0), snapshot=True)
    assert [(s.next_offset, s.created_at) for s in store.snapshots("driftline", "predictions.credit_risk", 3)] == [
        (100, FIXED_NOW), (300, FIXED_NOW + timedelta(hours=1))]
    kept = store.load_snapshot("driftline", "predictions.credit_risk", 3, 300)
    assert kept == checkpoint(next_offset=300, consumed=300, accepted=300, dead_lettered=0)
    assert store.load_snapshot("driftline", "predictions.credit_risk", 3, 200) is None
    assert store.snapshots("driftline", "predictions.credit_risk", 2) == []
    # Past the retention of the first one: the next snapshot deletes it (and only the partition's own).
    store.commit(checkpoint(partition=2, next_offset=5, consumed=5, accepted=5, dead_lettered=0), snapshot=True)
    now[0] += timedelta(hours=1, seconds=1)
    store.commit(checkpoint(next_offset=400, consumed=400, accepted=400, dead_lettered=0), snapshot=True)
    assert [s.next_offset for s in store.snapshots("driftline", "predictions.credit_risk", 3)] == [300, 400]
    assert [s.next_offset for s in store.snapshots("driftline", "predictions.credit_risk", 2)] == [5]
    assert store.load_checkpoint("driftline", "predictions.credit_risk", 3) == checkpoint(
        next_offset=400, consumed=400, accepted=400, dead_lettered=0)


def test_a_snapshot_commits_in_the_transaction_of_its_checkpoint(engine: sa.Engine, store: SqlCheckpointStore) -> None:
    with engine.begin() as connection:  # the snapshot's write will fail, after the checkpoint's
        connection.execute(sa.text("ALTER TABLE checkpoint_snapshots RENAME TO gone"))
    with pytest.raises(SinkError, match="checkpoint_snapshots"):
        store.commit(checkpoint(), [BatchResult(feature_windows=[feature_window()])], snapshot=True)
    assert store.load_checkpoint("driftline", "predictions.credit_risk", 3) is None
    assert rows(engine, "window_aggregates") == []
    store.commit(checkpoint(), [BatchResult(feature_windows=[feature_window()])])  # without a snapshot it goes through
    assert store.load_checkpoint("driftline", "predictions.credit_risk", 3) == checkpoint()


def test_the_snapshot_retention_must_be_positive(engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="snapshot_retention"):
        SqlCheckpointStore(engine, snapshot_retention=timedelta(0))
