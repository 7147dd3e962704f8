"""SqlResultsSink on SQLite (a temporary file): round-trips, idempotent upserts, NULL for non-finite floats."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlite_sink import FIXED_NOW, rows

from driftline.sinks import SinkError, SqlProfileStore, SqlResultsSink
from driftline.sinks.errors import DriftlineError, UnsupportedDialectError
from driftline.sinks.tables import RESULT_TABLES, metadata
from driftline.stream.monitor.results import (
    Alert,
    AlertResolution,
    BatchResult,
    FeatureWindow,
    ModelWindow,
    PerformanceWindow,
    SchemaChangeRecord,
    alert_identifier,
)

START_MS = 1_700_000_040_000  # a whole minute, 2023-11-14T22:14:00Z
MINUTE_MS = 60_000


def utc(milliseconds: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=milliseconds)


def feature_window(feature: str = "age", window: int = 0, **changes: Any) -> FeatureWindow:
    values: dict[str, Any] = dict(
        model="churn",
        model_version="v1",
        feature=feature,
        kind="numeric",
        window_start_ms=START_MS + window * MINUTE_MS,
        window_length_ms=MINUTE_MS,
        count=120,
        nulls=3,
        non_finite=1,
        out_of_range=2,
        unseen=0,
        minimum=18.0,
        maximum=91.5,
        mean=42.25,
        variance=130.5,
        psi=0.12,
        jensen_shannon=0.04,
        ks=0.08,
        wasserstein=1.5,
        psi_threshold=0.2,
        top_items=(),
        quantiles={"p01": 18.5, "p05": 21.0, "p25": 30.0, "p50": 41.0, "p75": 55.0, "p95": 77.0, "p99": 89.0},
    )
    values.update(changes)
    return FeatureWindow(**values)


def model_window(window: int = 0, **changes: Any) -> ModelWindow:
    values: dict[str, Any] = dict(
        model="churn",
        model_version="v1",
        window_start_ms=START_MS + window * MINUTE_MS,
        window_length_ms=MINUTE_MS,
        events=130,
        accepted=124,
        rejected=6,
        rejected_by_reason=(("out_of_range", 4), ("wrong_type", 2)),
    )
    values.update(changes)
    return ModelWindow(**values)


def alert(feature: str | None = "age", event_time_ms: int = START_MS + 30_000, **changes: Any) -> Alert:
    values: dict[str, Any] = dict(
        alert_id=alert_identifier("churn", "v1", "mean_shift", feature, event_time_ms),
        model="churn",
        model_version="v1",
        kind="mean_shift",
        feature=feature,
        detector="page_hinkley",
        severity="critical",
        window_start_ms=START_MS,
        event_time_ms=event_time_ms,
        score=7.5,
        threshold=5.0,
        message="mean of age moved from 41.0 to 55.2",
    )
    values.update(changes)
    return Alert(**values)


def schema_change(**changes: Any) -> SchemaChangeRecord:
    values: dict[str, Any] = dict(
        model="churn",
        writer_id="c3-01-deadbeef",
        compatible=False,
        missing_fields=("tenure",),
        new_fields=("region", "plan"),
        type_changes=("age: int -> string",),
        description="tenure missing; region, plan new; age changed type",
        first_seen_event_time_ms=START_MS + 5_000,
    )
    values.update(changes)
    return SchemaChangeRecord(**values)


def full_result() -> BatchResult:
    categorical = feature_window(
        "plan",
        kind="categorical",
        minimum=None,
        maximum=None,
        mean=None,
        variance=None,
        wasserstein=None,
        quantiles={},
        top_items=(("basic", 70), ("premium", 50)),
    )
    return BatchResult(
        feature_windows=[feature_window("age", 0), feature_window("age", 1, psi=0.31), categorical],
        model_windows=[model_window(0), model_window(1, events=90, accepted=90, rejected=0, rejected_by_reason=())],
        alerts=[alert(), alert(None, kind="no_data", detector="watermark", severity="warning", window_start_ms=None)],
        schema_changes=[schema_change()],
        accepted=214,
        rejected_by_reason={"out_of_range": 4, "wrong_type": 2},
    )


def dump(engine: sa.Engine) -> dict[str, list[dict[str, Any]]]:
    return {name: rows(engine, name) for name in metadata.tables}


def test_feature_windows_round_trip(sink: SqlResultsSink, engine: sa.Engine) -> None:
    sink.add(full_result())
    sink.flush()
    stored = rows(engine, "window_aggregates")
    assert [(row["feature"], row["window_start"]) for row in stored] == [
        ("age", utc(START_MS)),
        ("age", utc(START_MS + MINUTE_MS)),
        ("plan", utc(START_MS)),
    ]
    age = stored[0]
    assert age["window_start"].tzinfo is not None and age["window_start"].utcoffset() == timedelta(0)
    assert age["window_start"] == datetime(2023, 11, 14, 22, 14, tzinfo=UTC)
    assert age["window_length_seconds"] == 60
    assert (age["model"], age["model_version"], age["kind"]) == ("churn", "v1", "numeric")
    assert (age["count"], age["nulls"], age["non_finite"], age["out_of_range"], age["unseen"]) == (120, 3, 1, 2, 0)
    assert (age["minimum"], age["maximum"], age["mean"], age["variance"]) == (18.0, 91.5, 42.25, 130.5)
    assert [age[name] for name in ("p01", "p05", "p25", "p50", "p75", "p95", "p99")] == [
        18.5, 21.0, 30.0, 41.0, 55.0, 77.0, 89.0,
    ]
    assert (age["psi"], age["psi_threshold"], age["jensen_shannon"], age["ks"], age["wasserstein"]) == (
        0.12, 0.2, 0.04, 0.08, 1.5,
    )
    assert age["top_items"] == []
    assert age["updated_at"] == FIXED_NOW
    assert stored[1]["psi"] == 0.31
    plan = stored[2]
    assert plan["top_items"] == [{"item": "basic", "count": 70}, {"item": "premium", "count": 50}]
    assert plan["mean"] is None and plan["p50"] is None


def test_model_windows_alerts_and_schema_changes_round_trip(sink: SqlResultsSink, engine: sa.Engine) -> None:
    sink.add(full_result())
    sink.flush()

    windows = rows(engine, "model_windows")
    assert [(w["window_start"], w["events"], w["accepted"], w["rejected"]) for w in windows] == [
        (utc(START_MS), 130, 124, 6),
        (utc(START_MS + MINUTE_MS), 90, 90, 0),
    ]
    assert windows[0]["rejected_by_reason"] == {"out_of_range": 4, "wrong_type": 2}
    assert windows[1]["rejected_by_reason"] == {}

    alerts = {row["alert_id"]: row for row in rows(engine, "alerts")}
    expected = {a.alert_id: a for a in full_result().alerts}
    assert alerts.keys() == expected.keys()
    for alert_id, row in alerts.items():
        record = expected[alert_id]
        assert row["event_time"] == utc(record.event_time_ms)
        assert row["window_start"] == (None if record.window_start_ms is None else utc(record.window_start_ms))
        for name in ("model", "model_version", "kind", "feature", "detector", "severity", "score", "threshold", "message"):
            assert row[name] == getattr(record, name), name
        assert row["created_at"] == FIXED_NOW

    (change,) = rows(engine, "schema_changes")
    assert change == {
        "model": "churn",
        "writer_id": "c3-01-deadbeef",
        "compatible": False,
        "missing_fields": ["tenure"],
        "new_fields": ["region", "plan"],
        "type_changes": ["age: int -> string"],
        "description": "tenure missing; region, plan new; age changed type",
        "first_seen_event_time": utc(START_MS + 5_000),
        "run": "live",
    }


def test_writing_the_same_results_twice_leaves_the_tables_identical(sink: SqlResultsSink, engine: sa.Engine) -> None:
    sink.add(full_result())
    sink.flush()
    first = dump(engine)
    sink.add(full_result())
    sink.flush()
    assert dump(engine) == first
    assert sum(len(table_rows) for table_rows in first.values()) == 3 + 2 + 2 + 1


def test_a_rewrite_of_the_same_values_later_changes_nothing_and_a_changed_value_moves_updated_at(engine: sa.Engine) -> None:
    clock = iter([FIXED_NOW, FIXED_NOW + timedelta(hours=1), FIXED_NOW + timedelta(hours=2)])
    sink = SqlResultsSink(engine, clock=lambda: next(clock))
    sink.add(full_result())
    sink.flush()
    first = dump(engine)
    sink.add(full_result())
    sink.flush()
    # Nothing differs: no row is updated, so updated_at still says when the content was written.
    assert dump(engine) == first
    assert {row["updated_at"] for table in ("window_aggregates", "model_windows") for row in first[table]} == {FIXED_NOW}
    changed = full_result()
    changed.model_windows[0] = dataclasses.replace(changed.model_windows[0], accepted=changed.model_windows[0].accepted - 1)
    sink.add(changed)
    sink.flush()
    third = dump(engine)
    moved = [row for row in third["model_windows"] if row["updated_at"] != FIXED_NOW]
    assert [(row["window_start"], row["accepted"], row["updated_at"]) for row in moved] == [
        (utc(changed.model_windows[0].window_start_ms), changed.model_windows[0].accepted, FIXED_NOW + timedelta(hours=2))]
    assert {k: v for k, v in third.items() if k != "model_windows"} == {k: v for k, v in first.items() if k != "model_windows"}
    # created_at records the first write of an alert, not the latest one.
    assert {row["created_at"] for row in third["alerts"]} == {FIXED_NOW}


def test_upsert_on_the_natural_key_overwrites_changed_values(sink: SqlResultsSink, engine: sa.Engine) -> None:
    sink.add(BatchResult(feature_windows=[feature_window(psi=0.1, count=100)], model_windows=[model_window(accepted=100)]))
    sink.flush()
    # The same window re-emitted (e.g. after late events) with new values replaces the row.
    sink.add(BatchResult(feature_windows=[feature_window(psi=0.4, count=140)], model_windows=[model_window(accepted=140)]))
    sink.flush()
    (aggregate,) = rows(engine, "window_aggregates")
    assert (aggregate["psi"], aggregate["count"]) == (0.4, 140)
    (window,) = rows(engine, "model_windows")
    assert window["accepted"] == 140
    # Another model version is another row.
    sink.add(BatchResult(feature_windows=[feature_window(model_version="v2", psi=0.05)]))
    sink.flush()
    assert [(r["model_version"], r["psi"]) for r in rows(engine, "window_aggregates")] == [("v1", 0.4), ("v2", 0.05)]


def performance_window(**changes: Any) -> PerformanceWindow:
    values: dict[str, Any] = dict(
        model="churn", task="classification", window_start_ms=START_MS, window_length_ms=MINUTE_MS, count=40,
        invalid_labels=1, accuracy=0.75, precision=0.5, recall=None, f1=float("nan"), log_loss=0.52,
        true_positives=10, false_positives=10, true_negatives=20, false_negatives=0, mae=None, rmse=None,
        predictions=50, estimated_accuracy=0.7, estimated_accuracy_se=0.06, estimated_f1=None,
    )
    values.update(changes)
    return PerformanceWindow(**values)


def test_performance_windows_round_trip_and_a_later_record_of_the_window_replaces_it(
    sink: SqlResultsSink, engine: sa.Engine
) -> None:
    sink.add(BatchResult(performance_windows=[performance_window()]))
    sink.flush()
    (row,) = rows(engine, "performance_windows")
    assert row == {
        "model": "churn", "window_start": utc(START_MS), "window_length_seconds": 60, "task": "classification",
        "labelled": 40, "invalid_labels": 1, "accuracy": 0.75, "precision": 0.5, "recall": None, "f1": None,
        "log_loss": 0.52, "true_positives": 10, "false_positives": 10, "true_negatives": 20, "false_negatives": 0,
        "mae": None, "rmse": None, "predictions": 50, "estimated_accuracy": 0.7, "estimated_accuracy_se": 0.06,
        "estimated_f1": None, "updated_at": FIXED_NOW, "run": "live",
    }
    # More labels landed in the window: the same key, larger counts.
    sink.add(BatchResult(performance_windows=[performance_window(count=55, accuracy=0.8)]))
    sink.flush()
    assert [(r["labelled"], r["accuracy"]) for r in rows(engine, "performance_windows")] == [(55, 0.8)]


def test_duplicate_keys_within_one_flush_keep_the_last(sink: SqlResultsSink, engine: sa.Engine) -> None:
    sink.add(BatchResult(feature_windows=[feature_window(psi=0.1)], alerts=[alert(message="first")]))
    sink.add(BatchResult(feature_windows=[feature_window(psi=0.2)], alerts=[alert(message="second")]))
    assert sink.buffered == 2
    sink.flush()
    assert [row["psi"] for row in rows(engine, "window_aggregates")] == [0.2]
    assert [row["message"] for row in rows(engine, "alerts")] == ["second"]


def test_non_finite_floats_are_stored_as_null(sink: SqlResultsSink, engine: sa.Engine) -> None:
    window = feature_window(
        mean=math.nan,
        maximum=math.inf,
        minimum=-math.inf,
        psi=math.inf,
        ks=math.nan,
        quantiles={"p50": math.nan, "p99": math.inf, "p01": 1.0},
    )
    sink.add(BatchResult(feature_windows=[window], alerts=[alert(score=math.inf, threshold=math.nan)]))
    sink.flush()
    (row,) = rows(engine, "window_aggregates")
    assert [row[name] for name in ("mean", "maximum", "minimum", "psi", "ks", "p50", "p99")] == [None] * 7
    assert (row["p01"], row["variance"]) == (1.0, 130.5)
    (stored_alert,) = rows(engine, "alerts")
    assert (stored_alert["score"], stored_alert["threshold"]) == (None, None)


def test_quantiles_keyed_by_probability_fill_the_same_columns(sink: SqlResultsSink, engine: sa.Engine) -> None:
    sink.add(BatchResult(feature_windows=[feature_window(quantiles={"0.5": 40.0, "0.05": 20.0, "0.3": 33.0, "p10": 1.0})]))
    sink.flush()
    (row,) = rows(engine, "window_aggregates")
    assert (row["p50"], row["p05"], row["p25"], row["p01"]) == (40.0, 20.0, None, None)


def test_schema_change_keeps_the_earliest_first_seen_time(sink: SqlResultsSink, engine: sa.Engine) -> None:
    sink.add(BatchResult(schema_changes=[schema_change(first_seen_event_time_ms=START_MS + 9_000)]))
    sink.flush()
    sink.add(BatchResult(schema_changes=[schema_change(first_seen_event_time_ms=START_MS + 2_000)]))
    sink.flush()
    sink.add(BatchResult(schema_changes=[schema_change(first_seen_event_time_ms=START_MS + 50_000, description="later run")]))
    sink.flush()
    sink.add(BatchResult(schema_changes=[schema_change(first_seen_event_time_ms=None)]))
    sink.flush()
    (row,) = rows(engine, "schema_changes")
    assert row["first_seen_event_time"] == utc(START_MS + 2_000)
    assert row["description"] == schema_change().description


def test_a_flush_is_one_executemany_statement_per_table(sink: SqlResultsSink, engine: sa.Engine) -> None:
    windows = [feature_window(f"feature_{i}", window) for i in range(20) for window in range(100)]
    statements: list[tuple[str, bool]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement.split()[2], executemany))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        sink.add(BatchResult(feature_windows=windows, model_windows=[model_window(w) for w in range(100)]))
        sink.flush()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert statements == [("window_aggregates", True), ("model_windows", True)]
    assert len(rows(engine, "window_aggregates")) == 2000


def test_failed_flush_raises_sink_error_commits_nothing_and_clears_buffers(sink: SqlResultsSink, engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE schema_changes"))
    sink.add(full_result())
    with pytest.raises(SinkError) as raised:
        sink.flush()
    assert isinstance(raised.value, DriftlineError)
    assert isinstance(raised.value.__cause__, sa.exc.SQLAlchemyError)
    assert sink.buffered == 0
    # window_aggregates was written before schema_changes failed, in the same transaction.
    assert rows(engine, "window_aggregates") == []


def test_window_lengths_must_be_whole_seconds(sink: SqlResultsSink) -> None:
    with pytest.raises(ValueError, match="window_length_ms=1500"):
        sink.add(BatchResult(feature_windows=[feature_window()], model_windows=[model_window(window_length_ms=1500)]))
    assert sink.buffered == 0


def test_unknown_dialect_is_refused_clearly() -> None:
    mysql = sa.create_mock_engine("mysql://", executor=lambda *args, **kwargs: None)
    with pytest.raises(UnsupportedDialectError, match=r"unsupported SQL dialect 'mysql'.*sqlite and postgresql"):
        SqlResultsSink(mysql)  # type: ignore[arg-type]
    assert issubclass(UnsupportedDialectError, ValueError) and issubclass(UnsupportedDialectError, SinkError)


def test_reference_profiles_save_load_and_replace(profiles: SqlProfileStore, engine: sa.Engine) -> None:
    assert profiles.load("churn", "v1") is None
    profile = json.dumps({"features": {"age": {"bins": [0, 30, 60], "fractions": [0.4, 0.6]}}}, indent=1)
    profiles.save("churn", "v1", profile)
    profiles.save("churn", "v2", "{}")
    assert profiles.load("churn", "v1") == profile
    profiles.save("churn", "v1", '{"features": {}}')
    assert profiles.load("churn", "v1") == '{"features": {}}'
    assert profiles.load("churn", "v2") == "{}"
    assert len(rows(engine, "reference_profiles")) == 2
    with pytest.raises(ValueError, match="profile_json"):
        profiles.save("churn", "v3", "{not json")


def test_schema_names_are_explicit_and_stable(sink: SqlResultsSink, engine: sa.Engine) -> None:
    inspector = sa.inspect(engine)
    assert sorted(inspector.get_table_names()) == [
        "alerts", "challenger_windows", "checkpoint_snapshots", "checkpoints", "driftline_alembic_version", "model_windows",
        "performance_windows", "reference_profiles", "schema_changes", "window_aggregates",
    ]
    indexes = {ix["name"]: ix["column_names"] for table in metadata.tables for ix in inspector.get_indexes(table)}
    assert indexes == {
        "ix_alerts_event_time": ["event_time"],
        "ix_alerts_model_event_time": ["model", "event_time"],
        "ix_alerts_kind_severity_event_time": ["kind", "severity", "event_time"],
        "ix_model_windows_model_window_start": ["model", "window_start"],
        "ix_window_aggregates_model_feature_window_start": ["model", "feature", "window_start"],
        "ix_window_aggregates_window_start": ["window_start"],
    }
    assert {table.name: table.primary_key.name for table in metadata.sorted_tables} == {
        name: f"pk_{name}" for name in metadata.tables
    }
    assert {name: inspector.get_pk_constraint(name)["name"] for name in metadata.tables} == {
        name: f"pk_{name}" for name in metadata.tables
    }
    assert sorted(check["name"] for check in inspector.get_check_constraints("checkpoints")) == [
        "ck_checkpoints_counts_reconcile", "ck_checkpoints_next_offset_not_negative",
    ]


def test_runs_write_beside_each_other_and_resolve_their_own_alerts(engine: sa.Engine) -> None:
    live, replay = (SqlResultsSink(engine, clock=lambda: FIXED_NOW, run=run) for run in ("live", "fix-1"))
    live.add(full_result())
    live.flush()
    before = dump(engine)
    changed = full_result()
    changed.model_windows[0] = dataclasses.replace(changed.model_windows[0], accepted=1)
    first_alert = changed.alerts[0]
    changed.resolved_alerts.append(AlertResolution(first_alert, first_alert.event_time_ms + 60_000,
                                                   first_alert.event_time_ms, 3))
    replay.add(changed)
    replay.flush()
    after = dump(engine)
    # The live rows are as they were; the replay's sit beside them, under its label, with its own values.
    for table, live_rows in before.items():
        if table in RESULT_TABLES:
            assert [row for row in after[table] if row["run"] == "live"] == live_rows, table
            assert len([row for row in after[table] if row["run"] == "fix-1"]) == len(live_rows), table
    windows = {(row["run"], row["window_start"]): row["accepted"] for row in after["model_windows"]}
    start = utc(changed.model_windows[0].window_start_ms)
    assert (windows[("live", start)], windows[("fix-1", start)]) == (before["model_windows"][0]["accepted"], 1)
    resolved = {(row["run"], row["alert_id"]): row["signals"] for row in after["alerts"] if row["resolved_at"] is not None}
    assert resolved == {("fix-1", first_alert.alert_id): 3}


@pytest.mark.parametrize("run", ["", "live run", "-x", "x" * 65, "naïve"])
def test_a_bad_run_label_is_refused(engine: sa.Engine, run: str) -> None:
    with pytest.raises(ValueError, match="is not a run label"):
        SqlResultsSink(engine, run=run)


def test_quantiles_alone_do_not_make_a_row_different(engine: sa.Engine) -> None:
    clock = iter([FIXED_NOW, FIXED_NOW + timedelta(hours=1), FIXED_NOW + timedelta(hours=2)])
    sink = SqlResultsSink(engine, clock=lambda: next(clock))
    first = feature_window(quantiles={"p50": 1.5, "p95": 1.9})
    sink.add(BatchResult(feature_windows=[first]))
    sink.flush()
    # The same window summarised again by a KLL sketch that drew other random bits: only the quantiles differ.
    sink.add(BatchResult(feature_windows=[dataclasses.replace(first, quantiles={"p50": 1.51, "p95": 1.88})]))
    sink.flush()
    (row,) = rows(engine, "window_aggregates")
    assert (row["p50"], row["p95"], row["updated_at"]) == (1.5, 1.9, FIXED_NOW)
    # A real change (one value more) rewrites the row, quantiles included.
    sink.add(BatchResult(feature_windows=[dataclasses.replace(first, count=first.count + 1, quantiles={"p50": 1.52})]))
    sink.flush()
    (row,) = rows(engine, "window_aggregates")
    assert (row["count"], row["p50"], row["p95"], row["updated_at"]) == (first.count + 1, 1.52, None, FIXED_NOW + timedelta(hours=2))
