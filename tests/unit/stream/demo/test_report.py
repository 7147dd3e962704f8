"""The HTML report: self-contained, escaped, well-formed, deterministic, and fine with no data."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

from driftline.stream.demo.report import MAX_DRIFT_PANELS, _select_drift_panels, write_report
from driftline.stream.monitor.results import Alert, FeatureWindow, ModelWindow, alert_identifier

START_MS = 1_700_000_040_000
MINUTE_MS = 60_000
HOSTILE = "<script>alert('x')</script> & \"quoted\" <img src=https://evil.example/a.png>"


def feature_window(feature: str, window: int, psi: float | None, model: str = "churn") -> FeatureWindow:
    return FeatureWindow(
        model=model, model_version="v1", feature=feature, kind="numeric",
        window_start_ms=START_MS + window * MINUTE_MS, window_length_ms=MINUTE_MS,
        count=100, nulls=0, non_finite=0, out_of_range=0, unseen=0,
        minimum=0.0, maximum=1.0, mean=0.5, variance=0.1,
        psi=psi, jensen_shannon=0.01, ks=0.05, wasserstein=0.1, psi_threshold=0.2,
    )


def alert(feature: str | None, window: int, severity: str = "warning", message: str = "drift", **changes: Any) -> Alert:
    values: dict[str, Any] = dict(
        alert_id=alert_identifier(feature, window, severity, message),
        model="churn", model_version="v1", kind="distribution_drift", feature=feature, detector="psi",
        severity=severity, window_start_ms=START_MS + window * MINUTE_MS,
        event_time_ms=START_MS + window * MINUTE_MS + 30_000, score=0.31, threshold=0.2, message=message,
    )
    values.update(changes)
    return Alert(**values)


def run_inputs() -> dict[str, Any]:
    features = ["age", "plan", "income", "score"]
    windows = [
        feature_window(feature, w, None if (feature == "plan" and w == 3) else 0.05 + 0.4 * (feature == "age" and w >= 20))
        for feature in features
        for w in range(40)
    ]
    alerts = [
        alert("age", 21, "critical", message=HOSTILE),
        alert("age", 30, message="second <episode>"),
        alert("plan", 10, message="plan & co"),
        alert(None, 35, kind="no_data", detector="watermark", message="no events for 5 minutes"),
    ]
    model_windows = [
        ModelWindow("churn", "v1", START_MS + w * MINUTE_MS, MINUTE_MS, 100, 95 - (w % 3), 5 + (w % 3), (("wrong_type", 5),))
        for w in range(40)
        if w != 12  # a gap: no events in that window
    ]
    summary = {"events": 3_900, "rejected <by reason>": {"wrong_type": 200}, "verdict": "drift & more"}
    return dict(feature_windows=windows, alerts=alerts, model_windows=model_windows, summary=summary)


class _Balance(HTMLParser):
    """Checks that every opened element is closed, in order (void elements excepted)."""

    VOID: ClassVar[frozenset[str]] = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.script_tags = 0
        self.links: list[str] = []  # every src/href/url-like attribute value

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.script_tags += tag == "script"
        self.links += [value or "" for name, value in attrs if name in {"src", "href", "srcset", "action", "data"}]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def parse(text: str) -> _Balance:
    parser = _Balance()
    parser.feed(text)
    parser.close()
    return parser


def test_report_is_self_contained_escaped_and_well_formed(tmp_path: Path) -> None:
    inputs = run_inputs()
    path = write_report(tmp_path / "nested" / "report.html", title="Run <1> & co", **inputs)
    assert path == tmp_path / "nested" / "report.html" and path.is_file()
    text = path.read_text(encoding="utf-8")

    assert text.startswith("<!DOCTYPE html>")
    assert text.count("data:image/png;base64,") == 3  # drift panels, timeline, events
    checked = parse(text)
    assert checked.errors == [] and checked.stack == []
    assert checked.script_tags == 0
    # No reference to anything outside the file; the only URL is the text of a hostile message.
    assert len(checked.links) == 3 and all(link.startswith("data:image/png;base64,") for link in checked.links)
    assert not re.search(r"https?://", text.replace(html.escape(HOSTILE, quote=True), ""))

    assert "<title>Run &lt;1&gt; &amp; co</title>" in text
    for message in (a.message for a in inputs["alerts"]):
        assert html.escape(message, quote=True) in text
    assert HOSTILE not in text and "second <episode>" not in text
    assert "rejected &lt;by reason&gt;" in text and "drift &amp; more" in text
    assert "{&quot;wrong_type&quot;: 200}" in text
    assert text.count('<td class="critical">critical</td>') == 1


def test_report_with_no_data(tmp_path: Path) -> None:
    path = write_report(tmp_path / "empty.html", title="empty", feature_windows=[], alerts=[], model_windows=[], summary={})
    text = path.read_text(encoding="utf-8")
    assert "data:image/png" not in text
    assert "No alerts." in text and "No closed windows." in text and "No summary." in text
    checked = parse(text)
    assert checked.errors == [] and checked.stack == []


def test_report_of_windows_without_alerts_still_plots_the_prediction(tmp_path: Path) -> None:
    inputs = run_inputs()
    path = write_report(tmp_path / "quiet.html", title="quiet", **{**inputs, "alerts": []})
    text = path.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 2  # drift (the score) and events; no timeline
    assert "No alerts." in text


def test_same_inputs_give_the_same_file(tmp_path: Path) -> None:
    inputs = run_inputs()
    first = write_report(tmp_path / "a.html", title="t", **inputs).read_bytes()
    shuffled = {**inputs, "alerts": list(reversed(inputs["alerts"])), "feature_windows": list(reversed(inputs["feature_windows"]))}
    assert write_report(tmp_path / "b.html", title="t", **shuffled).read_bytes() == first


def test_drift_panels_prediction_first_then_by_alerts_and_capped() -> None:
    windows = [feature_window(f"f{i:02d}", 0, 0.1) for i in range(30)] + [feature_window("score", 0, 0.1)]
    windows.append(feature_window("amount", 0, 0.1, model="fraud"))
    alerts = [alert(f"f{i:02d}", 0, message=f"{i}") for i in range(30)]
    alerts += [alert("f29", 1), alert("f29", 2), alert("f05", 1, "critical"), alert("ghost", 1)]
    alerts += [alert("amount", 1, model="fraud"), alert("amount", 2, model="fraud")]
    panels = _select_drift_panels(windows, alerts, prediction_features=("score",))
    assert len(panels) == MAX_DRIFT_PANELS
    assert panels[:4] == [("churn", "score"), ("churn", "f05"), ("churn", "f29"), ("fraud", "amount")]
    assert panels[4:] == [("churn", f"f{i:02d}") for i in (0, 1, 2, 3, 4, 6, 7, 8)]
    assert ("churn", "ghost") not in panels  # an alert without windows has nothing to plot


def test_windows_with_rejected_events_are_listed_with_their_reasons(tmp_path: Path) -> None:
    def window(minute: int, version: str, events: int, rejected: dict[str, int]) -> ModelWindow:
        count = sum(rejected.values())
        return ModelWindow("churn", version, START_MS + minute * MINUTE_MS, MINUTE_MS, events, events - count, count,
                           tuple(sorted(rejected.items())))

    windows = [window(m, "v1", 100, {}) for m in range(40)]  # clean windows are not listed
    windows += [window(m, "v2", 600, {"missing_field": 600}) for m in range(50, 90)]  # a rename: 40 windows all rejected
    windows += [window(50, "v1", 10, {"out_of_range": 3})]  # a second version in one of them: added up
    windows += [window(95, "v1", 100, {"out_of_range": 1})]  # the least rejected window: beyond the 30 listed
    text = write_report(tmp_path / "r.html", title="t", feature_windows=[], alerts=[], model_windows=windows, summary={}).read_text()
    assert "24,004 rejected events in 41 window(s) (missing_field: 24,000, out_of_range: 4); the 30 with the most:" in text
    rows = re.findall(r"<tr><td>([^<]+)</td><td>churn</td><td class=\"number\">([\d,]+)</td><td class=\"number\">([\d,]+)</td>"
                      r"<td>([^<]*)</td></tr>", text)
    assert len(rows) == 30
    assert rows[0] == (_time(50), "610", "603", "missing_field: 600, out_of_range: 3")
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)  # in time order
    assert all(row[1:] == ("600", "600", "missing_field: 600") for row in rows[1:])
    assert _time(95) not in [row[0] for row in rows]
    assert "No window has rejected events." in write_report(
        tmp_path / "c.html", title="t", feature_windows=[], alerts=[], model_windows=windows[:40], summary={}).read_text()


def _time(minute: int) -> str:
    from driftline.stream.demo.report import _format_time

    return _format_time(START_MS + minute * MINUTE_MS)
