"""The one partition runner: decode, dead-letter, monitor, and checkpoint atomically.

Every shell drives the monitor engine through this class (DESIGN decision 1): ``driftline worker``
with a Kafka dead-letter producer and a PostgreSQL checkpoint store, ``driftline demo`` with an
in-memory dead-letter list and a SQLite store, replay with its own. Only the ports differ, so the
same messages give the same results whoever runs them (tested byte for byte).

The protocol of the exactly-once *effect* (DESIGN decision 7):

* :meth:`PartitionRunner.process` takes messages of one partition in offset order. Messages below
  the checkpoint's ``next_offset`` were already processed before a restart: they are skipped, so
  at-least-once redelivery never double-counts. The rest are decoded by the codec; rejections go to
  the dead-letter port; the decoded batch goes through the engine; its results wait for the next
  checkpoint.
* :meth:`PartitionRunner.checkpoint` waits until the dead-letter port made every rejection durable,
  then commits the waiting results **and** the engine's state with the next offset through the
  checkpoint store, in one transaction. Only after that may the caller acknowledge the messages to
  their source.
* On (re)start the runner restores the engine from the store's checkpoint, so detector and window
  state always match the offset the results were committed up to.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from driftline.schemas.codec import Codec
from driftline.schemas.contract import Contract
from driftline.schemas.results import Rejection, RejectReason
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import BatchResult, Checkpoint

from .ports import CheckpointStore, DeadLetterPort, EncodedMessage, MessageBatch, MetricsPort, PartitionKey

__all__ = ["PartitionRunner", "RunnerCounts"]

ResultObserver = Callable[[BatchResult], None]


@dataclass
class RunnerCounts:
    """Cumulative counts since the partition's first message; stored with every checkpoint.

    ``consumed == accepted + dead_lettered`` holds after every :meth:`PartitionRunner.process`.
    """

    consumed: int = 0
    accepted: int = 0
    dead_lettered: int = 0


class PartitionRunner:
    """Processes one partition of a model's prediction topic.

    Parameters
    ----------
    key
        Which partition (and run) this is; the key of its checkpoint.
    contract, profiles, config
        The model's contract, its reference profile(s) by version and the engine's tunables.
    codec
        Decodes and checks the raw messages.
    store
        Loads the checkpoint at start and commits results with checkpoints.
    deadletters
        Where rejected messages go.
    metrics
        Optional monitoring of every result and checkpoint.
    on_result
        Optional callback receiving every :class:`BatchResult` as it is produced (before it is durable).
    """

    def __init__(
        self,
        *,
        key: PartitionKey,
        contract: Contract,
        profiles: Mapping[str, ReferenceProfile],
        codec: Codec,
        store: CheckpointStore,
        deadletters: DeadLetterPort,
        config: EngineConfig | None = None,
        metrics: MetricsPort | None = None,
        on_result: ResultObserver | None = None,
    ) -> None:
        self.key = key
        self.contract = contract
        self.codec = codec
        self.store = store
        self.deadletters = deadletters
        self.metrics = metrics
        self.on_result = on_result
        self.skipped = 0  # redelivered messages already covered by the checkpoint (this process only)
        self.uncommitted = 0  # messages processed since the last checkpoint
        self._dirty = False  # something to commit: messages processed, or windows closed by finish()
        self._pending: list[BatchResult] = []  # results since the last checkpoint
        self._oldest_uncommitted_ms: int | None = None
        self._uncommitted_timestamps: list[np.ndarray] = []
        self.record_latencies = False
        self._checkpoint_lock = threading.Lock()
        self.latencies_ms: list[np.ndarray] = []  # per committed message, when record_latencies is set
        checkpoint = store.load_checkpoint(key.consumer_group, key.topic, key.partition)
        self.restored = checkpoint is not None  # started from a checkpoint (a restart, a rebalance)
        if checkpoint is None:
            self.engine = MonitorEngine(contract, profiles, config)
            self.next_offset: int | None = None
            self.counts = RunnerCounts()
        else:
            self.engine = MonitorEngine.from_state(checkpoint.engine_state, contract, profiles, config)
            self.next_offset = checkpoint.next_offset
            self.counts = RunnerCounts(checkpoint.consumed, checkpoint.accepted, checkpoint.dead_lettered)

    @property
    def model(self) -> str:
        return self.contract.model

    def process(self, messages: MessageBatch | Sequence[EncodedMessage]) -> BatchResult | None:
        """Process messages of this partition, in offset order; ``None`` when all were already done.

        Raises
        ------
        ValueError
            The offsets are not increasing (the caller mixed partitions or reordered messages).
        """
        batch = messages if isinstance(messages, MessageBatch) else MessageBatch.of(messages)
        offsets = batch.offsets
        if any(b <= a for a, b in itertools.pairwise(offsets)):
            raise ValueError(f"messages: offsets of {self.key} are not increasing")
        fresh = batch if self.next_offset is None else batch.since(self.next_offset)
        self.skipped += len(batch) - len(fresh)
        if not len(fresh):
            return None
        offsets = fresh.offsets
        started = time.perf_counter()
        payloads = [value if value is not None else b"" for value in fresh.values]
        decoded = self.codec.decode_batch(payloads, model=self.contract.model)
        for rejection in decoded.rejections:
            self.deadletters.send(
                fresh.values[rejection.index],
                topic=self.key.topic,
                partition=self.key.partition,
                offset=offsets[rejection.index],
                rejection=rejection,
            )
        result = self.engine.process(decoded)
        self.counts.consumed += len(fresh)
        self.counts.accepted += decoded.n_accepted
        self.counts.dead_lettered += decoded.n_rejected
        self.next_offset = offsets[-1] + 1
        self.uncommitted += len(fresh)
        self._dirty = True
        if self._oldest_uncommitted_ms is None:  # the first batch since the last checkpoint
            self._oldest_uncommitted_ms = min(fresh.timestamps_ms)
        if self.record_latencies:
            self._uncommitted_timestamps.append(np.asarray(fresh.timestamps_ms, dtype=np.int64))
        self._emit(result, started)
        return result

    def set_aside(self, message: EncodedMessage, detail: str) -> BatchResult:
        """Dead-letter one message the engine failed on (``engine_failure``), count it, and go on past it.

        The shell calls this for a message it found, by replaying from the last checkpoint, to make
        the engine fail: no single message may stop a partition. The engine never sees it.

        Raises
        ------
        ValueError
            The message is not the next one of the partition.
        """
        if self.next_offset is not None and message.offset < self.next_offset:
            raise ValueError(f"message: offset {message.offset} of {self.key} is behind the runner ({self.next_offset})")
        started = time.perf_counter()
        rejection = Rejection(RejectReason.ENGINE_FAILURE, 0, None, detail)
        self.deadletters.send(message.value, topic=self.key.topic, partition=self.key.partition, offset=message.offset, rejection=rejection)
        self.counts.consumed += 1
        self.counts.dead_lettered += 1
        self.next_offset = message.offset + 1
        self.uncommitted += 1
        self._dirty = True
        if self._oldest_uncommitted_ms is None:
            self._oldest_uncommitted_ms = message.timestamp_ms
        if self.record_latencies:
            self._uncommitted_timestamps.append(np.asarray([message.timestamp_ms], dtype=np.int64))
        result = BatchResult(rejected_by_reason={RejectReason.ENGINE_FAILURE.value: 1})
        self._emit(result, started)
        return result

    def finish(self) -> BatchResult:
        """End of input: close every open window, then checkpoint (the demo and bounded runs call this).

        The engine can go on afterwards, but a window closed here is closed for good: events of it
        that arrive later count as late.
        """
        started = time.perf_counter()
        result = self.engine.flush()
        self._emit(result, started)
        if result.model_windows or result.feature_windows or result.alerts:
            self._dirty = True  # the closed windows must be committed
        self.checkpoint()
        return result

    def checkpoint(self) -> Checkpoint | None:
        """Make everything processed so far durable; return the checkpoint written (``None``: nothing new).

        Raises
        ------
        DriftlineError
            The dead-letter port or the store failed (``DeadLetterError``, ``SinkError``): nothing of
            this checkpoint was committed, and the caller must not acknowledge the messages. The
            runner is then out of step with the store: the caller must discard it and build a new
            one, which restores from the last checkpoint that did commit.
        """
        # A worker stopping while a checkpoint runs in the executor calls this again from its agent's
        # cleanup: the second call waits for the first and then finds nothing new.
        with self._checkpoint_lock:
            return self._checkpoint()

    def _emit(self, result: BatchResult, started: float) -> None:
        self._pending.append(result)
        if self.metrics is not None:
            self.metrics.observe(
                result,
                now_s=time.time(),
                model=self.contract.model,
                processing_seconds=time.perf_counter() - started,
            )
        if self.on_result is not None:
            self.on_result(result)

    def _checkpoint(self) -> Checkpoint | None:
        if not self._dirty or self.next_offset is None:
            return None
        self.deadletters.flush()
        checkpoint = Checkpoint(
            consumer_group=self.key.consumer_group,
            topic=self.key.topic,
            partition=self.key.partition,
            next_offset=self.next_offset,
            engine_state=self.engine.to_state(),
            consumed=self.counts.consumed,
            accepted=self.counts.accepted,
            dead_lettered=self.counts.dead_lettered,
        )
        # Kept until the commit succeeded: a failed checkpoint (a database outage) is simply tried again.
        self.store.commit(checkpoint, self._pending)
        self._pending = []
        committed_ms = time.time() * 1000.0
        if self.metrics is not None and self._oldest_uncommitted_ms is not None:
            self.metrics.observe_commit(self.contract.model, (committed_ms - self._oldest_uncommitted_ms) / 1000.0)
        if self.record_latencies and self._uncommitted_timestamps:
            self.latencies_ms.append(committed_ms - np.concatenate(self._uncommitted_timestamps))
        self._uncommitted_timestamps = []
        self._oldest_uncommitted_ms = None
        self.uncommitted = 0
        self._dirty = False
        return checkpoint
