"""The embedded runner: codec → engine → sinks in one process, no external service.

``driftline demo`` drives it with the synthetic stream; a Kafka worker and ``driftline replay``
drive the same :class:`~driftline.stream.engine.MonitorEngine` with the same codec, so a run here
computes exactly what they compute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from driftline.schemas.codec import Codec
from driftline.sinks.metrics import DriftlineMetrics
from driftline.sinks.sql import SqlSink

from driftline.stream.monitor.engine import MonitorEngine
from driftline.stream.monitor.results import Alert, BatchResult, iso_time

__all__ = ["EmbeddedRunner", "RunTotals", "format_alert"]


@dataclass
class RunTotals:
    """Counts over a whole run; ``consumed == accepted + rejected`` always holds."""

    consumed: int = 0
    accepted: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    late_events: int = 0
    alerts: list[Alert] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


class EmbeddedRunner:
    """Decode, monitor and sink batches of raw event bytes for one model.

    Parameters
    ----------
    codec, engine
        The codec that turns bytes into a :class:`DecodedBatch`, and the engine of the model.
    sink
        Optional SQL sink; flushed after every ``flush_every`` batches and at the end.
    metrics
        Optional Prometheus metrics updated from every result.
    on_result
        Optional callback receiving every :class:`BatchResult` (the demo prints alerts with it).
    """

    def __init__(
        self,
        codec: Codec,
        engine: MonitorEngine,
        *,
        sink: SqlSink | None = None,
        metrics: DriftlineMetrics | None = None,
        on_result: Callable[[BatchResult], None] | None = None,
        flush_every: int = 20,
    ) -> None:
        if flush_every <= 0:
            raise ValueError(f"flush_every must be positive, got {flush_every}")
        self.codec = codec
        self.engine = engine
        self.sink = sink
        self.metrics = metrics
        self.on_result = on_result
        self.flush_every = flush_every
        self.totals = RunTotals()
        self._batches_since_flush = 0

    def process(self, payloads: Sequence[bytes]) -> BatchResult:
        """Run one batch of raw messages through the codec and the engine."""
        started = time.perf_counter()
        decoded = self.codec.decode_batch(payloads, model=self.engine.contract.model)
        result = self.engine.process(decoded)
        self.totals.consumed += len(payloads)
        self._account(result, started)
        return result

    def finish(self) -> BatchResult:
        """Close all open windows and flush the sink."""
        started = time.perf_counter()
        result = self.engine.flush()
        self._account(result, started)
        if self.sink is not None:
            self.sink.flush()
        return result

    def run(self, batches: Iterable[Sequence[bytes]]) -> RunTotals:
        """Process every batch, then :meth:`finish`."""
        for payloads in batches:
            self.process(payloads)
        self.finish()
        return self.totals

    def _account(self, result: BatchResult, started: float) -> None:
        totals = self.totals
        totals.accepted += result.accepted
        for reason, count in result.rejected_by_reason.items():
            totals.rejected_by_reason[reason] = totals.rejected_by_reason.get(reason, 0) + count
        totals.late_events += result.late_events
        totals.alerts.extend(result.alerts)
        if self.metrics is not None:
            self.metrics.observe(
                result,
                now_s=time.time(),
                model=self.engine.contract.model,
                processing_seconds=time.perf_counter() - started,
            )
        if self.sink is not None:
            self.sink.add(result)
            self._batches_since_flush += 1
            if self._batches_since_flush >= self.flush_every:
                self.sink.flush()
                self._batches_since_flush = 0
        if self.on_result is not None:
            self.on_result(result)
        totals.seconds += time.perf_counter() - started


def format_alert(alert: Alert) -> str:
    """One line for a terminal: when, what, which feature, how strong."""
    where = alert.feature or "-"
    return (
        f"ALERT {alert.severity.upper():8s} {iso_time(alert.event_time_ms)} {alert.kind:18s} {where:22s} "
        f"{alert.detector} score={alert.score:.4g} threshold={alert.threshold:.4g} :: {alert.message}"
    )
