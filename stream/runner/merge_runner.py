"""The runner of one partition of the window-partials topic: it merges split models' partials into their windows.

It keeps the checkpoint protocol of every runner (:class:`~driftline.stream.runner.runner.CheckpointedRunner`):
the mergers' state (:class:`~driftline.stream.monitor.merge.WindowMerger`, one per model whose
messages land in this partition) is committed with the merged windows and alerts and the next
offset of the partials partition, in one transaction. A partials message below that offset is
skipped on redelivery; one the partition runners sent twice (after a restart of theirs) is
recognised by the merger. So the model's windows and alerts have the exactly-once effect of a model
on one partition.

A message that is not a partials message, or names a model this worker does not monitor, is
dead-lettered (``corrupt`` / ``unknown_model``) and counted: consumed = accepted + dead-lettered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftline.schemas.contract import Contract
from driftline.schemas.results import Rejection, RejectReason
from driftline.stream.monitor.config import EngineConfig
from driftline.stream.monitor.merge import WindowMerger, partial_signal_from_dict, schema_change_from_dict, window_partial_from_dict
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import BatchResult

from .partials import (
    PartialsMessage,
    challenger_partials_from_body,
    decode_partials_message,
    label_progress_from_body,
    observed_errors_from_body,
    performance_partials_from_body,
)
from .ports import CheckpointStore, DeadLetterPort, MessageBatch, MetricsPort, PartialsPort, PartitionKey
from .runner import CheckpointedRunner, ResultObserver

__all__ = ["MergeRunner", "MergedModel"]

log = logging.getLogger("driftline.merge")

STATE_FORMAT = 1


@dataclass(frozen=True)
class MergedModel:
    """What the merger of a split model needs: the same contract, profiles and tunables as its partitions' engines."""

    contract: Contract
    profiles: Mapping[str, ReferenceProfile]
    config: EngineConfig


class MergeRunner(CheckpointedRunner):
    """Merges the partials of the split models whose messages land in one partition of the partials topic.

    Parameters
    ----------
    key, store, deadletters, metrics, on_result, alerts
        As for :class:`CheckpointedRunner` (``key`` names the partials topic's partition).
    models
        The split models this worker monitors, by name.
    """

    def __init__(
        self,
        *,
        key: PartitionKey,
        models: Mapping[str, MergedModel],
        store: CheckpointStore,
        deadletters: DeadLetterPort,
        metrics: MetricsPort | None = None,
        on_result: ResultObserver | None = None,
        alerts: PartialsPort | None = None,
    ) -> None:
        self.models = models
        self.mergers: dict[str, WindowMerger] = {}
        self._orphans: dict[str, Any] = {}  # merger states of models this worker does not monitor: kept
        self._parts: list[tuple[str | None, BatchResult]] = []
        super().__init__(key=key, store=store, deadletters=deadletters, metrics=metrics, on_result=on_result, alerts=alerts)

    @property
    def model(self) -> str | None:
        return None  # several models: each result names its own

    def _start(self) -> None:
        self.mergers = {}

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"state: unsupported merge state format {state.get('format')!r}")
        self.mergers = {}
        for model, saved in state["mergers"].items():
            setup = self.models.get(model)
            if setup is None:  # a model no longer monitored here: its merger state waits for a worker that does
                log.warning("%s: state of model %r kept, but this worker does not monitor it", self.key, model)
                self._orphans[model] = saved
                continue
            self.mergers[model] = WindowMerger.from_state(saved, setup.contract, setup.profiles, setup.config)

    def _state(self) -> dict[str, Any]:
        mergers = {**self._orphans, **{model: merger.to_state() for model, merger in self.mergers.items()}}
        return {"format": STATE_FORMAT, "mergers": dict(sorted(mergers.items()))}

    def _merger(self, model: str) -> WindowMerger:
        merger = self.mergers.get(model)
        if merger is None:
            setup = self.models[model]
            merger = self.mergers[model] = WindowMerger(setup.contract, setup.profiles, setup.config)
        return merger

    def _run(self, batch: MessageBatch) -> tuple[BatchResult, int, Sequence[Rejection]]:
        rejections: list[Rejection] = []
        by_model: dict[str, BatchResult] = {}
        for index, value in enumerate(batch.values):
            try:
                message = decode_partials_message(value)
                if message.model not in self.models:
                    rejections.append(Rejection(RejectReason.UNKNOWN_MODEL, index, None, f"model {message.model!r} is not monitored by this worker"))
                    continue
                apply = _decoded(message)
            except (KeyError, TypeError, ValueError) as exc:
                rejections.append(Rejection(RejectReason.CORRUPT, index, None, f"not a window-partials message: {exc}"[:500]))
                continue
            late_before = self._merger(message.model).late_partials
            ignored_before = self._merger(message.model).ignored_labels
            result = by_model.setdefault(message.model, BatchResult())
            apply(self._merger(message.model), message, result)
            if self._merger(message.model).ignored_labels > ignored_before and not ignored_before:
                log.warning(
                    "%s: partition %d of %s sends labels, and this worker joins none for the model (no --label-horizon): "
                    "its label messages are ignored (counted in the merger's state)", message.model, message.partition, message.topic,
                )
            if self._merger(message.model).late_partials > late_before:
                log.warning(
                    "%s: partition %d of %s sent a window the model had already closed (it was idle); "
                    "its events count as late", message.model, message.partition, message.topic,
                )
        self._parts = sorted(by_model.items())
        combined = BatchResult()
        for _, part in self._parts:
            combined.extend(part)
        return combined, len(batch) - len(rejections), rejections

    def _by_model(self, result: BatchResult) -> list[tuple[str | None, BatchResult]]:
        parts, self._parts = self._parts, []
        return list(parts) if parts else [(None, result)]

    def _flush(self) -> BatchResult:
        return BatchResult()  # a merger closes windows only when every partition has passed them


Applier = Callable[[WindowMerger, PartialsMessage, BatchResult], None]


def _decoded(message: PartialsMessage) -> Applier:
    """Decode ``message``'s body fully (so a malformed one changes nothing), and return how to apply it."""
    body = message.body
    if message.kind == "window":
        partial = window_partial_from_dict(body["partial"])
        if partial.model != message.model:
            raise ValueError(f"a partial of model {partial.model!r} in a message of {message.model!r}")
        return lambda merger, m, result: merger.add_window(m.partition, partial, result)
    if message.kind == "signals":
        signals = [partial_signal_from_dict(item) for item in body["signals"]]
        return lambda merger, m, result: merger.add_signals(m.partition, signals, result)
    if message.kind == "schema_change":
        record = schema_change_from_dict(body["record"])
        if record.first_seen_event_time_ms is None:
            raise ValueError("a schema change without its first event time")
        return lambda merger, m, result: merger.add_schema_change(m.partition, record, result)
    if message.kind == "performance":
        performance = performance_partials_from_body(body)
        return lambda merger, m, result: merger.add_performance(m.partition, performance, result)
    if message.kind == "errors":
        observed = observed_errors_from_body(body)
        return lambda merger, m, result: merger.add_errors(m.partition, observed)
    if message.kind == "challenger":
        compared = challenger_partials_from_body(body)
        return lambda merger, m, result: merger.add_challenger(m.partition, compared)
    labels = label_progress_from_body(body)
    max_time = body["max_event_time_ms"]
    max_event_time_ms = None if max_time is None else int(max_time)
    idle = body["idle"]
    if not isinstance(idle, bool):
        raise ValueError(f"idle is {idle!r}, not a boolean")
    return lambda merger, m, result: merger.advance(m.partition, m.partitions, max_event_time_ms, idle=idle, result=result,
                                                    labels=labels)
