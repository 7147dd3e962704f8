"""The Grafana dashboard against Grafana's own schema, its SQL panels against the analyst views, and
its panels against the report's.

Schema: Grafana publishes its dashboard model as TypeScript types generated from its CUE schema
(the npm package ``@grafana/schema``, versioned with Grafana: 11.2.0 is the image of
docker-compose.yml). No JSON schema of the dashboard is published for this version (the
``grafana-foundation-sdk`` Python package builds dashboards but parses them leniently), so the test
writes the dashboard as a TypeScript object literal typed ``Dashboard`` — and each panel's options
and custom field config with its plugin's ``Options`` and ``FieldConfig`` — and has the TypeScript
compiler check it: a missing required field, a misspelled key (an excess property), a value of the
wrong type or an enum value Grafana does not know fails. The packages come from
``deploy/grafana/schema/package-lock.json``, installed into the cache by
``deploy/grafana/schema/install.sh`` (``deploy/local/services.sh up`` runs it).

The SQL panels' queries run against the real PostgreSQL in
tests/integration/test_report_from_database.py (as the read-only role, on the report's data).
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from unavailable import unavailable

from driftline.stream.demo.report import write_report
from driftline.stream.monitor.results import Alert, FeatureWindow, ModelWindow, PerformanceWindow

#: Panel type -> the module of @grafana/schema with its plugin's Options (and FieldConfig, where it has one).
PANEL_TYPES = {
    "timeseries": ("timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen", True),
    "table": ("table/panelcfg/x/TablePanelCfg_types.gen", True),
    "stat": ("stat/panelcfg/x/StatPanelCfg_types.gen", False),
    "state-timeline": ("statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen", True),
}
SQL_SOURCE = "grafana-postgresql-datasource"
#: How a panel names the report section it stands for, at the end of its description.
COUNTERPART = re.compile(r"\(driftline report: ([^)]+)\)$")
#: The one report section without a panel: a table of the command's own figures (range, counts).
NOT_A_PANEL = frozenset({"Summary"})

# Dashboard JSON is plain data: a string enum of the types is written as its value ("list", not
# LegendDisplayMode.List), so enums become the union of their values; Loose makes every field optional
# (Grafana fills in a plugin's defaults) while keeping excess-property and type checks.
_PRELUDE = """
type Wire<T> = T extends string ? `${T}` : T extends readonly (infer U)[] ? Wire<U>[] : T extends object ? { [K in keyof T]: Wire<T[K]> } : T;
type Loose<T> = T extends string ? `${T}` : T extends readonly (infer U)[] ? Loose<U>[] : T extends object ? { [K in keyof T]?: Loose<T[K]> } : T;
"""


_SQL_QUERY = """
interface SqlQuery extends DataQuery {
  rawSql: string;
  format: "time_series" | "table";
  rawQuery?: boolean;
  editorMode?: "code" | "builder";
}
"""


@pytest.fixture(scope="module")
def dashboard(repository: Path) -> dict[str, Any]:
    return json.loads((repository / "deploy/grafana/dashboards/driftline.json").read_text(encoding="utf-8"))


def _panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from _panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def schema_packages() -> Path:
    """The directory holding node_modules with @grafana/schema and typescript (install.sh's)."""
    cache = Path(os.environ.get("DRIFTLINE_CACHE_DIR") or Path.home() / ".cache" / "driftline")
    target = cache / "grafana-schema"
    if not (target / "node_modules" / ".bin" / "tsc").exists() or not (target / "node_modules/@grafana/schema").is_dir():
        unavailable(f"the dashboard schema check's npm packages are not in {target} (bash deploy/grafana/schema/install.sh installs them)")
    return target


def _typescript(dashboard: dict[str, Any]) -> str:
    """The dashboard as TypeScript: the whole typed Dashboard, and each panel's options with its plugin's types."""
    lines = ['import type { AnnotationQuery, Dashboard, DataQuery } from "@grafana/schema";']
    for index, (module, _) in enumerate(PANEL_TYPES.values()):
        lines.append(f'import type * as Plugin{index} from "@grafana/schema/dist/esm/raw/composable/{module}";')
    # A data source's query extends DataQuery with its own fields; the annotations' SQL targets are typed so
    # (@grafana/schema 11.2 has no type of the SQL data sources' query: SqlQuery declares its fields).
    without_targets = copy.deepcopy(dashboard)
    for annotation in without_targets["annotations"]["list"]:
        annotation.pop("target", None)
    lines += [_PRELUDE, _SQL_QUERY, f"export const dashboard: Wire<Dashboard> = {json.dumps(without_targets, indent=1)};"]
    for index, annotation in enumerate(dashboard["annotations"]["list"]):
        typed = "AnnotationQuery<SqlQuery>" if annotation["datasource"]["type"] == SQL_SOURCE else "AnnotationQuery"
        lines.append(f"export const annotation{index}: Wire<{typed}> = {json.dumps(annotation)};")
    plugins = {name: (f"Plugin{index}", has_field_config) for index, (name, (_, has_field_config)) in enumerate(PANEL_TYPES.items())}
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["type"] in plugins, f"panel {panel['title']!r}: no schema known for type {panel['type']!r}"
        plugin, has_field_config = plugins[panel["type"]]
        for number, target in enumerate(panel["targets"]):
            if target["datasource"]["type"] == SQL_SOURCE:
                lines.append(f"export const query{panel['id']}_{number}: Wire<SqlQuery> = {json.dumps(target)};")
        lines.append(f"export const options{panel['id']}: Loose<{plugin}.Options> = {json.dumps(panel.get('options', {}))};")
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None:
            assert has_field_config, f"panel {panel['title']!r}: a {panel['type']} panel has no custom field config"
            lines.append(f"export const custom{panel['id']}: Loose<{plugin}.FieldConfig> = {json.dumps(custom)};")
    return "\n".join(lines) + "\n"


def _type_errors(dashboard: dict[str, Any], packages: Path) -> list[str]:
    """tsc's errors on the dashboard (written beside the packages' node_modules, which is where tsc resolves imports)."""
    work = Path(tempfile.mkdtemp(prefix="check-", dir=packages))
    try:
        (work / "dashboard.ts").write_text(_typescript(dashboard), encoding="utf-8")
        (work / "tsconfig.json").write_text(json.dumps({
            "compilerOptions": {"strict": True, "noEmit": True, "skipLibCheck": True, "target": "es2020", "module": "commonjs",
                                "moduleResolution": "node", "types": [], "pretty": False},
            "files": ["dashboard.ts"],
        }), encoding="utf-8")
        done = subprocess.run([str(packages / "node_modules/.bin/tsc"), "-p", str(work / "tsconfig.json")],
                              capture_output=True, text=True, timeout=300, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error TS" in line]
    assert done.returncode == 0 or errors, done.stdout + done.stderr  # failed, and said why
    return errors


def test_the_dashboard_is_valid_against_grafanas_own_schema(dashboard: dict[str, Any], schema_packages: Path, tmp_path: Path) -> None:
    errors = _type_errors(dashboard, schema_packages)
    assert errors == [], "\n".join(errors)


def _misspelled_key(dashboard: dict[str, Any]) -> None:
    panel = next(p for p in _panels(dashboard["panels"]) if p["type"] == "timeseries")
    panel["gridpos"] = panel.pop("gridPos")


def _unknown_enum_value(dashboard: dict[str, Any]) -> None:
    next(p for p in _panels(dashboard["panels"]) if p["type"] == "timeseries")["options"]["legend"]["displayMode"] = "sideways"


def _misspelled_option(dashboard: dict[str, Any]) -> None:
    panel = next(p for p in _panels(dashboard["panels"]) if p.get("fieldConfig", {}).get("defaults", {}).get("custom"))
    panel["fieldConfig"]["defaults"]["custom"]["stacking"] = {"mode": "normal", "grup": "x"}


def _missing_required_field(dashboard: dict[str, Any]) -> None:
    del dashboard["templating"]["list"][0]["name"]


def _misspelled_query_field(dashboard: dict[str, Any]) -> None:
    target = dashboard["annotations"]["list"][-1]["target"]
    target["rawSQL"] = target.pop("rawSql")


def _wrong_type(dashboard: dict[str, Any]) -> None:
    dashboard["panels"][1]["gridPos"]["w"] = "12"


@pytest.mark.parametrize(("break_it", "expected"), [
    (_misspelled_key, "'\"gridpos\"' does not exist"),
    (_unknown_enum_value, "'\"sideways\"' is not assignable"),
    (_misspelled_option, "'\"grup\"' does not exist"),
    (_missing_required_field, "Property 'name' is missing"),
    (_misspelled_query_field, "'\"rawSQL\"' does not exist"),
    (_wrong_type, "Type 'string' is not assignable to type 'number'"),
])
def test_the_schema_check_fails_on_what_grafana_would_not_read(
    dashboard: dict[str, Any], schema_packages: Path, break_it: Any, expected: str
) -> None:
    broken = copy.deepcopy(dashboard)
    break_it(broken)
    errors = "\n".join(_type_errors(broken, schema_packages))
    assert expected in errors, errors


def _report_sections(tmp_path: Path) -> set[str]:
    """The section headings of a report with every section filled (from the report itself, not a copy)."""
    window = ModelWindow("m", "v1", 0, 60_000, 10, 9, 1, (("out_of_range", 1),))
    feature = FeatureWindow(model="m", model_version="v1", feature="score", kind="numeric", window_start_ms=0, window_length_ms=60_000,
                            count=9, nulls=0, non_finite=0, out_of_range=0, unseen=0, minimum=0.0, maximum=1.0, mean=0.5,
                            variance=0.1, psi=0.1, jensen_shannon=0.01, ks=0.05, wasserstein=0.1, psi_threshold=0.2)
    alert = Alert(alert_id="a", model="m", model_version="v1", kind="distribution_drift", feature="score", detector="psi",
                  severity="warning", window_start_ms=0, event_time_ms=60_000, score=0.3, threshold=0.2, message="m")
    performance = PerformanceWindow(model="m", task="classification", window_start_ms=0, window_length_ms=60_000, count=30,
                                    invalid_labels=0, accuracy=0.8, precision=0.8, recall=0.8, f1=0.8, log_loss=0.5,
                                    true_positives=12, false_positives=3, true_negatives=12, false_negatives=3, mae=None, rmse=None)
    page = write_report(tmp_path / "r.html", title="t", feature_windows=[feature], alerts=[alert], model_windows=[window],
                        summary={"a": 1}, prediction_features=["score"], performance_windows=[performance]).read_text()
    return {re.sub(r" \(\d+\)$", "", html.unescape(h)) for h in re.findall(r"<h2>([^<]+)</h2>", page)}


def test_every_panel_of_the_report_has_a_grafana_counterpart_reading_the_same_windows(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    sections = _report_sections(tmp_path)
    assert {"Drift scores", "Alert timeline", "Events per window", "Performance from labels", "Alerts"} <= sections
    counterparts: dict[str, list[dict[str, Any]]] = {}
    for panel in _panels(dashboard["panels"]):
        found = COUNTERPART.search(panel.get("description", ""))
        if found:
            assert found.group(1) in sections, f"panel {panel['title']!r} names a report section that does not exist: {found.group(1)!r}"
            counterparts.setdefault(found.group(1), []).append(panel)
    assert set(counterparts) == sections - NOT_A_PANEL
    for section, panels in counterparts.items():
        # The report's windows are event time, from the database: each section has a panel over the analyst views.
        assert any(p["datasource"]["type"] == "grafana-postgresql-datasource" for p in panels), section


def sql_targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(title, SQL) of every SQL query of the dashboard: panels, variables, annotations."""
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if "rawSql" in target:
                yield panel["title"], target["rawSql"]
    for variable in dashboard["templating"]["list"]:
        if variable["datasource"]["type"] == "grafana-postgresql-datasource":
            yield variable["name"], variable["query"]
    for annotation in dashboard["annotations"]["list"]:
        if "rawSql" in annotation.get("target", {}):
            yield annotation["name"], annotation["target"]["rawSql"]


def test_the_sql_panels_read_only_the_analyst_views(dashboard: dict[str, Any]) -> None:
    from driftline.sinks.database import ANALYST_VIEWS

    queries = list(sql_targets(dashboard))
    assert len(queries) >= 9
    for title, sql in queries:
        sources = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", sql, flags=re.IGNORECASE))
        assert sources and sources <= set(ANALYST_VIEWS), (title, sources)  # what the read-only role may read
        # Only the macros and variables the integration test substitutes (so what it runs is what Grafana runs).
        assert set(re.findall(r"\$\{?[\w:]+", sql)) <= {"$__timeFilter", "${db_model:sqlstring", "${db_run:sqlstring"}, (title, sql)
        if title not in ("db_model", "db_run"):  # (the variables list what there is)
            assert "run = ${db_run:sqlstring}" in sql, f"{title}: a panel must show one run (live by default), not all added up"
