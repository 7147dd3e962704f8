"""The monitor engine: a batch of decoded events in; window aggregates, signals and alerts out.

One engine serves one model. It is pure computation — no Kafka, no database, no clock — so the
Faust worker, the embedded runner (``driftline demo`` / ``driftline run``) and ``driftline replay``
drive it unchanged, and the same events in the same order always produce the same results, however
the stream is cut into batches (tested byte-for-byte on :func:`~driftline.stream.results.to_canonical_json`).

Per event, in arrival order, each numeric field and the prediction score feed a calibrated
Page–Hinkley detector and a spread test (and the score an ADWIN), aimed at the model's false-alarm
budget in time (:mod:`.budget`). Per event-time window, per field, sketches summarise
the accepted values and status counts record nulls, NaN/inf, out-of-range and unseen categories of
*every* decoded event (accepted or rejected), so a flood of bad values is visible even though those
events went to the dead-letter topic. When a window closes it is compared with the reference profile
(PSI, Jensen–Shannon, KS, Wasserstein) and checked against the contract's data-quality budgets.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from driftline.schemas.contract import Contract, FieldContract
from driftline.schemas.results import DecodedBatch

from .alerts import AlertGate
from .budget import FALLBACK_EVENTS_PER_SECOND, EventRate
from .challenger import Challenger, ChallengerRun, load_classifier
from .closing import HeldScoreAlert, OpenWindow, WindowCloser
from .config import EngineConfig
from .estimation import ConfidenceEstimator, EstimateWindows
from .label_join import JoinedLabels, LabelJoin, ObservationOrder
from .label_merge import LabelProgress
from .label_verdicts import LabelVerdicts
from .performance import PerformanceWindows, label_task
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
from .tracks import DetectorHit, DetectorTracks, RetargetAt
from .window_state import field_window_from_state, new_field_window
from .windows import WindowClock

__all__ = ["EngineConfig", "MonitorEngine"]

#: Format 4: the model's event rate and each track's false-alarm rate (budgets in time). Format 3
#: (typed field windows per kind, schema changes waiting for an event time, tracks in use order) is
#: still read: its streaming detectors, aimed at a per-event budget, restart from the profiles.
#: Format 5 adds the label join, the performance and estimate windows and the concept-drift test
#: (``None`` without a label horizon); format 4 is read as format 5 without labels.
STATE_FORMAT = 5
_READABLE_FORMATS = (3, 4, STATE_FORMAT)


class MonitorEngine:
    """Monitor one model's stream against its reference profile(s).

    Parameters
    ----------
    contract
        The model's contract.
    profiles
        Reference profile(s), by model version. Events of a version without a profile are compared
        with ``default_version``'s profile (and say so in their alerts).
    config
        Engine tunables.
    default_version
        Profile used for unknown versions (default: the last profile given).
    """

    def __init__(
        self,
        contract: Contract,
        profiles: ReferenceProfile | Mapping[str, ReferenceProfile],
        config: EngineConfig | None = None,
        *,
        default_version: str | None = None,
    ) -> None:
        if isinstance(profiles, ReferenceProfile):
            profiles = {profiles.model_version: profiles}
        if not profiles:
            raise ValueError("profiles must hold at least one reference profile")
        for version, profile in profiles.items():
            if profile.model != contract.model:
                raise ValueError(f"profiles: profile {version!r} is for model {profile.model!r}, not {contract.model!r}")
            profile.check_covers(contract)
        self.contract = contract
        self.config = config or EngineConfig()
        self.profiles = dict(profiles)
        self.default_version = default_version or list(self.profiles)[-1]
        if self.default_version not in self.profiles:
            raise ValueError(f"default_version {self.default_version!r} has no profile")
        self.fields: tuple[FieldContract, ...] = contract.monitored_fields
        self._clock = WindowClock(self.config.window_length_ms, self.config.allowed_lateness_ms)
        self._gate = AlertGate(self.config.alert_cooldown_ms)
        self._closer = WindowCloser(contract, self.config, self._profile, self._gate)
        # The label tests (concept drift, the estimate's drop, the challenger) share the model's budget.
        self._verdicts = LabelVerdicts(contract, self.config, self._profile, self.default_version, self._closer)
        self._budget = self._verdicts.budget
        self._concept = self._verdicts.concept
        labelled = self._verdicts.labelled
        self._estimates: EstimateWindows | None = None
        if self._concept is not None and labelled is not None and labelled.get("estimator") is not None:
            estimator = ConfidenceEstimator.from_state(labelled["estimator"])
            self._estimates = EstimateWindows(estimator, self.config.window_length_ms)
        # Windows starting before this were closed and their estimates reported: a late prediction of
        # one of them is left out of the estimate (its label still counts in the realised metrics).
        self._estimated_before: int | None = None
        self._rate = EventRate(self.config.events_per_second or _reference_rate(self.profiles.values()), self.config.partitions)
        self._tracks = DetectorTracks(
            self._profile, self.fields, self.config.max_live_versions, false_alarm_rate=self._detector_rate()
        )
        self._rows_seen = 0  # decoded events so far: the sequence numbers of "least recently seen"
        self._open: dict[tuple[int, str], OpenWindow] = {}
        self._schema_changes_seen: set[str] = set()
        self._schema_changes_pending: list[SchemaChangeRecord] = []  # waiting for an event time
        # Rejected events without an event time (undecodable, or of a writer schema without a readable
        # one; other events of an incompatible writer schema are placed by their own event time):
        # a gap of windows during which such events arrived is not a silent producer.
        self._undated_pending = 0  # since the last decoded event
        self._undated_by_window: dict[int, int] = {}  # window start of the next decoded event -> count
        # Labels (only when a horizon is configured): the join, and performance per prediction window.
        self._labels: LabelJoin | None = None
        self._performance: PerformanceWindows | None = None
        score, decision = contract.find_role("prediction_score"), contract.find_role("prediction_class")
        self._score_field = None if score is None else score.name
        self._class_field = None if decision is None else decision.name
        if self.config.label_horizon_ms is not None:
            if self._score_field is None:
                raise ValueError(f"labels need a prediction_score field, and contract {contract.label} has none")
            self._labels = LabelJoin(self.config.label_horizon_ms, grace_ms=self.config.label_grace_ms,
                                     capacity=self.config.label_capacity)
            self._performance = PerformanceWindows(self.config.window_length_ms, label_task(contract))
        # The input of the concept-drift test and the challenger: the joined labels in the order they
        # were observed, the same in every run however the topics' reads interleaved.
        self._observed: ObservationOrder | None = None
        if self._concept is not None or self.config.challenger is not None:
            self._observed = ObservationOrder(self.config.label_grace_ms)
        self._challenger: ChallengerRun | None = None
        if self.config.challenger is not None:
            if label_task(contract) != "classification":
                raise ValueError(f"a challenger needs a binary classifier, and contract {contract.label} is a regression model")
            assert self.config.label_horizon_ms is not None  # (EngineConfig checks it)
            self._challenger = ChallengerRun(
                Challenger(load_classifier(self.config.challenger)), [f.name for f in contract.fields if f.role == "feature"],
                window_length_ms=self.config.window_length_ms, horizon_ms=self.config.label_horizon_ms,
                lateness_ms=self.config.label_grace_ms, capacity=self.config.label_capacity, sample=self.config.challenger_sample,
            )

    # ------------------------------------------------------------------ public API

    def process(self, batch: DecodedBatch) -> BatchResult:
        """Feed one decoded batch (events in arrival order); return what it produced."""
        if batch.model != self.contract.model:
            raise ValueError(f"batch: batch is for model {batch.model!r}, this engine monitors {self.contract.model!r}")
        result = BatchResult()
        for rejection in batch.rejections:
            reason = rejection.reason.value
            result.rejected_by_reason[reason] = result.rejected_by_reason.get(reason, 0) + 1
        self._account_undated_rejections(batch)
        result.accepted = int(np.count_nonzero(batch.accepted))
        self._record_schema_changes(batch, result)
        if len(batch.rows):
            self._process_rows(batch, result)
            if self._labels is not None:
                self._hold_predictions(batch, result)
        self._close_windows(self._clock.closable_before(), result)
        self._incidents(result)
        return result

    def process_labels(
        self, prediction_ids: Sequence[str], label_times_ms: Sequence[int] | np.ndarray, labels: Sequence[float] | np.ndarray
    ) -> BatchResult:
        """Feed labels of earlier predictions (in arrival order); return the performance they changed.

        Raises
        ------
        ValueError
            The engine was configured without a label horizon (``EngineConfig.label_horizon_ms``).
        """
        if self._labels is None:
            raise ValueError("this engine joins no labels: configure EngineConfig.label_horizon_ms")
        result = BatchResult()
        before = self._label_snapshot()
        joined = self._labels.add_labels(prediction_ids, label_times_ms, labels)
        self._account_joined(joined, result, before)
        self._incidents(result)
        return result

    @property
    def label_join(self) -> LabelJoin | None:
        """The label join (``None`` without a label horizon): its counts by reason and sizes."""
        return self._labels

    @property
    def performance_settled_before(self) -> float | None:
        """Windows starting before this get no more labels: their performance records are final (``None``: no labels).

        ``-inf`` until the join knows; the bound the engine itself lets such windows go by.
        """
        if self._labels is None:
            return None
        return self._labels.settled_before - self.config.window_length_ms

    @property
    def challenger(self) -> ChallengerRun | None:
        """The challenger (``None`` without one): its model, counts and held predictions."""
        return self._challenger

    def flush(self, *, labels: bool = True) -> BatchResult:
        """Close every open window (end of input). The engine can keep processing afterwards.

        With ``labels`` (end of input), the labels waiting for their place in the observation order
        are released too; a partition of a split model that goes idle keeps them (``labels=False``):
        its labels go on where they stopped when it wakes.
        """
        result = BatchResult()
        if self._open:
            before = max(start for start, _ in self._open) + self.config.window_length_ms
            self._clock.close_before(before)  # closed for good: their events that come later are late
            self._close_windows(before, result)
        self._closer.release_all(result)
        if self._observed is not None and labels:
            observed = self._observed.finish()
            self._observe(observed, self._challenger.finish(observed) if self._challenger is not None else [], result)
        self._incidents(result)
        return result

    def _incident_clocks(self) -> dict[str, float | None]:
        """How far each clock of the alert kinds has come (see ``alerts.CLOCKS``; ``-inf``: nothing yet)."""
        return {
            "events": self._clock.watermark_ms,
            "windows": self._clock.closable_before(),
            "labels": None if self._observed is None else self._observed.released_before,
            "compared": None if self._challenger is None else self._challenger.compared_before,
        }

    def _incidents(self, result: BatchResult) -> None:
        """Resolve the incidents the watermark has left quiet long enough; say which stay open."""
        if self.config.partial_windows:
            return  # one partition of several: the merger keeps the model's incidents
        self._gate.report(self._incident_clocks(), result)

    @property
    def events_per_second(self) -> float:
        """The model's event rate the detectors' thresholds are set for (see :class:`~driftline.stream.monitor.budget.EventRate`)."""
        return self._rate.events_per_second

    def _detector_rate(self) -> float:
        return self._budget.per_event_rate(self._rate.events_per_second)

    @property
    def open_windows(self) -> int:
        """Windows open now (of every version)."""
        return len(self._open)

    @property
    def watermark_ms(self) -> int | None:
        return self._clock.watermark_ms

    @property
    def max_event_time_ms(self) -> int | None:
        """The largest event time seen (``None`` before the first dated event)."""
        return self._clock.max_event_time_ms

    # ------------------------------------------------------------------ checkpoints

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this engine is (JSON-serialisable).

        A shell stores it together with the input offsets it corresponds to; an engine restored
        with :meth:`from_state` and fed the events after those offsets produces exactly what this
        one would have produced.
        """
        return {
            "format": STATE_FORMAT,
            "model": self.contract.model,
            "clock": self._clock.to_state(),
            "gate": self._gate.to_state(),
            "last_closed_start_ms": self._closer.last_closed_start_ms,
            "held_score_alerts": [held.to_dict() for held in self._closer.held],
            "schema_changes_seen": sorted(self._schema_changes_seen),
            "schema_changes_pending": [dataclasses.asdict(record) for record in self._schema_changes_pending],
            "undated_pending": self._undated_pending,
            "undated_by_window": [[start, count] for start, count in sorted(self._undated_by_window.items())],
            "tracks": self._tracks.to_state(),
            "rate": self._rate.to_state(),
            "rows_seen": self._rows_seen,
            "labels": None if self._labels is None else self._labels.to_state(),
            "performance": None if self._performance is None else self._performance.to_state(),
            **self._verdicts.to_state(),
            "observation_order": None if self._observed is None else self._observed.to_state(),
            "estimates": None if self._estimates is None else self._estimates.to_state(),
            "estimated_before": self._estimated_before,
            "challenger": None if self._challenger is None else self._challenger.to_state(),
            "open_windows": [
                {
                    "version": window.version,
                    "start_ms": window.start_ms,
                    "events": window.events,
                    "accepted": window.accepted,
                    "rejected_by_reason": dict(sorted(window.rejected_by_reason.items())),
                    "features": {name: f.to_state() for name, f in window.features.items()},
                }
                for _, window in sorted(self._open.items())
            ],
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        contract: Contract,
        profiles: ReferenceProfile | Mapping[str, ReferenceProfile],
        config: EngineConfig | None = None,
        *,
        default_version: str | None = None,
    ) -> MonitorEngine:
        """An engine continuing from :meth:`to_state` (same contract, profiles and config)."""
        if state.get("format") not in _READABLE_FORMATS:
            raise ValueError(f"state: unsupported engine state format {state.get('format')!r}")
        if state.get("model") != contract.model:
            raise ValueError(f"state: state is for model {state.get('model')!r}, not {contract.model!r}")
        engine = cls(contract, profiles, config, default_version=default_version)
        engine._clock.restore(state["clock"])
        engine._gate.restore(state["gate"])
        engine._closer.last_closed_start_ms = state["last_closed_start_ms"]
        engine._closer.held = [HeldScoreAlert.from_dict(held) for held in state.get("held_score_alerts", ())]
        engine._schema_changes_seen = set(state["schema_changes_seen"])
        engine._schema_changes_pending = [
            SchemaChangeRecord(**{**saved, **{k: tuple(saved[k]) for k in ("missing_fields", "new_fields", "type_changes")}})
            for saved in state["schema_changes_pending"]
        ]
        engine._undated_pending = int(state["undated_pending"])
        engine._undated_by_window = {int(start): int(count) for start, count in state["undated_by_window"]}
        if state["format"] >= 4:
            engine._rate.restore(state["rate"])
            engine._tracks.restore(state["tracks"])
        # The budget may have changed since the checkpoint (--false-alarms-per-month): aim at the current one.
        engine._tracks.retarget(engine._detector_rate())
        engine._rows_seen = int(state["rows_seen"])
        if engine._labels is not None and state.get("labels") is not None:
            engine._labels = LabelJoin.from_state(state["labels"])
            engine._performance = PerformanceWindows.from_state(state["performance"])
        engine._verdicts.restore(state)
        engine._concept = engine._verdicts.concept
        if engine._observed is not None and state.get("observation_order") is not None:
            engine._observed = ObservationOrder.from_state(state["observation_order"], engine.config.label_grace_ms)
        if engine._estimates is not None and state.get("estimates") is not None:
            engine._estimates.restore(state["estimates"])
            engine._estimated_before = state.get("estimated_before")
        if engine._challenger is not None and state.get("challenger") is not None:
            engine._challenger.restore(state["challenger"])
        for saved in state["open_windows"]:
            window = OpenWindow(
                version=saved["version"],
                start_ms=int(saved["start_ms"]),
                events=int(saved["events"]),
                accepted=int(saved["accepted"]),
                rejected_by_reason=Counter(saved["rejected_by_reason"]),
                features={n: field_window_from_state(f) for n, f in saved["features"].items()},
            )
            engine._open[(window.start_ms, window.version)] = window
        return engine

    # ------------------------------------------------------------------ per batch

    def _account_undated_rejections(self, batch: DecodedBatch) -> None:
        """Remember rejected events that carry no event time, dated by the next decoded event.

        They explain a later gap of empty windows (the producer did send, but nothing was usable),
        so they are attributed to the window of the first decoded event that follows them.
        """
        if not batch.rejections:
            return
        rejected = np.fromiter((r.index for r in batch.rejections), dtype=np.int64, count=len(batch.rejections))
        undated = rejected[~np.isin(rejected, batch.rows)]
        if not undated.size:
            return
        after = np.searchsorted(batch.rows, undated)  # position of the next decoded row of each
        dated = after < len(batch.rows)
        length = self.config.window_length_ms
        for position, count in zip(*np.unique(after[dated], return_counts=True)):
            start = int(batch.event_time_ms[position] // length * length)
            self._undated_by_window[start] = self._undated_by_window.get(start, 0) + self._undated_pending + int(count)
            self._undated_pending = 0
        self._undated_pending += int(np.count_nonzero(~dated))

    def _record_schema_changes(self, batch: DecodedBatch, result: BatchResult) -> None:
        """Report each new writer schema once, dated by its first event — never by the batch it came in.

        The date is the first event's own event time when the codec could read it (also from an
        event it rejected for the change), else the latest event time before that event, else the
        event time of the first dated event after it (the change then waits for one, in the
        checkpointed state). Each depends on the stream alone, so every batching — and every replay —
        gives the same record and the same alert id.
        """
        if self._schema_changes_pending and len(batch.rows):
            # Changes of earlier batches that waited for a dated event: the first of this batch.
            first_time = int(batch.event_time_ms[0])
            for record in self._schema_changes_pending:
                self._report_schema_change(dataclasses.replace(record, first_seen_event_time_ms=first_time), result)
            self._schema_changes_pending = []
        for change in batch.schema_changes:
            writer_id = str(change.writer_id)
            if writer_id in self._schema_changes_seen:
                continue
            self._schema_changes_seen.add(writer_id)
            diff = change.diff
            record = SchemaChangeRecord(
                model=self.contract.model,
                writer_id=writer_id,
                compatible=bool(diff.compatible),
                missing_fields=tuple(diff.missing_fields),
                new_fields=tuple(diff.new_fields),
                type_changes=tuple(str(t) for t in diff.type_changes),
                description=diff.describe(),
                first_seen_event_time_ms=change.first_event_time_ms,
            )
            if record.first_seen_event_time_ms is None:
                before = batch.event_time_ms[batch.rows < change.first_index]
                latest = [t for t in (self._clock.max_event_time_ms, int(before.max()) if before.size else None) if t is not None]
                if latest:
                    record = dataclasses.replace(record, first_seen_event_time_ms=max(latest))
            if record.first_seen_event_time_ms is None:
                after = batch.event_time_ms[batch.rows > change.first_index]
                if not after.size:
                    self._schema_changes_pending.append(record)  # dated by the next event that has a time
                    continue
                record = dataclasses.replace(record, first_seen_event_time_ms=int(after[0]))
            self._report_schema_change(record, result)

    def _report_schema_change(self, record: SchemaChangeRecord, result: BatchResult) -> None:
        result.schema_changes.append(record)
        if not self.config.partial_windows:  # one partition of several: the merger alerts once for the model
            self._closer.schema_change_alert(result, record, self.default_version)

    def _process_rows(self, batch: DecodedBatch, result: BatchResult) -> None:
        assignment = self._clock.assign(batch.event_time_ms)
        result.late_events += int(np.count_nonzero(assignment.late))
        row_reasons = _row_rejection_reasons(batch)
        accepted_rows = np.flatnonzero(batch.accepted)
        retargets = [
            RetargetAt(int(accepted_rows[change.position]), self._budget.per_event_rate(change.events_per_second))
            for change in self._rate.advance(batch.event_time_ms[accepted_rows])
        ]
        versions = batch.model_version
        for version in sorted(set(versions.tolist())):
            in_version = versions == version
            last_seen = self._rows_seen + int(np.flatnonzero(in_version)[-1])
            self._run_detectors(version, batch, in_version, last_seen, result, retargets)
            on_time = in_version & ~assignment.late
            starts = assignment.window_start_ms[on_time]
            positions = np.flatnonzero(on_time)
            for start in np.unique(starts):
                rows = positions[starts == start]
                self._add_to_window(self._window(version, int(start)), batch, rows, row_reasons)
        if retargets:  # the tracks this batch did not touch, too
            self._tracks.retarget(retargets[-1].false_alarm_rate)
        self._rows_seen += len(batch.rows)
        self._tracks.trim()

    def _hold_predictions(self, batch: DecodedBatch, result: BatchResult) -> None:
        """Give the accepted predictions to the label join (labels that waited for them join now)."""
        assert self._labels is not None
        accepted = np.flatnonzero(batch.accepted)
        if accepted.size == 0 or self._score_field is None:  # (a score field is checked at start)
            return
        scores = batch.values[self._score_field][accepted]
        classes = None if self._class_field is None else batch.values[self._class_field][accepted]  # NaN: no class
        before = self._label_snapshot()
        joined = self._labels.add_predictions(batch.event_id[accepted].tolist(), batch.event_time_ms[accepted], scores, classes)
        if self._estimates is not None:
            times = batch.event_time_ms[accepted]
            on_time = np.ones(times.size, dtype=bool) if self._estimated_before is None else times >= self._estimated_before
            self._estimates.add(times[on_time], scores[on_time], None if classes is None else classes[on_time])
        if self._challenger is not None:
            self._challenge(batch, accepted, scores, classes)
        self._account_joined(joined, result, before)

    def _challenge(self, batch: DecodedBatch, accepted: np.ndarray, scores: np.ndarray, classes: np.ndarray | None) -> None:
        """Give the challenger the accepted predictions it samples: features (nulls as None) and the champion's decision."""
        assert self._challenger is not None
        run = self._challenger
        ids = batch.event_id[accepted].tolist()
        taken = np.fromiter((run.takes(i) for i in ids), dtype=bool, count=len(ids)) if run.sample < 1.0 else np.ones(len(ids), bool)
        rows = accepted[taken]
        columns = []
        for name in run.feature_names:
            values = batch.values[name][rows]
            columns.append([None if v != v else v for v in values.tolist()] if values.dtype.kind == "f" else values.tolist())
        decided = scores[taken] >= 0.5
        if classes is not None:
            chosen = classes[taken]
            decided = np.where(np.isnan(chosen), decided, chosen == 1.0)
        run.add_predictions([ids[i] for i in np.flatnonzero(taken)], batch.event_time_ms[rows].tolist(), list(zip(*columns, strict=True))
                            if columns else [()] * int(taken.sum()), decided.astype(int).tolist())

    def _label_snapshot(self) -> dict[str, int]:
        assert self._labels is not None
        return {**self._labels.label_counts, **{f"prediction_{k}": v for k, v in self._labels.prediction_counts.items()}}

    def _account_joined(self, joined: JoinedLabels | None, result: BatchResult, before: dict[str, int]) -> None:
        assert self._labels is not None and self._performance is not None
        after = self._label_snapshot()
        for key, count in after.items():
            if count != before.get(key, 0):
                result.label_counts[key] = result.label_counts.get(key, 0) + count - before.get(key, 0)
        for start in self._performance.add(joined):
            self._report_performance(start, result)
        if self._observed is not None:
            self._observed.add(joined)
            watermarks = (self._labels.prediction_watermark, self._labels.label_watermark)
            observed = self._observed.release(*watermarks)
            self._observe(observed, self._challenger.advance(*watermarks, observed) if self._challenger is not None else [], result)
        # A window whose predictions no label can join any more gets no more labels: let it go.
        reach = self.performance_settled_before
        assert reach is not None
        self._performance.forget([s for s in self._performance.windows() if s < reach])
        if self._estimates is not None:
            self._estimates.forget([s for s in self._estimates.windows() if s < reach])

    def _report_performance(self, start: int, result: BatchResult) -> None:
        """The window's performance now: a record (one partition of several: its accumulators, for the merger)."""
        assert self._performance is not None
        if self.config.partial_windows:
            result.performance_partials.append(PerformancePartial(
                start, self._performance.accumulator(start), None if self._estimates is None else self._estimates.sums(start)))
            return
        estimate = None if self._estimates is None else self._estimates.estimate(start)
        result.performance_windows.append(self._verdicts.performance_window(start, self._performance.metrics(start), estimate))

    @property
    def label_progress(self) -> LabelProgress | None:
        """How far this engine's labels go, for a split model's merger (``None`` without a label horizon).

        ``done_before``: labels observed before it were released in observation order and the
        challenger ran up to it (``None`` with neither concept test nor challenger).
        """
        if self._labels is None:
            return None
        return LabelProgress(None if self._observed is None else self._observed.released_before,
                             self._labels.settled_before, self._rate.events_per_second)

    def _observe(self, observed: JoinedLabels, complete: list[tuple[int, list[int]]], result: BatchResult) -> None:
        """Labels released in observation order, and the challenger's complete windows: tested here, or sent to the merger."""
        errors = self._concept.joined_errors(observed) if self._concept is not None and len(observed) else None
        if self.config.partial_windows:
            if errors is not None:
                result.observed_errors.append(
                    ObservedErrors(list(observed.label_times_ms), list(observed.prediction_ids), errors.tolist()))
            result.challenger_partials.extend(ChallengerPartial(start, (c[0], c[1], c[2], c[3], c[4])) for start, c in complete)
            return
        if errors is not None:
            self._verdicts.concept_drift(errors, observed.label_times_ms, self._rate.events_per_second, result)
        self._verdicts.compare_challenger(complete, result)

    def _estimate_closed_windows(self, starts: list[int], result: BatchResult) -> None:
        """At a window's close: its estimate (before any label), and an alert if it fell significantly."""
        assert self._estimates is not None
        for start in starts:
            estimate = self._estimates.estimate(start)
            if estimate is None:
                continue
            self._report_performance(start, result)
            if not self.config.partial_windows:  # (a split model's merger checks the model's estimate)
                self._verdicts.check_estimate(start, estimate, result)

    def _profile(self, version: str) -> ReferenceProfile:
        """The reference of a model version: its own profile, else the default version's."""
        return self.profiles.get(version, self.profiles[self.default_version])

    def _run_detectors(
        self, version: str, batch: DecodedBatch, rows: np.ndarray, last_seen: int, result: BatchResult, retargets: list[RetargetAt]
    ) -> None:
        for hit in self._tracks.run(version, batch, rows, last_seen, retargets):
            self._signal(hit, batch, result)

    def _signal(self, hit: DetectorHit, batch: DecodedBatch, result: BatchResult) -> None:
        signal = DetectorSignal(
            model=self.contract.model,
            model_version=hit.model_version,
            feature=hit.feature,
            detector=hit.detector,
            event_index=hit.event_index,
            event_time_ms=int(batch.event_time_ms[hit.row]),
            statistic=hit.statistic,
            evidence=hit.evidence,
        )
        result.signals.append(signal)
        if self.config.partial_windows:  # one partition of several: the merger gates the model's signals
            result.partial_signals.append(PartialSignal(signal, hit.threshold, self._rows_seen + hit.row))
        else:
            self._closer.signal_alert(result, signal, hit.threshold)

    def _window(self, version: str, start_ms: int) -> OpenWindow:
        key = (start_ms, version)
        window = self._open.get(key)
        if window is None:
            profile = self._profile(version)
            window = OpenWindow(version=version, start_ms=start_ms)
            for spec in self.fields:
                window.features[spec.name] = new_field_window(profile.features[spec.name])
            self._open[key] = window
        return window

    def _add_to_window(self, window: OpenWindow, batch: DecodedBatch, rows: np.ndarray, row_reasons: np.ndarray) -> None:
        accepted_mask = batch.accepted[rows]
        window.events += len(rows)
        window.accepted += int(np.count_nonzero(accepted_mask))
        if not accepted_mask.all():
            window.rejected_by_reason.update(row_reasons[rows[~accepted_mask]].tolist())
        accepted_rows = rows[accepted_mask]
        for spec in self.fields:
            window.features[spec.name].add(
                batch.values[spec.name][accepted_rows],
                batch.status[spec.name][accepted_rows],
                batch.status[spec.name][rows],
            )

    # ------------------------------------------------------------------ window close

    def _close_windows(self, before_ms: int | None, result: BatchResult) -> None:
        if before_ms is None:
            return
        for key in sorted(k for k in self._open if k[0] < before_ms):
            window = self._open.pop(key)
            explained = [start for start in self._undated_by_window if start <= window.start_ms]
            undated = sum(self._undated_by_window.pop(start) for start in explained)
            if self.config.partial_windows:
                result.window_partials.append(
                    WindowPartial(
                        model=self.contract.model,
                        model_version=window.version,
                        window_start_ms=window.start_ms,
                        window_length_ms=self.config.window_length_ms,
                        events=window.events,
                        accepted=window.accepted,
                        rejected_by_reason=tuple(sorted(window.rejected_by_reason.items())),
                        undated=undated,
                        fields={name: state.to_state() for name, state in window.features.items()},
                    )
                )
            else:
                self._closer.close(window, result, undated=undated)
        if self._estimates is not None:
            done = self._estimated_before if self._estimated_before is not None else -(2**62)
            self._estimate_closed_windows([s for s in self._estimates.windows() if done <= s < before_ms], result)
            self._estimated_before = max(before_ms, done)


def _reference_rate(profiles: Iterable[ReferenceProfile]) -> float:
    """The highest event rate among the profiles' references (the fallback when none has timestamps)."""
    rates = [profile.events_per_second for profile in profiles if profile.events_per_second is not None]
    return max(rates, default=FALLBACK_EVENTS_PER_SECOND)


def _row_rejection_reasons(batch: DecodedBatch) -> np.ndarray:
    """Reason name of each decoded-but-rejected row ('' for accepted rows)."""
    reasons = np.full(len(batch.rows), "", dtype=object)
    if not batch.rejections:
        return reasons
    by_input = {r.index: r.reason.value for r in batch.rejections}
    for position in np.flatnonzero(~batch.accepted).tolist():
        reasons[position] = by_input.get(int(batch.rows[position]), "unknown")
    return reasons

