"""A single self-contained HTML report of a monitoring run.

The report is one file with the plots embedded as base64 PNG images and the styles inline, so it
can be attached to a ticket or opened offline: it references no external URL. Plots are drawn with
matplotlib's object-oriented API on an Agg canvas (see :func:`write_report` for why no backend is
switched).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from driftline.stream.monitor.results import Alert, AlertResolution, FeatureWindow, ModelWindow, PerformanceWindow

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MAX_DRIFT_PANELS", "write_report"]

#: At most this many drift panels; more would no longer be readable at a glance.
MAX_DRIFT_PANELS = 12
_MAX_TIMELINE_ROWS = 30
_MAX_EVENT_PANELS = 6
#: The windows with rejected events listed under the events panel (the busiest ones).
_MAX_REJECTED_ROWS = 30
_SEVERITY_COLOURS = {"critical": "#c62828", "warning": "#ef8f00"}
_OTHER_SEVERITY_COLOUR = "#757575"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_PER_DAY = 86_400_000

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #212121; max-width: 80rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
img { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.number { text-align: right; font-variant-numeric: tabular-nums; }
.critical { color: #c62828; font-weight: 600; } .warning { color: #ef8f00; font-weight: 600; }
.empty { color: #757575; font-style: italic; } .note { color: #757575; font-size: 0.85rem; }
"""


def write_report(
    path: str | Path,
    *,
    title: str,
    feature_windows: Sequence[FeatureWindow],
    alerts: Sequence[Alert],
    model_windows: Sequence[ModelWindow],
    summary: Mapping[str, object],
    prediction_features: Collection[str] = ("score", "prediction"),
    performance_windows: Sequence[PerformanceWindow] = (),
    resolutions: Sequence[AlertResolution] = (),
) -> Path:
    """Write the HTML report of a run to ``path`` and return it.

    Sections: PSI per window against its threshold for the prediction fields and for every feature
    with an alert (at most :data:`MAX_DRIFT_PANELS` panels); a timeline of the alerts; accepted and
    rejected events per window (stacked, the rejected in red), and the windows with rejected events
    with their reasons; realised accuracy per window of prediction time, when labels were joined;
    the alerts as a table; the ``summary`` as a table.

    Parameters
    ----------
    path
        Where to write the file; missing parent directories are created.
    title
        Heading of the report.
    feature_windows, alerts, model_windows
        The engine's closed windows and alerts of the run (any order).
    performance_windows
        Realised performance per window from joined labels (a window's latest record counts); the
        section is left out without any.
    resolutions
        The ends of the incidents the alerts opened: the timeline draws each incident from its alert
        to its resolution (an alert without one is still open).
    summary
        Figures of the run shown as a two-column table, in the mapping's order; values that are
        not strings are shown as JSON.
    prediction_features
        Field names that are model outputs: their drift panels are always shown, first.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Figures are rendered on matplotlib's Agg canvas through the object-oriented API, without
    ``matplotlib.use("Agg")``: that call switches pyplot's global backend and closes the caller's
    open figures (e.g. in a notebook), and the Agg canvas needs no display either way.
    """
    # Imported here: the report is an occasional command, the worker should not pay for matplotlib.
    import matplotlib

    feature_windows = list(feature_windows)
    alerts = sorted(alerts, key=lambda alert: (alert.event_time_ms, alert.alert_id))
    model_windows = list(model_windows)
    panels = _select_drift_panels(feature_windows, alerts, prediction_features)

    # parse_math off: a "$" in a feature name must not be read as TeX (and fail to render).
    with matplotlib.rc_context({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7, "text.parse_math": False}):
        drift = _drift_section(feature_windows, alerts, panels)
        timeline = _timeline_section(alerts, {r.alert_id: r.resolved_at_ms for r in resolutions})
        events = _events_section(model_windows)
        performance = _performance_section(performance_windows, alerts) if performance_windows else ""

    body = [
        f"<h1>{_escape(title)}</h1>",
        f'<p class="note">{_escape(_coverage(feature_windows, model_windows, alerts))}</p>',
        "<h2>Drift scores</h2>",
        drift,
        "<h2>Alert timeline</h2>",
        timeline,
        "<h2>Events per window</h2>",
        events,
        *(["<h2>Performance from labels</h2>", performance] if performance else []),
        f"<h2>Alerts ({len(alerts)})</h2>",
        _alerts_table(alerts),
        "<h2>Summary</h2>",
        _summary_table(summary),
    ]
    document = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{_escape(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document, encoding="utf-8")
    return target


# -- choices ------------------------------------------------------------------------------------


def _select_drift_panels(
    feature_windows: Sequence[FeatureWindow], alerts: Sequence[Alert], prediction_features: Collection[str]
) -> list[tuple[str, str]]:
    """(model, feature) panels: prediction fields first, then features by alert count; deterministic."""
    available = {(window.model, window.feature) for window in feature_windows}
    predictions = sorted(key for key in available if key[1] in prediction_features)
    critical: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    for alert in alerts:
        if alert.feature is not None and (alert.model, alert.feature) in available:
            total[(alert.model, alert.feature)] += 1
            critical[(alert.model, alert.feature)] += int(alert.severity == "critical")
    alerted = sorted(
        (key for key in total if key not in predictions), key=lambda key: (-critical[key], -total[key], key)
    )
    return (predictions + alerted)[:MAX_DRIFT_PANELS]


def _coverage(feature_windows: Sequence[FeatureWindow], model_windows: Sequence[ModelWindow], alerts: Sequence[Alert]) -> str:
    starts = [w.window_start_ms for w in feature_windows] + [w.window_start_ms for w in model_windows]
    ends = [w.window_start_ms + w.window_length_ms for w in feature_windows]
    ends += [w.window_start_ms + w.window_length_ms for w in model_windows]
    models = sorted({w.model for w in feature_windows} | {w.model for w in model_windows} | {a.model for a in alerts})
    if not starts:
        return "No closed windows."
    return (
        f"{len({(w.model, w.window_start_ms) for w in model_windows})} model windows, "
        f"{len(feature_windows)} feature windows of {len(models)} model(s) ({', '.join(models)}), "
        f"from {_format_time(min(starts))} to {_format_time(max(ends))}."
    )


# -- figures --------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Fixed margins (set by each section) instead of constrained layout: a third of the run time.
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _margins(figure: Figure, *, left: float = 0.6, right: float = 0.2, top: float = 0.35, bottom: float = 0.45,
             hspace: float = 0.0, wspace: float = 0.0) -> None:
    """Margins in inches (so they do not depend on the figure's size)."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
        hspace=hspace, wspace=wspace,
    )


def _image(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    # No "Software" metadata: the report stays free of any URL, even inside the image.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{_escape(alt)}" src="data:image/png;base64,{encoded}">'


def _date_numbers(milliseconds: Iterable[int]) -> np.ndarray:
    from matplotlib import dates

    # Matplotlib's date numbers are days since its epoch (1970-01-01 unless reconfigured).
    # matplotlib.dates is not annotated (matplotlib's own stubs leave these functions untyped).
    return np.asarray(dates.date2num(np.asarray(list(milliseconds), dtype="datetime64[ms]")), dtype=float)  # type: ignore[no-untyped-call]


def _date_axis(axes: Axes) -> None:
    from matplotlib import dates

    # maxticks 7, not 6: with 6, ranges of about 2.5-3 hours have no interval that fits and matplotlib warns.
    locator = dates.AutoDateLocator(minticks=3, maxticks=7, tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]


def _severity_colour(severity: str) -> str:
    return _SEVERITY_COLOURS.get(severity, _OTHER_SEVERITY_COLOUR)


def _number_or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _drift_section(
    feature_windows: Sequence[FeatureWindow], alerts: Sequence[Alert], panels: Sequence[tuple[str, str]]
) -> str:
    if not panels:
        return '<p class="empty">No drift panels: no prediction field and no feature with an alert.</p>'
    windows_by_panel: dict[tuple[str, str], list[FeatureWindow]] = defaultdict(list)
    for window in feature_windows:
        windows_by_panel[(window.model, window.feature)].append(window)
    alerts_by_panel: dict[tuple[str, str], list[Alert]] = defaultdict(list)
    for alert in alerts:
        if alert.feature is not None:
            alerts_by_panel[(alert.model, alert.feature)].append(alert)
    several_models = len({model for model, _ in panels}) > 1

    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = _new_figure(4.2 * columns, 2.3 * rows)
    _margins(figure, left=0.5, hspace=0.75, wspace=0.25)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        if index >= len(panels):
            axes.set_visible(False)
            continue
        model, feature = panels[index]
        windows = sorted(windows_by_panel[(model, feature)], key=lambda w: (w.window_start_ms, w.model_version))
        x = _date_numbers(w.window_start_ms for w in windows)
        axes.plot(x, [_number_or_nan(w.psi) for w in windows], color="#1565c0", linewidth=1.2, label="PSI")
        thresholds = [_number_or_nan(w.psi_threshold) for w in windows]
        if not all(math.isnan(t) for t in thresholds):
            axes.plot(x, thresholds, color="#616161", linewidth=1.0, linestyle="--", label="threshold")
        marks = alerts_by_panel.get((model, feature), [])
        if marks:
            axes.vlines(
                _date_numbers(a.event_time_ms for a in marks),
                0,
                1,
                transform=axes.get_xaxis_transform(),
                colors=[_severity_colour(a.severity) for a in marks],
                linewidth=0.9,
                alpha=0.8,
            )
        axes.set_title(f"{model} / {feature}" if several_models else feature)
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        _date_axis(axes)
        if index == 0:
            axes.legend(loc="upper left")
    note = "PSI of each closed window (solid), its threshold (dashed); vertical lines: alerts (orange warning, red critical)."
    return f'<p class="note">{note}</p>\n' + _image(figure, "PSI per window and feature")


def _timeline_section(alerts: Sequence[Alert], resolved_at: Mapping[str, int] | None = None) -> str:
    if not alerts:
        return '<p class="empty">No alerts.</p>'
    rows_of = Counter(_timeline_row(alert) for alert in alerts)
    # The busiest rows get their own line; the rest share one, so the figure stays readable.
    kept = sorted(sorted(rows_of, key=lambda row: (-rows_of[row], row))[:_MAX_TIMELINE_ROWS])
    overflow = len(rows_of) - len(kept)
    labels = kept + ([f"{overflow} other rows"] if overflow else [])
    position = {label: index for index, label in enumerate(labels)}

    figure = _new_figure(11.0, 1.0 + 0.28 * len(labels))
    # Room for the longest row label at about 0.065 inch per character of the 8 pt font.
    _margins(figure, left=0.2 + 0.065 * max(len(label) for label in labels), top=0.35)
    axes = figure.subplots()
    for alert in alerts:  # an incident: from its alert to its resolution
        end = (resolved_at or {}).get(alert.alert_id)
        if end is not None:
            row = position.get(_timeline_row(alert), len(labels) - 1)
            axes.plot(_date_numbers([alert.event_time_ms, end]), [row, row], color=_severity_colour(alert.severity), linewidth=2.0,
                      alpha=0.45, solid_capstyle="butt")
    for severity in sorted({alert.severity for alert in alerts}):
        chosen = [alert for alert in alerts if alert.severity == severity]
        y = [position.get(_timeline_row(alert), len(labels) - 1) for alert in chosen]
        axes.scatter(
            _date_numbers(a.event_time_ms for a in chosen), y, s=22, marker="D", color=_severity_colour(severity), label=severity
        )
    axes.set_yticks(range(len(labels)), labels)
    axes.set_ylim(len(labels) - 0.5, -0.5)
    axes.grid(True, axis="x", alpha=0.3)
    # Above the plot, so the legend never hides an alert in a corner.
    axes.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    _date_axis(axes)
    return _image(figure, "alerts over time by kind and feature")


def _timeline_row(alert: Alert) -> str:
    return f"{alert.kind} · {alert.feature}" if alert.feature else alert.kind


def _events_section(model_windows: Sequence[ModelWindow]) -> str:
    if not model_windows:
        return '<p class="empty">No closed windows.</p>'
    by_model: dict[str, dict[int, list[int]]] = defaultdict(dict)
    lengths: dict[str, int] = {}
    for window in model_windows:
        # Versions of a model sharing a window (a deployment mid-window) are added up.
        counts = by_model[window.model].setdefault(window.window_start_ms, [0, 0])
        counts[0] += window.accepted
        counts[1] += window.rejected
        lengths[window.model] = min(window.window_length_ms, lengths.get(window.model, window.window_length_ms))
    models = sorted(by_model)[:_MAX_EVENT_PANELS]
    figure = _new_figure(11.0, 2.2 * len(models))
    _margins(figure, hspace=0.55)
    grid = figure.subplots(len(models), 1, squeeze=False)
    for axes, model in zip(grid[:, 0], models):
        starts = sorted(by_model[model])
        # Steps rather than bars: two artists instead of one rectangle per window (much faster).
        edges, accepted, rejected = _steps(starts, lengths[model], by_model[model])
        x = _date_numbers(edges)
        axes.stairs(accepted, x, fill=True, color="#43a047", label="accepted")
        axes.stairs(accepted + rejected, x, baseline=accepted, fill=True, color="#e53935", label="rejected")
        axes.set_ylim(bottom=0)
        axes.set_title(model)
        axes.set_ylabel("events")
        axes.grid(True, axis="y", alpha=0.3)
        # Above the plot: a full window would hide the legend's corner of it.
        axes.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
        _date_axis(axes)
    note = "" if len(by_model) <= len(models) else f'<p class="note">First {len(models)} of {len(by_model)} models.</p>\n'
    return note + _image(figure, "accepted and rejected events per window") + "\n" + _rejections_table(model_windows)


def _rejections_table(model_windows: Sequence[ModelWindow]) -> str:
    """The windows with rejected events (the busiest :data:`_MAX_REJECTED_ROWS`, in time order), with their reasons."""
    merged: dict[tuple[str, int], list[int]] = {}
    reasons: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    for window in model_windows:
        key = (window.model, window.window_start_ms)
        counts = merged.setdefault(key, [0, 0])
        counts[0] += window.events
        counts[1] += window.rejected
        reasons[key].update(dict(window.rejected_by_reason))
    rejected = [key for key, (_, count) in merged.items() if count]
    total = sum(merged[key][1] for key in rejected)
    if not rejected:
        return '<p class="note">No window has rejected events.</p>'
    shown = sorted(sorted(rejected, key=lambda key: (-merged[key][1], key))[:_MAX_REJECTED_ROWS])
    by_reason = Counter[str]()
    for key in rejected:
        by_reason.update(reasons[key])
    lines = [
        f'<p class="note">{total:,} rejected events in {len(rejected):,} window(s) ('
        + ", ".join(f"{reason}: {count:,}" for reason, count in by_reason.most_common())
        + ")" + (f"; the {len(shown)} with the most:" if len(shown) < len(rejected) else ":") + "</p>",
        '<table class="rejections">',
        "<tr><th>window (UTC)</th><th>model</th><th>events</th><th>rejected</th><th>reasons</th></tr>",
    ]
    for key in shown:
        events, count = merged[key]
        reason_text = ", ".join(f"{reason}: {n:,}" for reason, n in reasons[key].most_common())
        lines.append(
            f"<tr><td>{_escape(_format_time(key[1]))}</td><td>{_escape(key[0])}</td>"
            f'<td class="number">{events:,}</td><td class="number">{count:,}</td><td>{_escape(reason_text)}</td></tr>'
        )
    lines.append("</table>")
    return "\n".join(lines)


#: A performance point needs this many labelled predictions in its window.
_MIN_LABELLED = 20


def _performance_section(performance_windows: Sequence[PerformanceWindow], alerts: Sequence[Alert]) -> str:
    latest: dict[tuple[str, int], PerformanceWindow] = {}
    for window in performance_windows:  # a window is reported again as its labels arrive: the last one counts
        latest[(window.model, window.window_start_ms)] = window
    models = sorted({model for model, _ in latest})[:_MAX_EVENT_PANELS]
    figure = _new_figure(11.0, 2.2 * len(models))
    _margins(figure, hspace=0.55)
    grid = figure.subplots(len(models), 1, squeeze=False)
    for axes, model in zip(grid[:, 0], models):
        windows = {w.window_start_ms: w for (m, _), w in latest.items() if m == model}
        first, length = min(windows), min(w.window_length_ms for w in windows.values())
        regression = next(iter(windows.values())).task == "regression"
        # Every window on the grid: a gap (no labelled predictions) or a window too thin to say
        # anything breaks the line instead of being drawn as a value.
        starts = list(range(first, max(windows) + 1, length))
        values = [
            _number_or_nan(w.mae if regression else w.accuracy) if (w := windows.get(start)) and w.count >= _MIN_LABELLED else math.nan
            for start in starts
        ]
        axes.plot(_date_numbers(starts), values, color="#6a1b9a", linewidth=1.2,
                  label=("MAE" if regression else "accuracy") + f" (windows with {_MIN_LABELLED}+ labels)")
        if not regression:
            estimated = [
                _number_or_nan(w.estimated_accuracy) if (w := windows.get(start)) and w.predictions >= _MIN_LABELLED else math.nan
                for start in starts
            ]
            if not all(math.isnan(v) for v in estimated):
                axes.plot(_date_numbers(starts), estimated, color="#00897b", linewidth=1.0, linestyle="--",
                          label="accuracy estimated from the scores (before labels)")
        for alert in alerts:
            if alert.model == model and alert.kind == "concept_drift":
                axes.axvline(_date_numbers([alert.event_time_ms])[0], color="#e53935", linewidth=1.0,
                             label="concept_drift alert (at the label's time)")
        axes.set_title(f"{model}: {'MAE' if regression else 'accuracy'} per window of prediction time (labels joined)")
        axes.set_ylabel("MAE" if regression else "accuracy")
        axes.grid(True, axis="y", alpha=0.3)
        axes.legend(loc="lower left")
        _date_axis(axes)
    return _image(figure, "realised performance per window from joined labels")


def _steps(
    starts: Sequence[int], length_ms: int, counts: Mapping[int, Sequence[int]]
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Step edges and (accepted, rejected) heights; a gap between windows becomes a zero step."""
    edges = [starts[0]]
    accepted: list[float] = []
    rejected: list[float] = []
    for start in starts:
        if start > edges[-1]:
            edges.append(start)
            accepted.append(0.0)
            rejected.append(0.0)
        # Overlapping windows (mixed lengths) are drawn from the previous edge: still increasing.
        edges.append(max(start + length_ms, edges[-1] + 1))
        accepted.append(float(counts[start][0]))
        rejected.append(float(counts[start][1]))
    return edges, np.array(accepted), np.array(rejected)


# -- tables ---------------------------------------------------------------------------------------


def _alerts_table(alerts: Sequence[Alert]) -> str:
    if not alerts:
        return '<p class="empty">No alerts.</p>'
    header = ("time (UTC)", "model", "version", "kind", "feature", "detector", "severity", "score", "threshold", "message")
    lines = ["<table>", "<tr>" + "".join(f"<th>{_escape(name)}</th>" for name in header) + "</tr>"]
    for alert in alerts:
        severity = _escape(alert.severity)
        cells = [
            f"<td>{_escape(_format_time(alert.event_time_ms))}</td>",
            f"<td>{_escape(alert.model)}</td>",
            f"<td>{_escape(alert.model_version)}</td>",
            f"<td>{_escape(alert.kind)}</td>",
            f"<td>{_escape(alert.feature or '')}</td>",
            f"<td>{_escape(alert.detector)}</td>",
            f'<td class="{severity}">{severity}</td>',
            f'<td class="number">{_format_number(alert.score)}</td>',
            f'<td class="number">{_format_number(alert.threshold)}</td>',
            f"<td>{_escape(alert.message)}</td>",
        ]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _summary_table(summary: Mapping[str, object]) -> str:
    if not summary:
        return '<p class="empty">No summary.</p>'
    lines = ["<table>"]
    for key, value in summary.items():
        shown = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        lines.append(f"<tr><th>{_escape(str(key))}</th><td>{_escape(shown)}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _format_time(milliseconds: int) -> str:
    return (_EPOCH + timedelta(milliseconds=int(milliseconds))).strftime("%Y-%m-%d %H:%M:%S")


def _format_number(value: float) -> str:
    return _escape(f"{value:.4g}")
