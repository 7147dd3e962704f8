"""The Faust agents of ``driftline worker``: one per model topic, feeding partition runners in batches.

Acknowledgement protocol (the exactly-once effect, DESIGN decision 7). Faust commits a message's
offset to Kafka once the message is acknowledged. ``Stream.take_events`` acknowledges a batch as
soon as the agent asks for the next one — before the batch's results are durable. So the agent
takes one extra reference on every message (``Message.incref``, the mechanism Faust uses for a
message shared by several streams) and releases it only after :meth:`PartitionRunner.checkpoint`
committed the batch's results, engine state and next offset to the database. Kafka's committed
offset therefore never passes the database checkpoint; messages between the two are redelivered
after a crash and skipped by the runner, which knows the checkpoint's offset.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
from faust.types import TP, EventT

from driftline.sinks import DriftlineMetrics
from driftline.stream.runner import EncodedMessage, PartitionRunner

from .settings import WorkerSettings

__all__ = ["MonitorAgents"]

log = logging.getLogger("driftline.worker")

RunnerFactory = Callable[[str, str, int], PartitionRunner]  # (model, topic, partition)


class MonitorAgents:
    """Registers the agents and the checkpoint timer on a Faust app and owns the partition runners.

    Parameters
    ----------
    app
        The Faust app (``stream.app.create_app``).
    settings
        The worker's settings.
    make_runner
        Builds (and restores from its checkpoint) the runner of a model's topic partition.
    checkpointed_offset
        ``(topic, partition) -> next_offset`` of the database checkpoint (needed with ``end_offsets``).
    metrics
        Where the consumer lag is reported.
    end_offsets
        With ``settings.stop_at_end``: the end offset of every model topic's partition 0 when the
        worker started; the worker stops once the consumer group's checkpoints reached all of them
        (whichever worker of the group processed them).
    """

    def __init__(
        self,
        app: faust.App,
        settings: WorkerSettings,
        make_runner: RunnerFactory,
        *,
        checkpointed_offset: Callable[[str, int], int | None] | None = None,
        end_offsets: dict[str, int] | None = None,
        metrics: DriftlineMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.app = app
        self.settings = settings
        self.make_runner = make_runner
        self.end_offsets = end_offsets or {}
        self.checkpointed_offset = checkpointed_offset
        self.runners: dict[tuple[str, int], PartitionRunner] = {}
        self._unacknowledged: dict[tuple[str, int], list[EventT[Any]]] = defaultdict(list)
        self._lock = asyncio.Lock()
        self._last_checkpoint = time.monotonic()
        self._stopping = False
        for model, topic_name in settings.topics.items():
            topic = app.topic(topic_name, key_type=bytes, value_type=bytes, partitions=1)
            app.agent(topic, name=f"driftline.monitor.{model}")(self._agent(model, topic_name))
        app.timer(settings.checkpoint_interval_seconds, name="driftline.checkpoint")(self._on_timer)
        app.on_partitions_revoked.connect(self._on_partitions_revoked)  # type: ignore[arg-type]  # mode types handlers as returning Awaitable | None; a coroutine function is what it awaits

    # -- agents ---------------------------------------------------------------------------------

    def _agent(self, model: str, topic: str) -> Callable[[faust.StreamT[Any]], Any]:
        async def monitor(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
            try:
                # take_events is on faust.Stream, not on the StreamT protocol Faust annotates agents with.
                async for events in stream.take_events(  # type: ignore[attr-defined]
                    self.settings.batch_max_events, within=self.settings.batch_within_seconds
                ):
                    async with self._lock:
                        try:
                            self._process(model, topic, events)
                        except Exception as exc:
                            # The engine's state may be half-updated: stop, and let the next worker
                            # restore from the last checkpoint instead of going on from here.
                            log.exception("processing a batch of %s failed, stopping the worker", topic)
                            self._stopping = True
                            await self.app.crash(exc)
                            return
                        if time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_interval_seconds:
                            await self._checkpoint_all()
                    yield None
            finally:
                # A graceful stop: make what was processed durable so the next worker need not redo it.
                if not self._stopping:
                    self._checkpoint_all_blocking()

        monitor.__name__ = f"monitor_{model}"
        return monitor

    def _process(self, model: str, topic: str, events: list[EventT[Any]]) -> None:
        by_partition: dict[int, list[EventT[Any]]] = defaultdict(list)
        for event in events:
            # Held until the checkpoint that covers it committed (see the module docstring).
            event.message.incref()
            by_partition[event.message.partition].append(event)
        for partition, partition_events in by_partition.items():
            key = (topic, partition)
            runner = self.runners.get(key)
            if runner is None:
                runner = self.runners[key] = self.make_runner(model, topic, partition)
                log.info(
                    "%s[%d]: %s", topic, partition,
                    f"restored from checkpoint at offset {runner.next_offset}" if runner.restored else "no checkpoint, starting fresh",
                )
            runner.process(
                [
                    EncodedMessage(
                        offset=event.message.offset,
                        value=event.value,
                        timestamp_ms=int(event.message.timestamp * 1000) if event.message.timestamp else 0,
                    )
                    for event in partition_events
                ]
            )
            self._unacknowledged[key].extend(partition_events)

    async def _on_partitions_revoked(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """A rebalance took partitions away: checkpoint and forget their runners.

        Another worker continues from the database checkpoint; if the partition comes back later,
        its runner is restored from the database again, never from stale memory.
        """
        revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
        loop = asyncio.get_running_loop()
        async with self._lock:
            for tp in revoked:
                key = (tp.topic, tp.partition)
                runner = self.runners.pop(key, None)
                if runner is None:
                    continue
                try:
                    await loop.run_in_executor(None, runner.checkpoint)
                except Exception as exc:  # noqa: BLE001 - the new owner redoes what was not committed
                    log.error("checkpoint of revoked %s[%d] failed: %s", *key, exc)
                    self._unacknowledged.pop(key, None)
                else:
                    self._acknowledge(key)
                log.info("%s[%d]: revoked at offset %s", *key, runner.next_offset)

    # -- checkpoints ----------------------------------------------------------------------------

    async def _on_timer(self) -> None:
        # For a quiet stream: a busy agent checkpoints by itself after each batch once the interval passed.
        if self._lock.locked() or time.monotonic() - self._last_checkpoint < self.settings.checkpoint_interval_seconds:
            return
        async with self._lock:
            await self._checkpoint_all()

    async def _checkpoint_all(self) -> None:
        loop = asyncio.get_running_loop()
        for key, runner in list(self.runners.items()):
            try:
                # Blocking I/O (dead-letter acknowledgements, the database) off the event loop; the
                # lock keeps the agents from touching the runner meanwhile.
                await loop.run_in_executor(None, runner.checkpoint)
            except Exception as exc:  # noqa: BLE001 - any failure: nothing of it was committed, stop
                log.error("checkpoint of %s[%d] failed, stopping the worker: %s", *key, exc)
                self._stopping = True
                await self.app.crash(exc)
                return
            self._acknowledge(key)
            self._report_lag(key, runner)
        self._last_checkpoint = time.monotonic()
        self._maybe_stop()

    def _checkpoint_all_blocking(self) -> None:
        for key, runner in list(self.runners.items()):
            try:
                runner.checkpoint()
            except Exception as exc:  # noqa: BLE001 - the worker is stopping anyway; the next one redoes this part
                log.error("final checkpoint of %s[%d] failed: %s", *key, exc)
                continue
            self._acknowledge(key)

    def _acknowledge(self, key: tuple[str, int]) -> None:
        events = self._unacknowledged.pop(key, [])
        for event in events:
            event.ack()

    def _report_lag(self, key: tuple[str, int], runner: PartitionRunner) -> None:
        metrics = self.metrics
        if metrics is None or runner.next_offset is None:
            return
        tp = TP(*key)
        if tp not in self.app.consumer.assignment():  # revoked meanwhile
            return
        highwater = self.app.consumer.highwater(tp)
        if highwater is not None:
            metrics.set_consumer_lag(runner.contract.model, max(0, highwater - runner.next_offset))

    def _maybe_stop(self) -> None:
        if not self.settings.stop_at_end or self._stopping:
            return
        for topic, end in self.end_offsets.items():
            runner = self.runners.get((topic, 0))
            if runner is not None:
                if runner.uncommitted or (runner.next_offset or 0) < end:
                    return
            elif end > 0:
                # Not ours (yet, or any more): ask the database how far the group has come. A
                # runner is only ever built for an assigned partition, never from here — it
                # would hold state that goes stale while another worker moves on.
                done = self.checkpointed_offset(topic, 0) if self.checkpointed_offset is not None else None
                if (done or 0) < end:
                    return
        log.info("every model topic is processed up to its end offset at start: stopping")
        self._stopping = True
        # The same path as `kill -TERM`: Faust's worker stops its services gracefully.
        os.kill(os.getpid(), signal.SIGTERM)
