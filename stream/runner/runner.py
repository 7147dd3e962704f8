"""The one partition runner: decode, dead-letter, monitor, and checkpoint atomically.

Every shell drives the monitor engine through this class (DESIGN decision 1): ``driftline worker``
with a Kafka dead-letter producer and a PostgreSQL checkpoint store, ``driftline demo`` with an
in-memory dead-letter list and a SQLite store, replay with its own. Only the ports differ, so the
same messages give the same results whoever runs them (tested byte for byte).

The protocol of the exactly-once *effect* (DESIGN decision 7), which :class:`CheckpointedRunner`
keeps for every kind of runner (this module's, and the merger of split models' windows):

* :meth:`~CheckpointedRunner.process` takes messages of one partition in offset order. Messages below
  the checkpoint's ``next_offset`` were already processed before a restart: they are skipped, so
  at-least-once redelivery never double-counts. The rest are processed; rejections go to the
  dead-letter port; the results wait for the next checkpoint.
* :meth:`~CheckpointedRunner.checkpoint` first publishes what must leave before the commit (window
  partials of a model split over partitions), waits until the dead-letter port made every rejection
  durable, then commits the waiting results **and** the state with the next offset through the
  checkpoint store, in one transaction. Only after that may the caller acknowledge the messages.
* On (re)start a runner restores its state from the store's checkpoint, so detector and window
  state always match the offset the results were committed up to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.schemas.codec import Codec
from driftline.schemas.contract import Contract
from driftline.schemas.labels import LabelCodec
from driftline.schemas.results import Rejection, RejectReason
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import BatchResult, Checkpoint

from .alert_messages import alert_messages
from .partials import partial_messages, progress_message
from .ports import CheckpointStore, DeadLetterPort, EncodedMessage, MessageBatch, MetricsPort, PartialsPort, PartitionKey

__all__ = ["CheckpointedRunner", "PartitionRunner", "RunInputs", "RunStart", "RunnerCounts"]

ResultObserver = Callable[[BatchResult], None]


@dataclass
class RunnerCounts:
    """Cumulative counts since the partition's first message; stored with every checkpoint.

    ``consumed == accepted + dead_lettered`` holds after every :meth:`PartitionRunner.process`.
    """

    consumed: int = 0
    accepted: int = 0
    dead_lettered: int = 0


@dataclass(frozen=True)
class RunStart:
    """Where a partition's run began from nothing: the offsets of its first prediction and first label.

    ``None``: not known — nothing processed yet, or the run was restored from a checkpoint written
    before this was recorded. A run that started from an empty state at ``offset`` (and ``label_offset``)
    is reproduced exactly by an engine started empty there.
    """

    offset: int | None = None
    label_offset: int | None = None

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RunStart:
        saved = state.get("runner_start") or {}
        return cls(saved.get("offset"), saved.get("label_offset"))


@dataclass(frozen=True)
class RunInputs:
    """What a partition's results depend on besides its messages: contract, reference profiles and engine settings.

    Stored with every checkpoint; a replay that means to compute what the run computed compares its
    own (:meth:`differences`) and refuses if they differ. Contract and profiles by SHA-256 of their
    JSON, the settings as they are (so a difference can be named).
    """

    contract: str
    profiles: dict[str, str]
    config: dict[str, Any]

    @classmethod
    def of(cls, contract: Contract, profiles: Mapping[str, ReferenceProfile], config: EngineConfig) -> RunInputs:
        contract_json = json.dumps(contract.schema_json, sort_keys=True, separators=(",", ":"))
        return cls(
            contract=hashlib.sha256(contract_json.encode("utf-8")).hexdigest(),
            profiles={version: hashlib.sha256(profile.to_json().encode("utf-8")).hexdigest() for version, profile in sorted(profiles.items())},
            config=dataclasses.asdict(config),
        )

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RunInputs | None:
        """The inputs a checkpoint's state recorded (``None``: written before they were)."""
        saved = state.get("runner_inputs")
        return None if saved is None else cls(saved["contract"], dict(saved["profiles"]), dict(saved["config"]))

    def differences(self, other: RunInputs) -> list[str]:
        """What differs from ``other``, one phrase each (empty: the same inputs).

        >>> a = RunInputs("c1", {"v1": "p1"}, {"window_length_ms": 60000})
        >>> a.differences(RunInputs("c2", {"v1": "p1", "v2": "p2"}, {"window_length_ms": 30000}))
        ['the contract', 'the reference profile of v2 (only in one)', 'window_length_ms (60000, 30000)']
        """
        found = [] if self.contract == other.contract else ["the contract"]
        for version in sorted(set(self.profiles) | set(other.profiles)):
            mine, theirs = self.profiles.get(version), other.profiles.get(version)
            if mine != theirs:
                found.append(f"the reference profile of {version}" + (" (only in one)" if mine is None or theirs is None else ""))
        for name in sorted(set(self.config) | set(other.config)):
            if self.config.get(name) != other.config.get(name):
                found.append(f"{name} ({self.config.get(name)!r}, {other.config.get(name)!r})")
        return found


class CheckpointedRunner(ABC):
    """The checkpoint protocol of a runner of one partition (see the module docstring); subclasses process.

    Parameters
    ----------
    key
        Which partition (and run) this is; the key of its checkpoint.
    store
        Loads the checkpoint at start and commits results with checkpoints.
    deadletters
        Where rejected messages go.
    metrics
        Optional monitoring of every result and checkpoint.
    on_result
        Optional callback receiving every :class:`BatchResult` as it is produced (before it is durable).
    alerts
        Optional alerts topic: each checkpoint's alerts and resolutions are published there
        (:mod:`~driftline.stream.runner.alert_messages`) and acknowledged before it commits.
    snapshot_interval_seconds
        Ask the store to keep a snapshot of a checkpoint (``CheckpointStore.commit(snapshot=True)``) at
        the first checkpoint and then about this often (wall clock); ``None``: never. A replay into
        the run starts from one (``driftline replay``).
    """

    def __init__(
        self,
        *,
        key: PartitionKey,
        store: CheckpointStore,
        deadletters: DeadLetterPort,
        metrics: MetricsPort | None = None,
        on_result: ResultObserver | None = None,
        alerts: PartialsPort | None = None,
        snapshot_interval_seconds: float | None = None,
    ) -> None:
        if snapshot_interval_seconds is not None and not snapshot_interval_seconds > 0:
            raise ValueError(f"snapshot_interval_seconds must be > 0, got {snapshot_interval_seconds}")
        self.key = key
        self.alerts = alerts
        self.snapshot_interval_seconds = snapshot_interval_seconds
        self._last_snapshot: float | None = None  # monotonic time of this process's last snapshot
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
        # The reader's thread checkpoints; a revocation or a stop may ask again meanwhile: one at a time.
        self._checkpoint_lock = threading.Lock()
        self.latencies_ms: list[np.ndarray] = []  # per committed message, when record_latencies is set
        self.last_processed = time.monotonic()  # wall-clock time of the last message processed
        checkpoint = store.load_checkpoint(key.consumer_group, key.topic, key.partition)
        self.restored = checkpoint is not None  # started from a checkpoint (a restart, a rebalance)
        if checkpoint is None:
            self._start()
            self.next_offset: int | None = None
            self.counts = RunnerCounts()
        else:
            self._restore(checkpoint.engine_state)
            self.next_offset = checkpoint.next_offset
            self.counts = RunnerCounts(checkpoint.consumed, checkpoint.accepted, checkpoint.dead_lettered)

    # -- what a kind of runner does ---------------------------------------------------------------

    @property
    @abstractmethod
    def model(self) -> str | None:
        """The model the runner's results and metrics belong to (``None``: several; the results name theirs)."""

    @abstractmethod
    def _start(self) -> None:
        """Start from nothing (no checkpoint)."""

    @abstractmethod
    def _restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The state to store with the next checkpoint."""

    @abstractmethod
    def _run(self, batch: MessageBatch) -> tuple[BatchResult, int, Sequence[Rejection]]:
        """Process fresh messages: their result, how many were accepted, the rejections (by batch index)."""

    def _flush(self) -> BatchResult:
        """End of input (see :meth:`finish`); nothing by default."""
        return BatchResult()

    def _before_commit(self, pending: Sequence[BatchResult]) -> list[BatchResult]:
        """Publish what must leave before the results are committed; return the results to store (all, by default)."""
        return list(pending)

    # -- the protocol -------------------------------------------------------------------------------

    def process(self, messages: MessageBatch | Sequence[EncodedMessage]) -> BatchResult | None:
        """Process messages of this partition, in offset order; ``None`` when all were already done.

        Raises
        ------
        ValueError
            The offsets are not increasing (the caller mixed partitions or reordered messages).
        """
        fresh = self._fresh(messages, self.next_offset, str(self.key))
        if fresh is None:
            return None
        started = time.perf_counter()
        result, accepted, rejections = self._run(fresh)
        self._dead_letter(fresh, rejections, self.key.topic)
        self.counts.consumed += len(fresh)
        self.counts.accepted += accepted
        self.counts.dead_lettered += len(fresh) - accepted
        self._advance(fresh.offsets[-1] + 1, len(fresh), fresh.timestamps_ms)
        self._emit(result, started)
        return result

    def _fresh(self, messages: MessageBatch | Sequence[EncodedMessage], next_offset: int | None, where: str) -> MessageBatch | None:
        """The messages at ``next_offset`` or later (``None`` if none); redelivered ones are counted as skipped."""
        batch = messages if isinstance(messages, MessageBatch) else MessageBatch.of(messages)
        if any(b <= a for a, b in itertools.pairwise(batch.offsets)):
            raise ValueError(f"messages: offsets of {where} are not increasing")
        fresh = batch if next_offset is None else batch.since(next_offset)
        self.skipped += len(batch) - len(fresh)
        return fresh if len(fresh) else None

    def _dead_letter(self, batch: MessageBatch, rejections: Sequence[Rejection], topic: str) -> None:
        """Queue each rejected message of ``batch`` (``rejection.index`` is its position) to the dead-letter port."""
        for rejection in rejections:
            self.deadletters.send(
                batch.values[rejection.index],
                topic=topic,
                partition=self.key.partition,
                offset=batch.offsets[rejection.index],
                rejection=rejection,
            )

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
        self._send_engine_failure(message, detail, self.key.topic)
        self.counts.consumed += 1
        self.counts.dead_lettered += 1
        self._advance(message.offset + 1, 1, [message.timestamp_ms])
        result = BatchResult(rejected_by_reason={RejectReason.ENGINE_FAILURE.value: 1})
        self._emit(result, started)
        return result

    def _send_engine_failure(self, message: EncodedMessage, detail: str, topic: str) -> None:
        rejection = Rejection(RejectReason.ENGINE_FAILURE, 0, None, detail)
        self.deadletters.send(message.value, topic=topic, partition=self.key.partition, offset=message.offset, rejection=rejection)

    def finish(self) -> BatchResult:
        """End of input: close every open window, then checkpoint (the demo and bounded runs call this).

        The engine can go on afterwards, but a window closed here is closed for good: events of it
        that arrive later count as late.
        """
        started = time.perf_counter()
        result = self._flush()
        self._emit(result, started)
        if result.model_windows or result.feature_windows or result.alerts or result.window_partials:
            self._dirty = True  # the closed windows must be committed
        self.checkpoint()
        return result

    def checkpoint(self) -> Checkpoint | None:
        """Make everything processed so far durable; return the checkpoint written (``None``: nothing new).

        Raises
        ------
        DriftlineError
            The dead-letter port, the partials port or the store failed (``DeadLetterError``,
            ``SinkError``): nothing of this checkpoint was committed, and the caller must not
            acknowledge the messages. Calling it again retries with everything kept.
        """
        with self._checkpoint_lock:
            return self._checkpoint()

    def _publish_alerts(self, results: Sequence[BatchResult]) -> None:
        """Publish the incidents' state changes of this checkpoint, and wait for them (before it commits)."""
        if self.alerts is None:
            return
        sent = False
        for result in results:
            for message in alert_messages(result):
                self.alerts.send(*message)
                sent = True
        if sent:
            self.alerts.flush()

    def _advance(self, next_offset: int, messages: int, timestamps_ms: Sequence[int]) -> None:
        self.next_offset = next_offset
        self.uncommitted += messages
        self._dirty = True
        self.last_processed = time.monotonic()
        if self._oldest_uncommitted_ms is None:  # the first batch since the last checkpoint
            self._oldest_uncommitted_ms = min(timestamps_ms)
        if self.record_latencies:
            self._uncommitted_timestamps.append(np.asarray(timestamps_ms, dtype=np.int64))

    def _emit(self, result: BatchResult, started: float) -> None:
        self._pending.append(result)
        if self.metrics is not None:
            seconds = time.perf_counter() - started
            for model, part in self._by_model(result):
                self.metrics.observe(part, now_s=time.time(), model=model, processing_seconds=seconds)
        if self.on_result is not None:
            self.on_result(result)

    def _by_model(self, result: BatchResult) -> list[tuple[str | None, BatchResult]]:
        """``result`` in parts by model, for the metrics (one part, :attr:`model`'s, by default)."""
        return [(self.model, result)]

    def _checkpoint(self) -> Checkpoint | None:
        if not self._dirty or self.next_offset is None:
            return None
        stored = self._before_commit(self._pending)
        self._publish_alerts(stored)
        self.deadletters.flush()
        checkpoint = Checkpoint(
            consumer_group=self.key.consumer_group,
            topic=self.key.topic,
            partition=self.key.partition,
            next_offset=self.next_offset,
            engine_state=self._state(),
            consumed=self.counts.consumed,
            accepted=self.counts.accepted,
            dead_lettered=self.counts.dead_lettered,
        )
        # Kept until the commit succeeded: a failed checkpoint (a database outage) is simply tried again.
        now = time.monotonic()
        interval = self.snapshot_interval_seconds
        snapshot = interval is not None and (self._last_snapshot is None or now - self._last_snapshot >= interval)
        self.store.commit(checkpoint, stored, snapshot=snapshot)
        if snapshot:
            self._last_snapshot = now
        self._pending = []
        committed_ms = time.time() * 1000.0
        if self.metrics is not None and self._oldest_uncommitted_ms is not None and self.model is not None:
            self.metrics.observe_commit(self.model, (committed_ms - self._oldest_uncommitted_ms) / 1000.0)
        if self.record_latencies and self._uncommitted_timestamps:
            self.latencies_ms.append(committed_ms - np.concatenate(self._uncommitted_timestamps))
        self._uncommitted_timestamps = []
        self._oldest_uncommitted_ms = None
        self.uncommitted = 0
        self._dirty = False
        return checkpoint


class PartitionRunner(CheckpointedRunner):
    """Processes one partition of a model's prediction topic: decode and check, then the monitor engine.

    Parameters
    ----------
    key, store, deadletters, metrics, on_result
        As for :class:`CheckpointedRunner`.
    contract, profiles, config
        The model's contract, its reference profile(s) by version and the engine's tunables.
    codec
        Decodes and checks the raw messages.
    label_topic
        The model's label topic (default ``labels.<model>``): its partition of this number is joined
        here (:meth:`process_labels`), and its rejected labels are dead-lettered under its name.
    snapshot_interval_seconds
        As for :class:`CheckpointedRunner`.
    partials, partitions
        For a model whose topic has several partitions: where this partition's window partials,
        signals, schema changes and progress go (:mod:`~driftline.stream.runner.partials`), and how many
        partitions the model's topic has. The engine then runs with ``partial_windows`` and the
        merger (:class:`~driftline.stream.runner.merge_runner.MergeRunner`) makes the model's windows
        and alerts. Without ``partials``: the engine makes them itself.
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
        partials: PartialsPort | None = None,
        partitions: int = 1,
        label_topic: str | None = None,
        alerts: PartialsPort | None = None,
        snapshot_interval_seconds: float | None = None,
    ) -> None:
        if partitions < 1 or not 0 <= key.partition < partitions:
            raise ValueError(f"partitions: partition {key.partition} is not one of {partitions}")
        self.contract = contract
        self.codec = codec
        self.profiles = profiles
        self.partials = partials
        self.partitions = partitions
        config = config or EngineConfig()
        # A partition of a split model sees a share of its traffic: its engine scales the rate it measures.
        self.config = dataclasses.replace(
            config, partial_windows=partials is not None, partitions=partitions if partials is not None else 1
        )
        self.idle = False  # closed its windows after a quiet spell (see go_idle); a message wakes it
        # Labels (when the config has a label horizon): the label topic's partition of the same number.
        self.label_topic = label_topic or f"labels.{contract.model}"
        self.label_next_offset: int | None = None
        self.label_counts = RunnerCounts()
        self._label_codec: LabelCodec | None = None
        # Where this run began from nothing (offsets of its first prediction and first label): with
        # the inputs below, in every checkpoint, so that a replay can tell whether it computes what this
        # run computed (:class:`RunInputs`).
        self.start = RunStart()
        self.inputs = RunInputs.of(contract, profiles, self.config)
        super().__init__(key=key, store=store, deadletters=deadletters, metrics=metrics, on_result=on_result, alerts=alerts,
                         snapshot_interval_seconds=snapshot_interval_seconds)

    @property
    def model(self) -> str:
        return self.contract.model

    def _start(self) -> None:
        self.engine = MonitorEngine(self.contract, self.profiles, self.config)

    def _restore(self, state: dict[str, Any]) -> None:
        self.engine = MonitorEngine.from_state(state, self.contract, self.profiles, self.config)
        # The label topic's position rides in the same state, so it commits atomically with the rest.
        labels = state.get("runner_labels")
        if labels is not None:
            self.label_next_offset = labels["next_offset"]
            self.label_counts = RunnerCounts(labels["consumed"], labels["accepted"], labels["dead_lettered"])
        self.start = RunStart.from_state(state)

    @staticmethod
    def stored_label_offset(checkpoint: Checkpoint | None) -> int | None:
        """The next label offset a partition's checkpoint holds (``None``: no checkpoint, or no label yet)."""
        labels = None if checkpoint is None else checkpoint.engine_state.get("runner_labels")
        return None if labels is None else int(labels["next_offset"])

    def _state(self) -> dict[str, Any]:
        state = self.engine.to_state()
        if self.label_next_offset is not None:
            state["runner_labels"] = {"next_offset": self.label_next_offset, **dataclasses.asdict(self.label_counts)}
        state["runner_start"] = dataclasses.asdict(self.start)
        state["runner_inputs"] = dataclasses.asdict(self.inputs)
        return state

    def process_labels(self, messages: MessageBatch | Sequence[EncodedMessage]) -> BatchResult | None:
        """Process messages of this partition of the model's label topic, in offset order; ``None`` when all were done.

        Labels are decoded (:class:`~driftline.schemas.labels.LabelCodec`), the unusable ones
        dead-lettered with their reason, the rest joined by the engine; the label topic's next offset
        is stored in the same checkpoint as the engine state, so a restart neither loses nor
        double-counts a label.

        Raises
        ------
        ValueError
            The offsets are not increasing, or the engine joins no labels (no label horizon).
        """
        if self.config.label_horizon_ms is None:
            raise ValueError(f"{self.key}: labels need a label horizon (EngineConfig.label_horizon_ms)")
        fresh = self._fresh(messages, self.label_next_offset, f"{self.label_topic}[{self.key.partition}]")
        if fresh is None:
            return None
        if self.label_next_offset is None:  # the run's first label
            self.start = dataclasses.replace(self.start, label_offset=fresh.offsets[0])
        started = time.perf_counter()
        if self._label_codec is None:
            self._label_codec = LabelCodec(self.codec)
        decoded = self._label_codec.decode_batch([v if v is not None else b"" for v in fresh.values], model=self.contract.model)
        result = self.engine.process_labels(decoded.prediction_ids, decoded.label_times_ms, decoded.labels)
        self._dead_letter(fresh, decoded.rejections, self.label_topic)
        for rejection in decoded.rejections:
            key = f"rejected_{rejection.reason.value}"
            result.label_counts[key] = result.label_counts.get(key, 0) + 1
        self.label_counts.consumed += len(fresh)
        self.label_counts.accepted += len(decoded.rows)
        self.label_counts.dead_lettered += len(decoded.rejections)
        self._advance_labels(fresh.offsets[-1] + 1, len(fresh))
        self.last_processed = time.monotonic()
        self._emit(result, started)
        return result

    def _advance_labels(self, next_offset: int, messages: int) -> None:
        """The label topic's position moved to ``next_offset`` past ``messages`` more: to commit with the next checkpoint."""
        self.label_next_offset = next_offset
        if self.next_offset is None:
            # Labels before any prediction: the checkpoint that stores their offset says "from the
            # first prediction" as offset 0 (an offset the broker no longer has resets to the earliest).
            self.next_offset = 0
            self.start = dataclasses.replace(self.start, offset=0)
        self.uncommitted += messages
        self._dirty = True

    def set_aside_label(self, message: EncodedMessage, detail: str) -> BatchResult:
        """:meth:`set_aside` for a message of the label topic: dead-lettered (``engine_failure``), counted, passed.

        Raises
        ------
        ValueError
            The message is not the next one of the partition's label topic.
        """
        if self.label_next_offset is not None and message.offset < self.label_next_offset:
            raise ValueError(f"message: offset {message.offset} of {self.label_topic}[{self.key.partition}] is behind the runner "
                             f"({self.label_next_offset})")
        started = time.perf_counter()
        self._send_engine_failure(message, detail, self.label_topic)
        self.label_counts.consumed += 1
        self.label_counts.dead_lettered += 1
        self._advance_labels(message.offset + 1, 1)
        result = BatchResult(label_counts={f"rejected_{RejectReason.ENGINE_FAILURE.value}": 1})
        self._emit(result, started)
        return result

    def _run(self, batch: MessageBatch) -> tuple[BatchResult, int, Sequence[Rejection]]:
        self.idle = False
        if self.next_offset is None:  # the run's first message: its engine is as it was made
            self.start = dataclasses.replace(self.start, offset=batch.offsets[0])
        payloads = [value if value is not None else b"" for value in batch.values]
        decoded = self.codec.decode_batch(payloads, model=self.contract.model)
        return self.engine.process(decoded), decoded.n_accepted, decoded.rejections

    def _flush(self) -> BatchResult:
        return self.engine.flush()

    def _before_commit(self, pending: Sequence[BatchResult]) -> list[BatchResult]:
        if self.partials is None:
            return list(pending)
        for result in pending:
            for message in partial_messages(self.key, self.model, self.partitions, result):
                self.partials.send(*message)
        # Its progress goes after the partials it covers (one producer, one partition: Kafka keeps the order).
        self.partials.send(*self._progress())
        self.partials.flush()
        # The merger reports the model's schema changes, once (each partition sees every new writer).
        return [dataclasses.replace(result, schema_changes=[]) if result.schema_changes else result for result in pending]

    def _progress(self) -> tuple[bytes, bytes]:
        return progress_message(self.key, self.model, self.partitions, self.engine.max_event_time_ms, idle=self.idle,
                                labels=self.engine.label_progress)

    def go_idle(self, quiet_seconds: float) -> bool:
        """After ``quiet_seconds`` without a message, close every open window and tell the merger; True if it did.

        A partition of a split model that receives nothing must not hold the model's windows open:
        once idle, the merger stops waiting for it (``WindowMerger``). Its windows are closed now,
        published and committed with the next :meth:`checkpoint`; events of them that come later are
        late. A partition that never had a message says so at once. (Nothing to do for a model on
        one partition, or an idle partition.)

        Raises
        ------
        DriftlineError
            The partials port failed to send the notice of a partition without a message.
        """
        if self.partials is None or self.idle or time.monotonic() - self.last_processed < quiet_seconds:
            return False
        self.idle = True
        if self.next_offset is None:  # nothing ever processed, nothing to commit: just say so
            self.partials.send(*self._progress())
            self.partials.flush()
            return True
        started = time.perf_counter()
        self._emit(self.engine.flush(labels=False), started)  # its labels go on where they stopped when it wakes
        self._dirty = True
        return True
