"""The report's reader on SQLite: one run's rows of a model over a range, read back as the engine's records."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlite_sink import FIXED_NOW
from test_results_sink import START_MS, full_result

from driftline.sinks import SqlResultsSink
from driftline.sinks.report_reader import read_report_data


def test_a_report_reads_one_run_of_one_model(engine: sa.Engine) -> None:
    live = full_result()
    replayed = full_result()
    replayed.model_windows[0] = dataclasses.replace(replayed.model_windows[0], accepted=1)
    for run, result in (("live", live), ("fix-1", replayed)):
        sink = SqlResultsSink(engine, clock=lambda: FIXED_NOW, run=run)
        sink.add(result)
        sink.flush()
    since = datetime.fromtimestamp(START_MS / 1000 - 3600, UTC)
    until = datetime.fromtimestamp(START_MS / 1000 + 3600, UTC)
    model = live.model_windows[0].model
    days: list[tuple[int, int, int]] = []
    data = read_report_data(engine, model, since, until, progress=lambda *p: days.append(p))
    assert sorted(w.accepted for w in data.model_windows) == sorted(w.accepted for w in live.model_windows)
    assert len(data.feature_windows) == len(live.feature_windows) and len(data.alerts) == len(live.alerts)
    assert days and days[-1][2] == data.rows
    fix = read_report_data(engine, model, since, until, run="fix-1")
    assert sorted(w.accepted for w in fix.model_windows) == sorted(w.accepted for w in replayed.model_windows)
    assert read_report_data(engine, model, since, until, run="fix-2").rows == 0
