"""``driftline report`` from the real PostgreSQL, looked at in headless Chromium — and the Grafana dashboard's
SQL panels on the same rows.

A partition runner writes the demo's stream (a gradual income shift, a producer's rename whose events
are rejected, a flood of a new category) into an isolated schema through the SQL store, as a worker
would; ``driftline report`` renders the model's range from the database; Chromium (Debian's package,
installed by deploy/local/lib.sh) screenshots the page, which must not be blank, and logs no console
message (the page has no script: any would be an error). The dashboard's SQL queries (its panels, variable and
annotations) then run on the same database as the read-only role Grafana logs in as (docker-compose.yml's
grafana-role), with Grafana's macros filled in, and show the report's numbers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from unavailable import unavailable
from worker_harness import MODEL, isolated_database, unique

from driftline.schemas.codec import Codec, in_memory_registry
from driftline.schemas.contract_catalog import Catalog
from driftline.sinks import SqlCheckpointStore
from driftline.sinks.database import create_database_engine, grant_readonly
from driftline.sinks.report_reader import read_report_data
from driftline.stream.demo.demo import LATE_EVERY, demo_episodes, demo_messages, reference_profile
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.engine import EngineConfig
from driftline.stream.runner import InMemoryDeadLetters, PartitionKey, PartitionRunner

EVENTS = 36_000
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/driftline.json"


def _dashboard_queries() -> dict[str, str]:
    """Every SQL query of the dashboard, by panel title (or variable / annotation name)."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries: dict[str, str] = {}

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if "rawSql" in target:
                    queries[panel["title"]] = target["rawSql"]
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    queries.update({v["name"]: v["query"] for v in dashboard["templating"]["list"] if v["datasource"]["type"] != "prometheus"})
    queries.update({a["name"]: a["target"]["rawSql"] for a in dashboard["annotations"]["list"] if "rawSql" in a.get("target", {})})
    return queries


def _as_grafana_runs_it(sql: str, since: datetime, until: datetime) -> str:
    """The query with Grafana's macros expanded as its PostgreSQL data source does (the unit test allows no others)."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", lambda m: f"{m.group(1)} BETWEEN '{since.isoformat()}' AND '{until.isoformat()}'", sql)
    return sql.replace("${db_model:sqlstring}", f"'{MODEL}'").replace("${db_run:sqlstring}", "'live'")


def _grafana_rows(url: str, since: datetime, until: datetime) -> dict[str, list[dict[str, Any]]]:
    """What each SQL query of the dashboard returns, read as a role made by ``grant_readonly`` (as compose's grafana-role)."""
    role, password = unique("grafana_"), "grafana-test"
    grant_readonly(url, role, password=password)
    viewer = create_database_engine(sa.make_url(url).set(username=role, password=password).render_as_string(hide_password=False))
    try:
        with viewer.connect() as connection:
            return {title: [dict(row) for row in connection.execute(sa.text(_as_grafana_runs_it(sql, since, until))).mappings()]
                    for title, sql in _dashboard_queries().items()}
    finally:
        viewer.dispose()
        owner = create_database_engine(url)
        try:
            with owner.begin() as connection:
                connection.exec_driver_sql(f'DROP OWNED BY "{role}"')
                connection.exec_driver_sql(f'DROP ROLE "{role}"')
        finally:
            owner.dispose()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    unavailable("no chromium (deploy/local/lib.sh installs Debian's chromium package)")


def test_the_report_of_a_range_renders_from_the_database(database_url: str, tmp_path: Path) -> None:
    chromium = _chromium()
    catalog = Catalog.load()
    contract = catalog.contract(MODEL)
    registry = in_memory_registry()
    stream = SyntheticStream(contract, seed=11, events_per_second=40)
    with isolated_database(database_url) as url:
        engine = create_database_engine(url)
        try:
            profile = reference_profile(contract, SyntheticStream(contract, seed=3))
            runner = PartitionRunner(
                key=PartitionKey("report", "predictions." + MODEL, 0), contract=contract, profiles={profile.model_version: profile},
                codec=Codec(catalog, registry_client=registry), store=SqlCheckpointStore(engine), deadletters=InMemoryDeadLetters(),
                config=EngineConfig(window_length_ms=60_000, alert_cooldown_ms=5 * 60_000),
            )
            for chunk in demo_messages(contract, stream, EVENTS, demo_episodes(EVENTS), registry):
                runner.process(chunk)
                runner.checkpoint()
            runner.finish()
            first = datetime.fromtimestamp(int(np.asarray(stream.event_times(1))[0]) / 1000, UTC)
            data = read_report_data(engine, MODEL, first - timedelta(days=1), first + timedelta(days=1))
        finally:
            engine.dispose()
        grafana = _grafana_rows(url, first - timedelta(days=1), first + timedelta(days=1))
        output = tmp_path / "report.html"
        done = subprocess.run(
            [sys.executable, "-m", "driftline.stream.cli", "report", "--model", MODEL, "--since", (first - timedelta(days=1)).isoformat(),
             "--until", (first + timedelta(days=1)).isoformat(), "--output", str(output), "--database-url", url],
            capture_output=True, text=True, timeout=300, check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "read 2 of 2 day(s)" in done.stderr  # the progress line
    page = output.read_text(encoding="utf-8")
    for heading in ("Drift scores", "Alert timeline", "Events per window", "Alerts ("):
        assert heading in page, heading
    assert page.count("data:image/png;base64,") >= 3
    assert "incidents resolved" in page and "rejected events" in page  # the summary

    # The rename's events are rejected, yet in the windows of their own event time: the report reads them
    # there and shows their volume (in the plot, and in the list of windows with rejections under it).
    rename = next(e for e in demo_episodes(EVENTS) if e.kind == "rename")
    late = [p for p in range(rename.start, rename.end) if p % LATE_EVERY == 0 and p >= 10 * LATE_EVERY]
    renamed = rename.end - rename.start - len(late)  # (late beyond the allowed lateness: counted, in no window)
    times = np.asarray(stream.event_times(EVENTS))
    during = [w for w in data.model_windows
              if w.window_start_ms < times[rename.end - 1] and w.window_start_ms + w.window_length_ms > times[rename.start]]
    assert during and all(dict(w.rejected_by_reason).get("missing_field", 0) > 0 for w in during)
    assert sum(dict(w.rejected_by_reason).get("missing_field", 0) for w in data.model_windows) == renamed
    assert max(w.rejected / w.events for w in during) > 0.6
    assert f"{renamed:,} rejected events in {len(during)} window(s) (missing_field: {renamed:,})" in page
    for window in during:
        rejected = dict(window.rejected_by_reason)["missing_field"]
        assert f'<td class="number">{window.events:,}</td><td class="number">{rejected:,}</td><td>missing_field: {rejected:,}</td>' in page

    screenshot = tmp_path / "report.png"
    shown = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,3000",
         "--enable-logging=stderr", "--v=0", f"--screenshot={screenshot}", output.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert shown.returncode == 0 and screenshot.exists(), shown.stderr[-2000:]
    console = [line for line in shown.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    import matplotlib.image

    pixels = np.asarray(matplotlib.image.imread(screenshot))[..., :3]
    not_white = float(np.mean(pixels.min(axis=-1) < 0.9))
    assert not_white > 0.05 and float(pixels.std()) > 0.05, (not_white, float(pixels.std()))  # text and figures, not blank

    # Grafana's counterparts of the report's panels read the same windows from the analyst views.
    def ms(value: datetime) -> int:
        return int(value.timestamp() * 1000)

    events = {ms(r["time"]): (r["accepted"], r["rejected"]) for r in grafana["Events per window: accepted and rejected"]}
    assert events == {w.window_start_ms: (w.accepted, w.rejected) for w in data.model_windows}
    assert {ms(r["window_start"]) for r in grafana["Windows with rejected events"]} == {w.window_start_ms for w in during}
    psi = {(ms(r["time"]), r["metric"]): r["psi"] for r in grafana["Drift score per window: PSI"]}
    assert psi == {(w.window_start_ms, w.feature): w.psi for w in data.feature_windows if w.psi is not None}
    ratio = grafana["PSI over its calibrated threshold (above 1: a drifted window)"]
    assert {(ms(r["time"]), r["metric"]) for r in ratio if r["psi_over_threshold"] > 1} == {
        (w.window_start_ms, w.feature) for w in data.feature_windows if w.psi is not None and w.psi_threshold and w.psi > w.psi_threshold}
    assert grafana["Accuracy per window of prediction time, realised and estimated"] == []  # this stream has no labels
    assert [r["kind"] for r in grafana["Alerts"]] == [a.kind for a in sorted(data.alerts, key=lambda a: a.event_time_ms)]
    incidents = grafana["Incidents: opened, resolved"]
    assert sum(r["state"] == "resolved" for r in incidents) == len(data.resolutions) and len(incidents) == len(data.alerts)
    assert len(grafana["driftline incidents"]) == len(data.alerts)
    assert [r["model"] for r in grafana["db_model"]] == [MODEL]
