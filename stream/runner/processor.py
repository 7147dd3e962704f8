"""One model partition's processing: decode, dead-letter, monitor, and checkpoint atomically.

The shell around the engine that gives the exactly-once *effect* (DESIGN decision 7), without
knowing about Faust — the Faust agent (``stream/agents.py``) feeds it, and so can any other consumer:

* :meth:`PartitionProcessor.process` takes messages in offset order. Messages below the checkpoint's
  ``next_offset`` were already processed before a restart: they are skipped, so at-least-once
  redelivery never double-counts. The rest are decoded by the codec; rejections go to the
  dead-letter topic; the decoded batch goes through the engine; its results are buffered in the
  SQL sink.
* :meth:`PartitionProcessor.checkpoint` waits until the dead-letter topic acknowledged every
  rejection, then writes the buffered results **and** the engine's state with the next offset in
  one database transaction. Only after that may the caller acknowledge the messages to Kafka.
* On (re)start the processor restores the engine from the checkpoint, so detector and window state
  always match the offset the results were committed up to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from driftline.schemas.codec import Codec
from driftline.schemas.contract import Contract
from driftline.sinks.metrics import DriftlineMetrics
from driftline.sinks.sql import Checkpoint, SqlSink

from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import BatchResult

if TYPE_CHECKING:
    from driftline.stream.kafka.deadletter import DeadLetterProducer

__all__ = ["InboundMessage", "PartitionProcessor", "ProcessorCounts"]


@dataclass(frozen=True)
class InboundMessage:
    """One Kafka message as the processor needs it."""

    offset: int
    value: bytes | None
    timestamp_ms: int  # the message's Kafka timestamp (producer time for CreateTime topics)


@dataclass
class ProcessorCounts:
    """Cumulative counts since the partition's first message; stored with every checkpoint.

    ``consumed == accepted + dead_lettered`` holds after every :meth:`PartitionProcessor.process`.
    """

    consumed: int = 0
    accepted: int = 0
    dead_lettered: int = 0


class PartitionProcessor:
    """Processes one partition of a model's prediction topic.

    Parameters
    ----------
    topic, partition, consumer_group
        Where the messages come from; the checkpoint's key.
    contract, profiles, config
        The model's contract, its reference profile(s) by version and the engine's tunables.
    codec
        Decodes and checks the raw messages.
    sink
        The SQL sink; the checkpoint is written in the same transaction as the results.
    deadletter
        Where rejected messages go.
    metrics
        Optional Prometheus metrics.
    """

    def __init__(
        self,
        *,
        topic: str,
        partition: int,
        consumer_group: str,
        contract: Contract,
        profiles: Mapping[str, ReferenceProfile],
        codec: Codec,
        sink: SqlSink,
        deadletter: DeadLetterProducer,
        config: EngineConfig | None = None,
        metrics: DriftlineMetrics | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.consumer_group = consumer_group
        self.contract = contract
        self.codec = codec
        self.sink = sink
        self.deadletter = deadletter
        self.metrics = metrics
        self.skipped = 0  # redelivered messages already covered by the checkpoint (this process only)
        self.uncommitted = 0  # messages processed since the last checkpoint
        self._oldest_uncommitted_ms: int | None = None
        self._uncommitted_timestamps: list[np.ndarray] = []
        self.record_latencies = False
        self._checkpoint_lock = threading.Lock()
        self.latencies_ms: list[np.ndarray] = []  # per committed message, when record_latencies is set
        checkpoint = sink.load_checkpoint(consumer_group, topic, partition)
        self.restored = checkpoint is not None  # started from a checkpoint (a restart, a rebalance)
        if checkpoint is None:
            self.engine = MonitorEngine(contract, profiles, config)
            self.next_offset: int | None = None
            self.counts = ProcessorCounts()
        else:
            self.engine = MonitorEngine.from_state(checkpoint.engine_state, contract, profiles, config)
            self.next_offset = checkpoint.next_offset
            self.counts = ProcessorCounts(checkpoint.consumed, checkpoint.accepted, checkpoint.dead_lettered)

    def process(self, messages: Sequence[InboundMessage]) -> BatchResult | None:
        """Process messages of this partition, in offset order; ``None`` when all were already done.

        Raises
        ------
        ValueError
            The offsets are not increasing (the caller mixed partitions or reordered messages).
        """
        fresh = [m for m in messages if self.next_offset is None or m.offset >= self.next_offset]
        self.skipped += len(messages) - len(fresh)
        if not fresh:
            return None
        offsets = [m.offset for m in fresh]
        if any(b <= a for a, b in zip(offsets, offsets[1:])):
            raise ValueError(f"messages: offsets of {self.topic}[{self.partition}] are not increasing")
        started = time.perf_counter()
        payloads = [m.value if m.value is not None else b"" for m in fresh]
        decoded = self.codec.decode_batch(payloads, model=self.contract.model)
        for rejection in decoded.rejections:
            self.deadletter.send(
                fresh[rejection.index].value,
                topic=self.topic,
                partition=self.partition,
                offset=offsets[rejection.index],
                rejection=rejection,
            )
        result = self.engine.process(decoded)
        self.sink.add(result)
        self.counts.consumed += len(fresh)
        self.counts.accepted += decoded.n_accepted
        self.counts.dead_lettered += decoded.n_rejected
        self.next_offset = offsets[-1] + 1
        self.uncommitted += len(fresh)
        if self._oldest_uncommitted_ms is None:  # the first batch since the last checkpoint
            self._oldest_uncommitted_ms = min(m.timestamp_ms for m in fresh)
        if self.record_latencies:
            self._uncommitted_timestamps.append(np.fromiter((m.timestamp_ms for m in fresh), dtype=np.int64, count=len(fresh)))
        if self.metrics is not None:
            self.metrics.observe(
                result,
                now_s=time.time(),
                model=self.contract.model,
                processing_seconds=time.perf_counter() - started,
            )
        return result

    def checkpoint(self) -> Checkpoint | None:
        """Make everything processed so far durable; return the checkpoint written (``None``: nothing new).

        Raises
        ------
        DeadLetterError, SinkError
            Nothing of this checkpoint was committed; the caller must not acknowledge the messages.
            The processor is then out of step with the database: the caller must discard it and
            build a new one, which restores from the last checkpoint that did commit.
        """
        # A worker stopping while a checkpoint runs in the executor calls this again from its agent's
        # cleanup: the second call waits for the first and then finds nothing new.
        with self._checkpoint_lock:
            return self._checkpoint()

    def _checkpoint(self) -> Checkpoint | None:
        if self.uncommitted == 0 or self.next_offset is None:
            return None
        self.deadletter.flush()
        checkpoint = Checkpoint(
            consumer_group=self.consumer_group,
            topic=self.topic,
            partition=self.partition,
            next_offset=self.next_offset,
            engine_state=self.engine.to_state(),
            consumed=self.counts.consumed,
            accepted=self.counts.accepted,
            dead_lettered=self.counts.dead_lettered,
        )
        self.sink.flush(checkpoints=[checkpoint])
        committed_ms = time.time() * 1000.0
        if self.metrics is not None and self._oldest_uncommitted_ms is not None:
            self.metrics.observe_commit(self.contract.model, (committed_ms - self._oldest_uncommitted_ms) / 1000.0)
        if self.record_latencies and self._uncommitted_timestamps:
            self.latencies_ms.append(committed_ms - np.concatenate(self._uncommitted_timestamps))
        self._uncommitted_timestamps = []
        self._oldest_uncommitted_ms = None
        self.uncommitted = 0
        return checkpoint
