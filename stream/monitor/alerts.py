"""Turns detector signals and window verdicts into incidents: one alert when a problem starts, its resolution when it ends.

A drifting feature keeps its detector firing (a calibrated Page–Hinkley re-signals every ~100 events
while a shift persists) and its windows failing their checks; on-call wants one page per problem,
and to hear when it is over. So signals of one (kind, field) of a model make one *incident*:

* the first signal opens it — the alert is raised then (``admit`` returns True);
* every later signal of the same (kind, field) extends it, however many windows stay drifted, and
  whichever model version the events carry;
* it resolves once ``quiet_ms`` of event time passed without a signal — the hysteresis that keeps a
  score flapping around its threshold in one incident, instead of opening and closing one per
  flap. Its resolution is dated ``quiet_ms`` after its last signal.

Everything is decided on event times, never on batch boundaries or the wall clock, so a replay
opens and resolves the same incidents. "Quiet long enough" is judged on the clock the incident's
signals come in order of (:data:`CLOCKS`): an incident resolves only once no later signal of its
kind can be dated less than ``quiet_ms`` after its last one. The events' watermark would not do for
all: a label-based signal is dated by its label or window, well behind the predictions' watermark,
and judging it on that watermark would resolve or extend it depending on how the reads interleaved.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .results import Alert, AlertKind, AlertResolution, BatchResult, alert_identifier

__all__ = ["AlertGate", "make_alert"]

Key = tuple[str, str]  # (subject, kind): the field ("None" for a model-level alert), or the writer schema of a schema change

#: The clock of each alert kind: what its signals' times are in order of. ``events``: the events'
#: watermark (streaming detectors); ``windows``: the start of the next window to close (window
#: checks, dated by their window's start); ``labels``: how far labels were released in observation
#: order (concept drift, dated by label time); ``compared``: the next window the challenger will be
#: compared on. The engine and the merger say how far each has come (:meth:`AlertGate.resolve_before`).
CLOCKS: dict[str, str] = {
    AlertKind.MEAN_SHIFT.value: "events", AlertKind.SCORE_CHANGE.value: "events", AlertKind.SPREAD_CHANGE.value: "events",
    AlertKind.JOINT_DRIFT.value: "events", AlertKind.SCHEMA_CHANGE.value: "events",
    AlertKind.DISTRIBUTION_DRIFT.value: "windows", AlertKind.DATA_QUALITY.value: "windows", AlertKind.NO_DATA.value: "windows",
    AlertKind.PERFORMANCE_DROP.value: "windows",
    AlertKind.CONCEPT_DRIFT.value: "labels", AlertKind.CHALLENGER_BETTER.value: "compared",
}

_STATE_FORMAT = 2


@dataclass
class _Incident:
    opened_ms: int
    last_ms: int
    signals: int
    alert: Alert | None  # the alert that opened it, once raised
    legacy: bool = False  # restored from a state of format 1, which kept no alert: nothing to resolve


class AlertGate:
    """The model's open incidents (see the module docstring).

    Examples
    --------
    >>> gate = AlertGate(quiet_ms=1000)
    >>> [gate.admit(("age", "mean_shift"), t) for t in (0, 500, 1400, 2600)]
    [True, False, False, True]
    >>> opened = make_alert(model="m", model_version="v1", kind=AlertKind.MEAN_SHIFT, feature="age", detector="page_hinkley",
    ...                     severity="warning", window_start_ms=None, event_time_ms=2600, score=9.0, threshold=5.0, message="…")
    >>> gate.attach(("age", "mean_shift"), opened)
    >>> gate.resolve_before({"events": 4000})
    >>> [(r.alert_id == opened.alert_id, r.resolved_at_ms, r.last_signal_ms, r.signals) for r in gate.take_resolutions()]
    [(True, 3600, 2600, 1)]
    """

    def __init__(self, quiet_ms: int) -> None:
        if quiet_ms < 0:
            raise ValueError(f"quiet_ms must be >= 0, got {quiet_ms}")
        self.quiet_ms = int(quiet_ms)
        self._open: dict[Key, _Incident] = {}
        self._unattached: dict[Key, tuple[int, int, int]] = {}  # resolved (at, last signal, signals) before its alert was raised
        self._resolved: list[tuple[Key, AlertResolution]] = []

    def admit(self, key: Key, event_time_ms: int) -> bool:
        """Record a signal; True when it opens a new incident (so an alert should be raised)."""
        incident = self._open.get(key)
        if incident is not None and event_time_ms - incident.last_ms > self.quiet_ms:
            self._resolve(key, incident)
            incident = None
        if incident is None:
            self._open[key] = _Incident(event_time_ms, event_time_ms, 1, None)
            return True
        # max() keeps the incident open on out-of-order signals instead of moving its end backwards.
        incident.last_ms = max(incident.last_ms, event_time_ms)
        incident.signals += 1
        return False

    def attach(self, key: Key, alert: Alert) -> None:
        """The alert that opened the incident of ``key`` was raised (a score alert waits for its window)."""
        incident = self._open.get(key)
        if incident is not None and incident.alert is None and not incident.legacy:
            incident.alert = alert
            return
        resolved = self._unattached.pop(key, None)
        if resolved is not None:
            self._resolved.append((key, AlertResolution(alert, *resolved)))

    def resolve_before(self, clocks: dict[str, float | None]) -> None:
        """Resolve the incidents whose last signal is more than the quiet period behind their kind's clock.

        ``clocks``: how far each clock of :data:`CLOCKS` has come (a clock missing, ``None`` or ``-inf``:
        not yet known — its incidents stay open). No signal of the kind can come dated before its clock.
        """
        due = []
        for key, incident in self._open.items():
            clock = clocks.get(CLOCKS.get(key[1], "events"))
            if clock is not None and clock - incident.last_ms > self.quiet_ms:
                due.append(key)
        for key in sorted(due):
            self._resolve(key, self._open[key])

    def _resolve(self, key: Key, incident: _Incident) -> None:
        del self._open[key]
        ended = (incident.last_ms + self.quiet_ms, incident.last_ms, incident.signals)
        if incident.legacy:
            return  # (a restored incident of format 1 has no alert to resolve)
        if incident.alert is None:
            self._unattached[key] = ended
        else:
            self._resolved.append((key, AlertResolution(incident.alert, *ended)))

    def report(self, clocks: dict[str, float | None], result: BatchResult) -> None:
        """Resolve what ``clocks`` allow (:meth:`resolve_before`); put the resolutions and the open incidents in ``result``."""
        self.resolve_before(clocks)
        result.resolved_alerts.extend(self.take_resolutions())
        result.open_alerts = self.open_alerts()

    def take_resolutions(self) -> list[AlertResolution]:
        """The incidents resolved since the last call, in the order they resolved."""
        taken, self._resolved = self._resolved, []
        return [resolution for _, resolution in taken]

    def open_alerts(self) -> list[tuple[str, str, str | None]]:
        """(alert id, kind, field or None) of every open incident whose alert was raised."""
        return sorted((incident.alert.alert_id, key[1], None if key[0] == "None" or key[0].startswith("schema ") else key[0])
                      for key, incident in self._open.items() if incident.alert is not None)

    def to_state(self) -> dict[str, Any]:
        return {
            "format": _STATE_FORMAT,
            "open": [[*key, i.opened_ms, i.last_ms, i.signals, None if i.alert is None else _alert_to_dict(i.alert), i.legacy]
                     for key, i in sorted(self._open.items())],
            "unattached": [[*key, *ended] for key, ended in sorted(self._unattached.items())],
        }

    def restore(self, state: Any) -> None:
        self._open, self._unattached, self._resolved = {}, {}, []
        if isinstance(state, list):  # format 1: (version, field, episode) -> last signal; no alert id kept
            for *parts, last in state:
                key = (str(parts[-2]), str(parts[-1]))
                previous = self._open.get(key)
                if previous is None or int(last) > previous.last_ms:
                    self._open[key] = _Incident(int(last), int(last), 1, None, legacy=True)
            return
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"alert-gate state format {state.get('format')!r} is not {_STATE_FORMAT}")
        for feature, kind, opened, last, signals, alert, legacy in state["open"]:
            self._open[(str(feature), str(kind))] = _Incident(int(opened), int(last), int(signals),
                                                              None if alert is None else _alert_from_dict(alert), bool(legacy))
        for feature, kind, resolved, last, signals in state["unattached"]:
            self._unattached[(str(feature), str(kind))] = (int(resolved), int(last), int(signals))


def _alert_to_dict(alert: Alert) -> dict[str, Any]:
    """Strict JSON (a non-finite score or threshold as its repr)."""
    data = dataclasses.asdict(alert)
    for name in ("score", "threshold"):
        if not math.isfinite(data[name]):
            data[name] = repr(data[name])
    return data


def _alert_from_dict(data: dict[str, Any]) -> Alert:
    return Alert(**{**data, "score": float(data["score"]), "threshold": float(data["threshold"])})


def make_alert(
    *,
    model: str,
    model_version: str,
    kind: AlertKind,
    feature: str | None,
    detector: str,
    severity: str,
    window_start_ms: int | None,
    event_time_ms: int,
    score: float,
    threshold: float,
    message: str,
    subject: str | None = None,
) -> Alert:
    """Build an :class:`Alert` whose id is derived from its natural key.

    ``subject`` tells apart alerts that share every other part of the key — two writer schemas
    first seen in the same batch raise two schema-change alerts, not one.
    """
    parts: tuple[object, ...] = (model, model_version, kind, feature, detector, window_start_ms, event_time_ms)
    alert_id = alert_identifier(*parts) if subject is None else alert_identifier(*parts, subject)
    return Alert(
        alert_id=alert_id,
        model=model,
        model_version=model_version,
        kind=kind.value,
        feature=feature,
        detector=detector,
        severity=severity,
        window_start_ms=window_start_ms,
        event_time_ms=int(event_time_ms),
        score=float(score),
        threshold=float(threshold),
        message=message,
    )
