from __future__ import annotations

import sqlite3
import urllib.request
from pathlib import Path

import pytest

from driftline.stream.demo.demo import LABEL_DELAY_MS, LATE_EVERY, DemoSummary, run_demo
from driftline.stream.demo.generator import START_MS

EVENTS = 100_000
MS_PER_EVENT = 100  # the synthetic stream runs at 10 events/s of event time
# After an episode ends, alerts may still arrive for the windows it touched: the last window
# closes one window plus the allowed lateness later, and the cooldown does not matter for new alerts.
SETTLE_MS = 5 * 60_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return run_demo(output=tmp_path_factory.mktemp("demo"), events=EVENTS, metrics_port=0, progress=False, echo=False)


def _time(position: int) -> int:
    return START_MS + position * MS_PER_EVENT


def test_every_event_is_accounted_for(demo: DemoSummary) -> None:
    assert demo.totals.consumed == EVENTS
    assert demo.totals.consumed == demo.totals.accepted + demo.totals.rejected
    rename = next(e for e in demo.episodes if e.kind == "rename")
    assert demo.totals.rejected_by_reason.get("missing_field", 0) == rename.end - rename.start


def test_events_late_beyond_lateness_are_counted(demo: DemoSummary) -> None:
    # The rename's events are dated too (their writer schema reads their event time): late ones among them are late.
    late = list(range(10 * LATE_EVERY, EVENTS, LATE_EVERY))
    assert demo.totals.late_events == len(late) > 0
    windowed = sum(w.events for w in demo.model_windows)
    assert windowed + demo.totals.late_events == EVENTS


def test_gradual_mean_shift_is_detected_during_the_episode(demo: DemoSummary) -> None:
    episode = next(e for e in demo.episodes if e.kind == "mean_shift")
    hits = [
        a for a in demo.alerts
        if a.feature == episode.feature and a.kind in ("mean_shift", "distribution_drift")
        and _time(episode.start) <= a.event_time_ms <= _time(episode.end) + SETTLE_MS
    ]
    assert {a.kind for a in hits} == {"mean_shift", "distribution_drift"}


def test_renamed_field_raises_exactly_one_schema_change_alert(demo: DemoSummary) -> None:
    episode = next(e for e in demo.episodes if e.kind == "rename")
    changes = [a for a in demo.alerts if a.kind == "schema_change"]
    assert len(changes) == 1
    assert episode.feature in changes[0].message and episode.new_name in changes[0].message
    assert _time(episode.start) - 2000 <= changes[0].event_time_ms <= _time(episode.start) + 60_000
    # The rejected events count in the windows of their own event time: no gap, one rejections incident.
    assert [a for a in demo.alerts if a.kind == "no_data"] == []
    (rejections,) = [a for a in demo.alerts if a.detector == "rejections"]
    assert rejections.kind == "data_quality" and "missing_field" in rejections.message
    assert _time(episode.start) <= rejections.event_time_ms <= _time(episode.start) + 2 * 60_000
    inside = [w for w in demo.model_windows
              if _time(episode.start) <= w.window_start_ms and w.window_start_ms + w.window_length_ms <= _time(episode.end)]
    assert len(inside) >= (episode.end - episode.start) * MS_PER_EVENT // 60_000 - 2
    assert all(w.accepted == 0 and w.rejected == w.events > 0 and dict(w.rejected_by_reason) == {"missing_field": w.events}
               for w in inside)
    late_in_episode = len([p for p in range(10 * LATE_EVERY, EVENTS, LATE_EVERY) if episode.start <= p < episode.end])
    windowed = sum(dict(w.rejected_by_reason).get("missing_field", 0) for w in demo.model_windows)
    assert windowed == demo.totals.rejected_by_reason["missing_field"] - late_in_episode


def test_new_category_flood_is_detected_and_named(demo: DemoSummary) -> None:
    episode = next(e for e in demo.episodes if e.kind == "new_category")
    hits = [
        a for a in demo.alerts
        if a.feature == episode.feature and a.detector == "unseen_category"
        and _time(episode.start) <= a.event_time_ms <= _time(episode.end) + SETTLE_MS
    ]
    assert len(hits) == 1
    assert episode.new_name in hits[0].message


def test_the_concept_change_raises_concept_drift_from_the_labels_and_nothing_else(demo: DemoSummary) -> None:
    episode = next(e for e in demo.episodes if e.kind == "concept")
    # Labels are observed LABEL_DELAY_MS after their predictions: the evidence arrives that much later.
    start, end = _time(episode.start) + LABEL_DELAY_MS, _time(episode.end) + LABEL_DELAY_MS + SETTLE_MS
    during = [a for a in demo.alerts if start - 2000 <= a.event_time_ms <= end]
    assert [a.kind for a in during] == ["concept_drift"]  # the inputs did not move: no data-drift alert
    assert during[0].event_time_ms - start < 5 * 60_000  # found within minutes of the first changed label
    # Every accepted prediction got its label; the labels of rejected predictions are counted, not lost.
    assert demo.label_counts["joined"] == demo.totals.accepted
    assert demo.label_counts["unknown_prediction"] == demo.totals.rejected
    latest = {w.window_start_ms: w for w in demo.performance_windows}
    before = [w.accuracy for s, w in latest.items() if s < _time(episode.start) and w.count >= 100]
    inside = [w.accuracy for s, w in latest.items() if _time(episode.start) + 60_000 <= s < _time(episode.end) - 60_000]
    assert min(before) > max(inside)  # the realised accuracy fell with the concept change


def test_no_alert_fires_in_the_clean_stretches(demo: DemoSummary) -> None:
    episodes = sorted(demo.episodes, key=lambda e: e.start)
    # A concept change is seen when the labels come: LABEL_DELAY_MS after the predictions.
    busy = [(_time(e.start) - 2000, _time(e.end) + SETTLE_MS + (LABEL_DELAY_MS if e.kind == "concept" else 0)) for e in episodes]
    stray = [a for a in demo.alerts if not any(lo <= a.event_time_ms <= hi for lo, hi in busy)]
    assert stray == [], "\n".join(a.message for a in stray)
    assert len(demo.alerts) >= 4


def test_results_reach_sqlite_the_report_and_prometheus(demo: DemoSummary) -> None:
    assert demo.database is not None and demo.report is not None
    with sqlite3.connect(demo.database) as db:
        windows = db.execute("select count(*) from window_aggregates").fetchone()[0]
        alerts = db.execute("select count(*) from alerts").fetchone()[0]
        performance = db.execute("select count(*), sum(labelled) from performance_windows").fetchone()
    assert windows == len(demo.feature_windows) > 0
    assert performance == (len({w.window_start_ms for w in demo.performance_windows}), demo.label_counts["joined"])
    assert alerts == len(demo.alerts)
    html = Path(demo.report).read_text(encoding="utf-8")
    assert "annual_income" in html and ("<svg" in html or "data:image/png" in html)
    assert demo.metrics_port
    body = urllib.request.urlopen(f"http://127.0.0.1:{demo.metrics_port}/metrics", timeout=5).read().decode()
    assert f'driftline_events_accepted_total{{model="credit_risk"}} {float(demo.totals.accepted)}' in body
