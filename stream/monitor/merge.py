"""The second stage of a model split over partitions: its partitions' window partials become the model's windows.

A busy model's topic has P partitions; each has its own engine (``EngineConfig.partial_windows``),
which closes its windows into :class:`~driftline.stream.monitor.results.WindowPartial` records and
hands its detector signals and schema changes on instead of alerting. One :class:`WindowMerger` per
model takes all of them, with each partition's progress (the largest event time it has published,
and whether it is idle), and:

* **closes a window** once every partition has passed its end by the allowed lateness — the same
  rule a single engine applies to its own stream, on the smallest of the partitions' event times
  (the model's watermark). The partials of the window are merged (counts add; histograms, moments
  and sketches merge: :meth:`~driftline.stream.monitor.window_state.FieldWindow.merge`), in partition
  order, and closed by the same :class:`~driftline.stream.monitor.closing.WindowCloser` a single
  engine uses: the same summaries, distances, verdicts and gap alerts.
* **gates the signals once per model**: a drift seen on every partition is one alert episode, not P.
  Signals wait until the model's watermark has passed them and are then admitted in event-time
  order (then partition, then position), so the alerts do not depend on how the partitions' messages
  interleaved on their way here — a replay raises the same ones.
* **reports each new writer schema once** per model, the same way.
* **judges the model's labels** (with a label horizon): the partitions' performance accumulators,
  released errors and challenger counts are merged by :class:`~.label_merge.LabelMerge`.

An *idle* partition (no message for a while; the shell decides, see ``PartitionRunner.idle``) has
closed all its windows and published them: the merger stops waiting for it. When it wakes, its
windows that the model has already closed are late; their events count as late, never silently.

Partials, signals and schema changes may arrive twice (a partition's runner that restarted from its
checkpoint publishes again what it had published after it): a partition's windows close in
(start, version) order and its signals come in event order, so each partition's last key tells a
repeat from something new.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from driftline.schemas.contract import Contract

from .alerts import AlertGate
from .closing import HeldScoreAlert, OpenWindow, WindowCloser
from .config import EngineConfig
from .label_merge import LabelMerge, LabelProgress
from .label_verdicts import LabelVerdicts
from .profile import ReferenceProfile
from .results import (
    BatchResult,
    ChallengerPartial,
    DetectorSignal,
    ObservedErrors,
    PartialSignal,
    PerformancePartial,
    SchemaChangeRecord,
    WindowPartial,
)
from .window_state import field_window_from_state

__all__ = [
    "WindowMerger",
    "partial_signal_from_dict",
    "partial_signal_to_dict",
    "schema_change_from_dict",
    "window_partial_from_dict",
    "window_partial_to_dict",
]

STATE_FORMAT = 1

T = TypeVar("T")

WindowKey = tuple[int, str]  # (window start, model version)
SignalKey = tuple[int, str, str, str]  # (row, detector, feature, version): a partition's signals in order


@dataclass
class _Progress:
    """What one partition has published so far."""

    max_event_time_ms: int | None = None
    idle: bool = False
    last_window: WindowKey | None = None
    last_signal: SignalKey | None = None
    schema_writers: set[str] = field(default_factory=set)


class WindowMerger:
    """Merges the partials of one split model into its windows; gates its signals and schema changes once.

    Parameters
    ----------
    contract, profiles, config, default_version
        As for :class:`~driftline.stream.monitor.engine.MonitorEngine` (the partitions' engines use the same).
    """

    def __init__(
        self,
        contract: Contract,
        profiles: Mapping[str, ReferenceProfile],
        config: EngineConfig,
        *,
        default_version: str | None = None,
    ) -> None:
        if not profiles:
            raise ValueError("profiles must hold at least one reference profile")
        self.contract = contract
        self.config = config
        self.profiles = dict(profiles)
        self.default_version = default_version or list(self.profiles)[-1]
        self._gate = AlertGate(config.alert_cooldown_ms)
        self._closer = WindowCloser(contract, config, self._profile, self._gate)
        self.partitions: int | None = None
        self._progress: dict[int, _Progress] = {}
        self._pending: dict[WindowKey, dict[int, WindowPartial]] = {}
        self._signals: list[tuple[int, PartialSignal]] = []
        self._schema_changes: list[tuple[int, SchemaChangeRecord]] = []
        self._schema_writers: set[str] = set()  # reported for the model
        self._closed_before_ms: int | None = None  # windows starting before this are closed
        self._released_before_ms: int | None = None  # signals and schema changes before this were admitted
        self.late_partials = 0  # partials of windows the model had already closed (their events count as late)
        self.repeats = 0  # partials, signals and schema changes received again (ignored)
        self.ignored_labels = 0  # label messages of partitions that join labels, while this merger does not
        # Labels (with a label horizon): the partitions' performance, errors and challenger comparisons.
        self.labels: LabelMerge | None = None
        if config.label_horizon_ms is not None:
            self.labels = LabelMerge(config, LabelVerdicts(contract, config, self._profile, self.default_version, self._closer))

    # -- input ---------------------------------------------------------------------------------------

    def add_window(self, partition: int, partial: WindowPartial, result: BatchResult) -> None:
        """One partition's share of a closed window."""
        progress = self._partition(partition)
        key = (partial.window_start_ms, partial.model_version)
        if progress.last_window is not None and key <= progress.last_window:
            self.repeats += 1
            return
        progress.last_window = key
        if self._closed_before_ms is not None and partial.window_start_ms < self._closed_before_ms:
            # The partition woke from idle with events of windows the model has closed meanwhile.
            self.late_partials += 1
            result.late_events += partial.events
            return
        self._pending.setdefault(key, {})[partition] = partial

    def add_signals(self, partition: int, signals: list[PartialSignal], result: BatchResult) -> None:
        """Detector signals of one partition, in its order; each is admitted (or not) once the model passed it."""
        progress = self._partition(partition)
        for partial in signals:
            signal = partial.signal
            key = (partial.row, signal.detector, signal.feature, signal.model_version)
            if progress.last_signal is not None and key <= progress.last_signal:
                self.repeats += 1
                continue
            progress.last_signal = key
            if self._released_before_ms is not None and signal.event_time_ms < self._released_before_ms:
                self._admit_signal(partition, partial, result)  # behind the model's watermark: a late event's
            else:
                self._signals.append((partition, partial))

    def add_schema_change(self, partition: int, record: SchemaChangeRecord, result: BatchResult) -> None:
        """A writer schema one partition saw first; the model reports it once."""
        progress = self._partition(partition)
        if record.writer_id in progress.schema_writers:
            self.repeats += 1
            return
        progress.schema_writers.add(record.writer_id)
        assert record.first_seen_event_time_ms is not None
        if self._released_before_ms is not None and record.first_seen_event_time_ms < self._released_before_ms:
            self._admit_schema_change(record, result)
        else:
            self._schema_changes.append((partition, record))

    def add_performance(self, partition: int, partials: list[PerformancePartial], result: BatchResult) -> None:
        """One partition's label accumulators of windows (the latest of each replaces the one before)."""
        if (merge := self._label_merge()) is not None:
            for partial in partials:
                merge.add_performance(partition, partial, result)

    def add_errors(self, partition: int, observed: ObservedErrors) -> None:
        """One partition's labels in observation order, with their errors (for the model's concept-drift test)."""
        if (merge := self._label_merge()) is not None:
            merge.add_errors(partition, observed)

    def add_challenger(self, partition: int, partials: list[ChallengerPartial]) -> None:
        """One partition's comparisons of champion and challenger on windows it has completed."""
        if (merge := self._label_merge()) is not None:
            for partial in partials:
                merge.add_challenger(partition, partial)

    def _label_merge(self) -> LabelMerge | None:
        """The label merge, for a label message; ``None`` if this merger takes no labels (partitions configured
        otherwise, e.g. during a rolling restart): their label messages are counted in :attr:`ignored_labels`."""
        if self.labels is None:
            self.ignored_labels += 1
        return self.labels

    def advance(
        self, partition: int, partitions: int, max_event_time_ms: int | None, *, idle: bool, result: BatchResult,
        labels: LabelProgress | None = None,
    ) -> None:
        """A partition's progress: its largest event time so far, whether it is idle, how far its labels go; close what that allows.

        Raises
        ------
        ValueError
            ``partition`` is not one of ``partitions``.
        """
        if not 0 <= partition < partitions:
            raise ValueError(f"partition {partition} is not one of {partitions}")
        self.partitions = partitions if self.partitions is None else max(self.partitions, partitions)
        progress = self._partition(partition)
        if max_event_time_ms is not None:
            progress.max_event_time_ms = max(max_event_time_ms, progress.max_event_time_ms or max_event_time_ms)
        progress.idle = idle
        if labels is not None and (merge := self._label_merge()) is not None:
            merge.advance(partition, labels)
        self._release(result)
        if self.labels is not None and self.partitions is not None:
            self.labels.release(self.partitions, {p: g.idle for p, g in self._progress.items()}, self._closed_before_ms, result)
        labels_merge = self.labels
        self._gate.report({
            "events": self._released_before_ms, "windows": self._closed_before_ms,
            "labels": None if labels_merge is None or math.isinf(labels_merge.released_before) else labels_merge.released_before,
            "compared": None if labels_merge is None or math.isinf(labels_merge.compared_before) else labels_merge.compared_before,
        }, result)

    @property
    def pending_windows(self) -> int:
        """Windows waiting for a partition."""
        return len(self._pending)

    # -- closing -------------------------------------------------------------------------------------

    def _model_time(self) -> int | None:
        """The smallest largest-event-time of the partitions that are not idle (None: cannot tell yet).

        Every partition must have reported; one that is not idle but has no dated event yet holds the
        model back. When every partition is idle: the largest of them.
        """
        if self.partitions is None or any(p not in self._progress for p in range(self.partitions)):
            return None
        times = [self._progress[p].max_event_time_ms for p in range(self.partitions) if not self._progress[p].idle]
        if not times:
            known = [t for t in (progress.max_event_time_ms for progress in self._progress.values()) if t is not None]
            return max(known) if known else None
        if any(t is None for t in times):
            return None
        return min(t for t in times if t is not None)

    def _all_idle(self) -> bool:
        return self.partitions is not None and all(p in self._progress and self._progress[p].idle for p in range(self.partitions))

    def _release(self, result: BatchResult) -> None:
        model_time = self._model_time()
        if model_time is None:
            return
        length = self.config.window_length_ms
        watermark = model_time - self.config.allowed_lateness_ms
        # The same rule as WindowClock.closable_before: [s, s + L) is closed iff s + L <= watermark.
        closable_before = ((watermark - length) // length + 1) * length
        released_before = watermark + 1
        if self._all_idle():  # every partition has published all it has: everything waiting is complete
            closable_before = max([closable_before, *(start + length for start, _ in self._pending)])
            released_before = max([
                released_before,
                *(s.signal.event_time_ms + 1 for _, s in self._signals),
                *((r.first_seen_event_time_ms or 0) + 1 for _, r in self._schema_changes),
            ])
        self._admit_before(released_before, result)
        for key in sorted(k for k in self._pending if k[0] < closable_before):
            self._close(key, self._pending.pop(key), result)
        if self._closed_before_ms is None or closable_before > self._closed_before_ms:
            self._closed_before_ms = closable_before

    def _admit_before(self, released_before: int, result: BatchResult) -> None:
        """Admit the waiting schema changes and signals dated before ``released_before``, in a fixed order."""
        if self._released_before_ms is not None and released_before <= self._released_before_ms:
            return
        self._released_before_ms = released_before
        changes, self._schema_changes = _split(self._schema_changes, lambda r: (r.first_seen_event_time_ms or 0) < released_before)
        for _, record in sorted(changes, key=lambda item: (item[1].first_seen_event_time_ms or 0, item[0], item[1].writer_id)):
            self._admit_schema_change(record, result)
        signals, self._signals = _split(self._signals, lambda s: s.signal.event_time_ms < released_before)
        for partition, signal in sorted(signals, key=_signal_order):
            self._admit_signal(partition, signal, result)

    def _admit_signal(self, partition: int, partial: PartialSignal, result: BatchResult) -> None:
        self._closer.signal_alert(result, partial.signal, partial.threshold, where=f" of partition {partition}")

    def _admit_schema_change(self, record: SchemaChangeRecord, result: BatchResult) -> None:
        if record.writer_id in self._schema_writers:
            return
        self._schema_writers.add(record.writer_id)
        result.schema_changes.append(record)
        self._closer.schema_change_alert(result, record, self.default_version)

    def _close(self, key: WindowKey, partials: dict[int, WindowPartial], result: BatchResult) -> None:
        start, version = key
        window = OpenWindow(version=version, start_ms=start)
        undated = 0
        for partition in sorted(partials):
            partial = partials[partition]
            window.events += partial.events
            window.accepted += partial.accepted
            window.rejected_by_reason.update(dict(partial.rejected_by_reason))
            undated += partial.undated
            for name, state in partial.fields.items():
                field_window = field_window_from_state(state)
                if name in window.features:
                    window.features[name].merge(field_window)
                else:
                    window.features[name] = field_window
        self._closer.close(window, result, undated=undated)

    # -- helpers -------------------------------------------------------------------------------------

    def _partition(self, partition: int) -> _Progress:
        progress = self._progress.get(partition)
        if progress is None:
            progress = self._progress[partition] = _Progress()
        return progress

    def _profile(self, version: str) -> ReferenceProfile:
        return self.profiles.get(version, self.profiles[self.default_version])

    # -- checkpoints ---------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly here (JSON-serialisable)."""
        return {
            "format": STATE_FORMAT,
            "model": self.contract.model,
            "partitions": self.partitions,
            "progress": [
                {
                    "partition": partition,
                    "max_event_time_ms": progress.max_event_time_ms,
                    "idle": progress.idle,
                    "last_window": None if progress.last_window is None else list(progress.last_window),
                    "last_signal": None if progress.last_signal is None else list(progress.last_signal),
                    "schema_writers": sorted(progress.schema_writers),
                }
                for partition, progress in sorted(self._progress.items())
            ],
            "pending": [
                {"partition": partition, "partial": window_partial_to_dict(partial)}
                for _, partials in sorted(self._pending.items())
                for partition, partial in sorted(partials.items())
            ],
            "signals": [{"partition": p, "signal": partial_signal_to_dict(s)} for p, s in self._signals],
            "schema_changes": [{"partition": p, "record": dataclasses.asdict(r)} for p, r in self._schema_changes],
            "schema_writers": sorted(self._schema_writers),
            "closed_before_ms": self._closed_before_ms,
            "released_before_ms": self._released_before_ms,
            "last_closed_start_ms": self._closer.last_closed_start_ms,
            "held_score_alerts": [held.to_dict() for held in self._closer.held],
            "gate": self._gate.to_state(),
            "late_partials": self.late_partials,
            "repeats": self.repeats,
            "ignored_labels": self.ignored_labels,
            "labels": None if self.labels is None else self.labels.to_state(),
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        contract: Contract,
        profiles: Mapping[str, ReferenceProfile],
        config: EngineConfig,
        *,
        default_version: str | None = None,
    ) -> WindowMerger:
        """A merger continuing from :meth:`to_state` (same contract, profiles and config)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"state: unsupported merger state format {state.get('format')!r}")
        if state.get("model") != contract.model:
            raise ValueError(f"state: state is for model {state.get('model')!r}, not {contract.model!r}")
        merger = cls(contract, profiles, config, default_version=default_version)
        merger.partitions = state["partitions"]
        for saved in state["progress"]:
            merger._progress[int(saved["partition"])] = _Progress(
                max_event_time_ms=saved["max_event_time_ms"],
                idle=bool(saved["idle"]),
                last_window=None if saved["last_window"] is None else (int(saved["last_window"][0]), str(saved["last_window"][1])),
                last_signal=None if saved["last_signal"] is None else _signal_key(saved["last_signal"]),
                schema_writers=set(saved["schema_writers"]),
            )
        for saved in state["pending"]:
            partial = window_partial_from_dict(saved["partial"])
            merger._pending.setdefault((partial.window_start_ms, partial.model_version), {})[int(saved["partition"])] = partial
        merger._signals = [(int(saved["partition"]), partial_signal_from_dict(saved["signal"])) for saved in state["signals"]]
        merger._schema_changes = [(int(saved["partition"]), schema_change_from_dict(saved["record"])) for saved in state["schema_changes"]]
        merger._schema_writers = set(state["schema_writers"])
        merger._closed_before_ms = state["closed_before_ms"]
        merger._released_before_ms = state["released_before_ms"]
        merger._closer.last_closed_start_ms = state["last_closed_start_ms"]
        merger._closer.held = [HeldScoreAlert.from_dict(held) for held in state.get("held_score_alerts", ())]
        merger._gate.restore(state["gate"])
        merger.late_partials = int(state["late_partials"])
        merger.repeats = int(state["repeats"])
        merger.ignored_labels = int(state.get("ignored_labels", 0))
        if merger.labels is not None and state.get("labels") is not None:
            merger.labels.restore(state["labels"])
        return merger


def _split(items: list[tuple[int, T]], due: Callable[[T], bool]) -> tuple[list[tuple[int, T]], list[tuple[int, T]]]:
    """``items`` whose record is due, and the others (each in its order)."""
    return [item for item in items if due(item[1])], [item for item in items if not due(item[1])]


def _signal_order(item: tuple[int, PartialSignal]) -> tuple[int, int, int, str, str]:
    """Signals are admitted by event time, then partition, position, detector and field: never by arrival."""
    partition, partial = item
    return (partial.signal.event_time_ms, partition, partial.row, partial.signal.detector, partial.signal.feature)


def _signal_key(saved: list[Any]) -> SignalKey:
    return (int(saved[0]), str(saved[1]), str(saved[2]), str(saved[3]))


# -- the records as plain dictionaries (JSON), for checkpoints and the partials topic -----------------


def window_partial_to_dict(partial: WindowPartial) -> dict[str, Any]:
    """A :class:`WindowPartial` as plain JSON-ready values."""
    return {**dataclasses.asdict(partial), "rejected_by_reason": [list(item) for item in partial.rejected_by_reason]}


def window_partial_from_dict(data: Mapping[str, Any]) -> WindowPartial:
    """The :class:`WindowPartial` of :func:`window_partial_to_dict` (raises ``KeyError``/``ValueError``/``TypeError`` if malformed)."""
    return WindowPartial(
        model=str(data["model"]),
        model_version=str(data["model_version"]),
        window_start_ms=int(data["window_start_ms"]),
        window_length_ms=int(data["window_length_ms"]),
        events=int(data["events"]),
        accepted=int(data["accepted"]),
        rejected_by_reason=tuple((str(reason), int(count)) for reason, count in data["rejected_by_reason"]),
        undated=int(data["undated"]),
        fields={str(name): dict(state) for name, state in data["fields"].items()},
    )


def partial_signal_to_dict(partial: PartialSignal) -> dict[str, Any]:
    """A :class:`PartialSignal` as plain JSON-ready values."""
    return {"signal": dataclasses.asdict(partial.signal), "threshold": partial.threshold, "row": partial.row}


def partial_signal_from_dict(data: Mapping[str, Any]) -> PartialSignal:
    """The :class:`PartialSignal` of :func:`partial_signal_to_dict`."""
    return PartialSignal(
        signal=DetectorSignal.from_dict(data["signal"]),
        threshold=float(data["threshold"]),
        row=int(data["row"]),
    )


def schema_change_from_dict(data: Mapping[str, Any]) -> SchemaChangeRecord:
    """The :class:`SchemaChangeRecord` of ``dataclasses.asdict`` (lists back to tuples)."""
    return SchemaChangeRecord(
        model=str(data["model"]),
        writer_id=str(data["writer_id"]),
        compatible=bool(data["compatible"]),
        missing_fields=tuple(str(f) for f in data["missing_fields"]),
        new_fields=tuple(str(f) for f in data["new_fields"]),
        type_changes=tuple(str(f) for f in data["type_changes"]),
        description=str(data["description"]),
        first_seen_event_time_ms=None if data["first_seen_event_time_ms"] is None else int(data["first_seen_event_time_ms"]),
    )

