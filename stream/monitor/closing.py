"""Closing a window: its summaries against the reference, its verdicts, gap alerts — and one alert per episode.

Shared by the two places where model-level windows close: the engine of a model on one partition,
and the merger of a model split over partitions (:mod:`~driftline.stream.monitor.merge`), so a window
closes the same way whoever assembled it.

Alerts on the prediction score say where to look: they name the input features that moved most in
the same window, ranked by PSI over its calibrated threshold. A streaming detector's score alert is
therefore held (admitted by the gate at once, emitted later) until the window of its event closes;
its time and id are its event's, and what it names comes from that closed window alone, so any
batching gives the same alert. An alert whose event is late (its window already closed) names none.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driftline.schemas.contract import Contract
from driftline.schemas.results import FieldStatus

from .alerts import AlertGate, make_alert
from .budget import AlarmBudget
from .config import EngineConfig
from .profile import ReferenceProfile
from .results import (
    JOINT_FEATURE,
    AlertKind,
    BatchResult,
    DetectorSignal,
    FeatureWindow,
    ModelWindow,
    SchemaChangeRecord,
    iso_time,
)
from .verdicts import Verdict, feature_window_verdicts, format_number, model_window_verdicts
from .window_state import FieldWindow, WindowPlace

__all__ = ["HeldScoreAlert", "OpenWindow", "WindowCloser"]

#: The alert kind of each streaming detector's signals, and how its message begins.
_DETECTOR_KINDS = {
    "page_hinkley": AlertKind.MEAN_SHIFT,
    "adwin": AlertKind.SCORE_CHANGE,
    "scale_shift": AlertKind.SPREAD_CHANGE,
    "joint_shift": AlertKind.JOINT_DRIFT,
}
_DETECTOR_FINDINGS = {
    "page_hinkley": "Page-Hinkley detected a mean shift in",
    "adwin": "ADWIN found a change in the mean of",
    "scale_shift": "the spread test found a change in the spread (variance) of",
}


#: A joint-drift alert names this many of the features that changed most; a score alert as many inputs.
JOINT_FEATURES_NAMED = 3
INPUTS_NAMED = 3


@dataclass(frozen=True)
class HeldScoreAlert:
    """A score alert admitted by the gate, waiting for the window of its event to close."""

    signal: DetectorSignal
    threshold: float
    message: str
    window_start_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "signal": dataclasses.asdict(self.signal)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeldScoreAlert:
        return cls(DetectorSignal.from_dict(data["signal"]), float(data["threshold"]), str(data["message"]), int(data["window_start_ms"]))


@dataclass
class OpenWindow:
    """One model version's window: its event counts and the state of every monitored field."""

    version: str
    start_ms: int
    events: int = 0
    accepted: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    features: dict[str, FieldWindow] = field(default_factory=dict)


class WindowCloser:
    """Turns closed windows into results, and admits alerts one per episode (the gate is shared with its owner).

    Parameters
    ----------
    contract, config
        The model's contract and the engine's tunables.
    profile_for
        The reference profile of a model version.
    gate
        The alert gate of the model (the engine's detectors pass their signals through it too).
    """

    def __init__(self, contract: Contract, config: EngineConfig, profile_for: Callable[[str], ReferenceProfile], gate: AlertGate) -> None:
        self.contract = contract
        self.config = config
        self.profile_for = profile_for
        self.gate = gate
        self.fields = contract.monitored_fields
        # Each field's window check gets its share of the model's budget per window.
        budget = AlarmBudget.for_fields(self.fields, config.false_alarms_per_month)
        self.window_false_alarm_rate = budget.per_window_rate(config.window_length_ms)
        self.last_closed_start_ms: int | None = None
        score = contract.find_role("prediction_score")
        self.score_field = None if score is None else score.name
        self.inputs = [f.name for f in self.fields if f.role == "feature"]
        self.held: list[HeldScoreAlert] = []  # score alerts waiting for their window, in admission order

    def close(self, window: OpenWindow, result: BatchResult, *, undated: int = 0) -> None:
        """Close ``window`` (in start order): a gap alert if windows are missing before it, then its results.

        ``undated`` counts rejected events without an event time attributed to the window (they say
        why windows before it were empty).
        """
        self._report_gap(window, undated, result)
        self._close(window, result)

    def _report_gap(self, window: OpenWindow, undated: int, result: BatchResult) -> None:
        length = self.config.window_length_ms
        last = self.last_closed_start_ms
        if last is not None and window.start_ms > last + length:
            missing = (window.start_ms - last) // length - 1
            rejected = (
                f"; {undated} events without a readable event time (undecodable, or of a writer schema that "
                "lacks it) were rejected meanwhile "
                "(see the dead-letter topic and schema-change alerts)"
                if undated
                else ": the producer stopped or the data is missing"
            )
            key = ("None", AlertKind.NO_DATA.value)
            if not self.gate.admit(key, window.start_ms):  # a gap within an open no-data incident extends it
                self._advance_closed(window)
                return
            alert = make_alert(
                    model=self.contract.model,
                    model_version=window.version,
                    kind=AlertKind.NO_DATA,
                    feature=None,
                    detector="window_gap",
                    severity="critical",
                    window_start_ms=last + length,
                    event_time_ms=window.start_ms,
                    score=float(missing),
                    threshold=0.0,
                    message=f"no usable events for {missing} window(s) of {length // 1000} s before "
                    f"{iso_time(window.start_ms)}{rejected}",
                )
            result.alerts.append(alert)
            self.gate.attach(key, alert)
        self._advance_closed(window)

    def _advance_closed(self, window: OpenWindow) -> None:
        if self.last_closed_start_ms is None or window.start_ms > self.last_closed_start_ms:
            self.last_closed_start_ms = window.start_ms

    def _close(self, window: OpenWindow, result: BatchResult) -> None:
        config = self.config
        profile = self.profile_for(window.version)
        model_window = ModelWindow(
            model=self.contract.model,
            model_version=window.version,
            window_start_ms=window.start_ms,
            window_length_ms=config.window_length_ms,
            events=window.events,
            accepted=window.accepted,
            rejected=window.events - window.accepted,
            rejected_by_reason=tuple(sorted(window.rejected_by_reason.items())),
        )
        result.model_windows.append(model_window)
        place = WindowPlace(self.contract.model, window.version, window.start_ms, config.window_length_ms)
        # A field with a daily or weekly cycle is compared with the reference of the window's hour.
        references = {spec.name: profile.features[spec.name].at_time(window.start_ms) for spec in self.fields}
        summaries = {
            spec.name: window.features[spec.name].close(
                references[spec.name], place, false_alarm_rate=self.window_false_alarm_rate, min_psi=config.min_psi
            )
            for spec in self.fields
        }
        moved = self._inputs_that_moved(summaries)
        for spec in self.fields:
            summary = summaries[spec.name]
            result.feature_windows.append(summary)
            # Events of a writer schema the contract cannot read are the window's (rejected), but their
            # values were not read: the field's data-quality shares are of the events whose values were.
            read = window.events - window.features[spec.name].count(FieldStatus.UNREAD)
            for verdict in feature_window_verdicts(spec, references[spec.name], summary, read, config):
                if spec.name == self.score_field and moved:
                    verdict = dataclasses.replace(verdict, message=f"{verdict.message}; {moved}")
                self._window_alert(result, window.version, window.start_ms, verdict)
        for verdict in model_window_verdicts(model_window, config):
            self._window_alert(result, window.version, window.start_ms, verdict)
        self._release_held(result, window.start_ms, window.version, moved)

    def _inputs_that_moved(self, summaries: dict[str, FeatureWindow]) -> str:
        """The inputs that moved most in a window, ranked by PSI over its calibrated threshold ('' if none can tell)."""
        ranked = sorted(
            (
                (summary.psi / summary.psi_threshold, name, summary.psi)
                for name in self.inputs
                if (summary := summaries[name]).psi is not None and summary.psi_threshold and summary.count >= self.config.min_window_count
            ),
            key=lambda item: (-item[0], item[1]),
        )[:INPUTS_NAMED]
        if not ranked:
            return ""
        return "inputs that moved most in the window: " + ", ".join(
            f"{name} (PSI {psi:.3g}, {ratio:.2g}x its threshold)" for ratio, name, psi in ranked
        )

    def _release_held(self, result: BatchResult, start_ms: int, version: str, moved: str) -> None:
        """Emit the held score alerts of this window (naming what moved) and of earlier ones (whose window never came)."""
        keep: list[HeldScoreAlert] = []
        for held in self.held:
            if held.window_start_ms == start_ms and held.signal.model_version == version:
                self._emit_held(result, held, moved)
            elif held.window_start_ms < start_ms:
                self._emit_held(result, held, "")
            else:
                keep.append(held)
        self.held = keep

    def release_all(self, result: BatchResult) -> None:
        """Emit every held score alert (end of input: their windows will not close)."""
        for held in self.held:
            self._emit_held(result, held, "")
        self.held = []

    def _emit_held(self, result: BatchResult, held: HeldScoreAlert, moved: str) -> None:
        signal = held.signal
        kind = _DETECTOR_KINDS.get(signal.detector, AlertKind.MEAN_SHIFT)
        self._warning(
            result, signal.model_version, kind, signal.feature,
            signal.detector, window_start_ms=None, event_time_ms=signal.event_time_ms, score=signal.statistic,
            threshold=held.threshold, message=held.message + (f"; {moved}" if moved else ""), episode=kind.value,
        )

    def _window_alert(self, result: BatchResult, version: str, window_start_ms: int, verdict: Verdict) -> None:
        self.gated_alert(
            result, version, verdict.kind, verdict.feature, verdict.detector,
            episode=verdict.kind.value,
            window_start_ms=window_start_ms,
            event_time_ms=window_start_ms + self.config.window_length_ms,
            score=verdict.score,
            threshold=verdict.threshold,
            message=f"[{iso_time(window_start_ms)}] {verdict.message}",
        )

    def signal_alert(self, result: BatchResult, signal: DetectorSignal, threshold: float, *, where: str = "") -> None:
        """The alert of a streaming detector's signal, unless it continues an open episode.

        ``where`` qualifies the event index (a split model's signal counts the events of its partition).
        """
        kind = _DETECTOR_KINDS.get(signal.detector, AlertKind.MEAN_SHIFT)
        if signal.feature == JOINT_FEATURE:
            self._joint_alert(result, signal, threshold, where)
            return
        profile = self.profile_for(signal.model_version).features[signal.feature]
        what = _DETECTOR_FINDINGS.get(signal.detector, "Page-Hinkley detected a mean shift in")
        message = (
            f"{what} {signal.feature} at event {signal.event_index}{where} "
            f"(reference mean {format_number(profile.mean)}, std {format_number(profile.std)})"
        )
        if signal.feature == self.score_field:
            length = self.config.window_length_ms
            start = signal.event_time_ms // length * length
            if not self._admits(signal.feature, kind.value, signal.event_time_ms):
                return
            held = HeldScoreAlert(signal, threshold, message, start)
            if self.last_closed_start_ms is not None and start <= self.last_closed_start_ms:
                self._emit_held(result, held, "")  # a late event: its window is closed already
            else:
                self.held.append(held)
            return
        self.gated_alert(
            result, signal.model_version, kind, signal.feature, signal.detector,
            episode=kind.value,
            window_start_ms=None,
            event_time_ms=signal.event_time_ms,
            score=signal.statistic,
            threshold=threshold,
            message=message,
        )

    def _joint_alert(self, result: BatchResult, signal: DetectorSignal, threshold: float, where: str) -> None:
        changed = ", ".join(f"{name} ({share:.0%})" for name, share in signal.evidence[:JOINT_FEATURES_NAMED])
        self.gated_alert(
            result, signal.model_version, AlertKind.JOINT_DRIFT, None, signal.detector,
            episode=AlertKind.JOINT_DRIFT.value,
            window_start_ms=None,
            event_time_ms=signal.event_time_ms,
            score=signal.statistic,
            threshold=threshold,
            message=f"the joint-drift test found a change in how the numeric features vary together at event "
            f"{signal.event_index}{where}" + (f"; most changed: {changed}" if changed else ""),
        )

    def schema_change_alert(self, result: BatchResult, record: SchemaChangeRecord, version: str) -> None:
        """The alert of a writer schema that differs from the contract (raised once per writer schema)."""
        assert record.first_seen_event_time_ms is not None
        key = (f"schema {record.writer_id}", AlertKind.SCHEMA_CHANGE.value)
        if not self.gate.admit(key, record.first_seen_event_time_ms):
            return
        alert = make_alert(
                model=self.contract.model,
                model_version=version,
                kind=AlertKind.SCHEMA_CHANGE,
                feature=None,
                detector="schema_diff",
                severity="warning" if record.compatible else "critical",
                window_start_ms=None,
                event_time_ms=record.first_seen_event_time_ms,
                score=float(len(record.missing_fields) + len(record.new_fields) + len(record.type_changes)),
                threshold=0.0,
                message=f"writer schema {record.writer_id} differs from contract "
                f"{self.contract.model} v{self.contract.version}: {record.description}",
                subject=record.writer_id,
            )
        result.alerts.append(alert)
        self.gate.attach(key, alert)

    def gated_alert(
        self,
        result: BatchResult,
        version: str,
        kind: AlertKind,
        feature: str | None,
        detector: str,
        *,
        episode: str,
        window_start_ms: int | None,
        event_time_ms: int,
        score: float,
        threshold: float,
        message: str,
    ) -> None:
        """Raise a warning unless it continues an open episode (see :class:`AlertGate`)."""
        gate_time_ms = event_time_ms if window_start_ms is None else window_start_ms
        if not self._admits(feature, episode, gate_time_ms):
            return
        self._warning(
            result, version, kind, feature, detector,
            window_start_ms=window_start_ms, event_time_ms=event_time_ms, score=score, threshold=threshold, message=message,
            episode=episode,
        )

    def _admits(self, feature: str | None, episode: str, gate_time_ms: int) -> bool:
        """Whether an alert opens a new incident of (feature, episode) — any model version (see :class:`AlertGate`)."""
        return self.gate.admit((str(feature), episode), gate_time_ms)

    def _warning(
        self,
        result: BatchResult,
        version: str,
        kind: AlertKind,
        feature: str | None,
        detector: str,
        *,
        window_start_ms: int | None,
        event_time_ms: int,
        score: float,
        threshold: float,
        message: str,
        episode: str,
    ) -> None:
        alert = make_alert(
            model=self.contract.model,
            model_version=version,
            kind=kind,
            feature=feature,
            detector=detector,
            severity="warning",
            window_start_ms=window_start_ms,
            event_time_ms=event_time_ms,
            score=score,
            threshold=threshold,
            message=message,
        )
        result.alerts.append(alert)
        self.gate.attach((str(feature), episode), alert)
