"""The worker's hot path: a confluent-kafka consumer that reads whole batches and feeds the partition runners.

Why not Faust's own consumer (DESIGN decision 10): Faust dispatches every message through a task and
two futures in its consumer and conductor, about 50 µs each here; an agent that only counts reached
18k events/s where a plain confluent-kafka consumer reads 200k (README, Performance). So the worker
reads its model topics with ``Consumer.consume(num_messages=…)`` on a thread of its own, run by a
Faust service (:mod:`driftline.stream.kafka.service`): Faust stays the application — its lifecycle,
signal handling, timers and the health endpoints — and the events never pass through its
per-message path. The batches go from this thread straight to the partition runners: handing them
to an agent instead would add a hop into the event loop per batch and run the CPU-bound decode and
engine there, blocking the loop that serves ``/healthz`` (README, Performance, has the measurement).

The protocol that gives the exactly-once effect (DESIGN decision 7):

* **Assignment.** Each assigned partition gets a :class:`~driftline.stream.runner.PartitionRunner`
  restored from its database checkpoint, and the consumer starts at the checkpoint's next offset
  (at the beginning without one): the database, not Kafka's committed offset, says where to go on.
* **Processing.** Messages of a partition reach its runner in offset order, a batch at a time.
* **Checkpoints,** every ``checkpoint_interval_seconds``: each runner makes its dead letters durable,
  then commits results, engine state and next offset in one transaction; only then is that offset
  committed to Kafka (which tools such as ``kafka-consumer-groups.sh`` read for the lag).
* **Revocation:** a partition is checkpointed before it is released; a *lost* partition (the
  session expired) is dropped unchecked — its next owner redoes what was not committed.
* **A database (or dead-letter topic) outage:** nothing is acknowledged; consumption pauses (memory
  stays bounded), the checkpoint is retried with a growing pause, one log line per change of state;
  after ``database_outage_seconds`` the worker gives up with a clear message. A worker with nothing
  new to checkpoint probes the database instead (every :data:`PROBE_SECONDS`), so an outage is noticed
  — and ``/readyz`` says so — even while its topics are quiet.
* **A message the engine fails on** (a bug, a corrupt profile of one version): the partition is
  restored from its checkpoint and the failed batch replayed in halves, checkpointing each part that
  works, until the single message is found; it is dead-lettered as ``engine_failure`` and the partition
  goes on. No single message can stop the worker or make it crash-loop. The same holds for a label.
* **Labels** (with a label horizon): partition p of a model's label topic is read for the runner of
  prediction partition p by a second consumer that follows the assignment
  (:mod:`~driftline.stream.kafka.label_reader`); its position is in the same checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from driftline.schemas.errors import DriftlineError, RegistryError
from driftline.stream.runner import EncodedMessage, MessageBatch, PartitionRunner

from .batching import batches_by_partition
from .errors import WorkerError
from .heap import trim_heap
from .label_reader import LabelReader
from .settings import WorkerSettings
from .topics import CLIENT_LOGGER

__all__ = ["BatchReader"]

log = logging.getLogger("driftline.worker")

PartitionId = tuple[str, int]
RunnerFactory = Callable[[str, str, int], PartitionRunner]  # (model, topic, partition)

#: First pause before a failed checkpoint is tried again; it doubles up to :data:`MAX_RETRY_SECONDS`.
FIRST_RETRY_SECONDS = 0.5
#: Longest pause between two tries: a database that is back is noticed within this.
MAX_RETRY_SECONDS = 5.0
#: How often the reader gives the heap's free pages back to the OS (see :mod:`.heap`), after a checkpoint.
TRIM_SECONDS = 5.0
#: How often a worker that had nothing to checkpoint checks that the database still answers.
PROBE_SECONDS = 5.0


@dataclass
class _Replay:
    """A partition being replayed after the engine failed on one of its batches."""

    until: int  # the first offset after the batch that failed
    size: int  # messages of the batch that failed: the largest step
    chunk: int  # messages processed (and checkpointed) at a time: halved after a failure, doubled after a success
    bad: dict[int, str] = field(default_factory=dict)  # offsets found to make the engine fail -> why


@dataclass
class _Owned:
    """An assigned partition: its model and runner, and the replays under way of its predictions and labels."""

    model: str
    runner: PartitionRunner
    replay: _Replay | None = None
    label_replay: _Replay | None = None

    def replay_of(self, labels: bool) -> _Replay | None:
        return self.label_replay if labels else self.replay

    def set_replay(self, labels: bool, replay: _Replay | None) -> None:
        if labels:
            self.label_replay = replay
        else:
            self.replay = replay


def _feed(runner: PartitionRunner, batch: MessageBatch, labels: bool) -> None:
    if labels:
        runner.process_labels(batch)
    else:
        runner.process(batch)


def _set_aside(runner: PartitionRunner, message: EncodedMessage, detail: str, labels: bool) -> None:
    if labels:
        runner.set_aside_label(message, detail)
    else:
        runner.set_aside(message, detail)


class BatchReader:
    """Reads the model topics in batches and drives one partition runner per assigned partition.

    Parameters
    ----------
    settings
        The worker's settings (topics, group, batch size and wait, checkpoint interval, outage limit).
    make_runner
        Builds the runner of a partition, restored from its checkpoint (``WorkerRuntime.make_runner``).
    checkpointed_offset
        ``(topic, partition) -> next_offset`` of a partition's database checkpoint (for ``stop_at_end``
        over partitions this worker does not own).
    end_offsets
        With ``settings.stop_at_end``: the end offset of every model-topic partition at start.
    label_end_offsets, checkpointed_label_offset
        With ``settings.stop_at_end`` and labels: the end offset of every label-topic partition at
        start, and ``(model topic, partition) -> next label offset`` of a partition's checkpoint.
    on_caught_up
        Called (on the reader's thread) once every partition reached its end offset.
    set_lag
        ``(model, messages)``: where the consumer lag of each model is reported.
    set_end_offset, forget_end_offset
        ``(model, stream, partition, offset)`` and ``(model, stream, partition)``: where the end offset
        of each owned partition of the prediction (``stream="predictions"``) and label topics is
        reported, with each checkpoint round (the producers' rate, for the freshness rules), and
        where a partition no longer owned is dropped.
    merged
        With ``stop_at_end`` and split models: whether the merge stage has checkpointed every window
        partial published so far (asked once the model topics are done).
    probe
        Checks that the checkpoint store answers (raises ``DriftlineError`` if not); called when a
        round of checkpoints wrote nothing, at most every :data:`PROBE_SECONDS` (every retry during
        an outage).
    """

    def __init__(
        self,
        settings: WorkerSettings,
        make_runner: RunnerFactory,
        *,
        checkpointed_offset: Callable[[str, int], int | None] | None = None,
        end_offsets: dict[PartitionId, int] | None = None,
        on_caught_up: Callable[[], None] | None = None,
        set_lag: Callable[[str, int], None] | None = None,
        merged: Callable[[], bool] | None = None,
        probe: Callable[[], None] | None = None,
        label_end_offsets: dict[PartitionId, int] | None = None,
        checkpointed_label_offset: Callable[[str, int], int | None] | None = None,
        set_end_offset: Callable[[str, str, int, int], None] | None = None,
        forget_end_offset: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.make_runner = make_runner
        self.checkpointed_offset = checkpointed_offset
        self.end_offsets = end_offsets
        self.on_caught_up = on_caught_up
        self.set_lag = set_lag
        self.merged = merged
        self.probe = probe
        self.label_end_offsets = label_end_offsets or {}
        self.checkpointed_label_offset = checkpointed_label_offset
        self._labels: LabelReader | None = None
        self.set_end_offset = set_end_offset
        self.forget_end_offset = forget_end_offset
        self._models = {topic: model for model, topic in settings.topics.items()}
        self._prediction_topic_of = {label: settings.topics[model] for model, label in settings.label_topics.items()}
        self._owned: dict[PartitionId, _Owned] = {}
        self._unrestored: set[PartitionId] = set()
        self._stop = threading.Event()
        self._assigned = False
        self._outage_since: float | None = None
        self._outage_error = ""
        self._retry_at = 0.0
        self._retry_pause = FIRST_RETRY_SECONDS
        self._last_checkpoint = time.monotonic()
        self._last_contact = time.monotonic()  # the store last answered (a commit or a probe)
        self._last_trim = time.monotonic()
        self._consumer: Consumer | None = None
        self.last_beat = time.monotonic()  # the loop's last turn (liveness)
        self.latencies_ms: list[np.ndarray] = []  # of runners no longer owned (``--latency-record``)

    # -- state seen by the health endpoints ------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Joined the group, every assigned partition restored, checkpoints going through."""
        return self._assigned and not self._unrestored and self._outage_since is None

    def alive(self, within: float) -> bool:
        """The loop turned within the last ``within`` seconds (it turns at least every ``batch_within_seconds``)."""
        return time.monotonic() - self.last_beat < within

    @property
    def runners(self) -> list[PartitionRunner]:
        return [owned.runner for owned in self._owned.values()]

    def stop(self) -> None:
        """Ask the loop to finish: it checkpoints what it processed and leaves the group."""
        self._stop.set()

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        """The reader's thread: read, process, checkpoint until :meth:`stop` (or caught up with ``stop_at_end``).

        Raises
        ------
        WorkerError
            Checkpoints failed for longer than ``database_outage_seconds``.
        KafkaException
            A fatal consumer error.
        """
        settings = self.settings
        consumer = Consumer(self._consumer_config())
        self._consumer = consumer
        if settings.label_topics:
            self._labels = LabelReader(settings)
        consumer.subscribe(list(self._models), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        failed = False
        try:
            while not self._stop.is_set():
                self.last_beat = time.monotonic()
                if self._outage_since is not None or self._unrestored:
                    self._recover(consumer)
                messages = consumer.consume(num_messages=settings.batch_max_events, timeout=settings.batch_within_seconds)
                if messages:
                    self._process(consumer, messages)
                if self._labels is not None and self._outage_since is None:
                    self._process_labels(consumer, self._labels)
                if self._outage_since is None and time.monotonic() - self._last_checkpoint >= settings.checkpoint_interval_seconds:
                    self._checkpoint_all(consumer)
                    if self.end_offsets is not None and self._outage_since is None and self._caught_up():
                        log.info("every model topic is processed up to its end offset at start: stopping")
                        if self.on_caught_up is not None:
                            self.on_caught_up()
                        break
        except BaseException:
            failed = True
            raise
        finally:
            if not failed and self._outage_since is None:
                self._checkpoint_all(consumer)  # a graceful stop: the next owner need not redo anything
            # Leaving the group revokes the partitions (checkpointed again, a no-op when nothing is new).
            consumer.close()
            if self._labels is not None:
                self._labels.close()
            for owned in self._owned.values():
                self.latencies_ms.extend(owned.runner.latencies_ms)
            self._owned.clear()

    def _consumer_config(self) -> dict[str, Any]:
        settings = self.settings
        return {
            **settings.kafka.client_config(),
            "group.id": settings.consumer_group,
            "logger": CLIENT_LOGGER,
            # Offsets are committed by the checkpoints, after the database has them.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Only the partitions that move are revoked when a worker joins or leaves.
            "partition.assignment.strategy": "cooperative-sticky",
            # A killed worker's replacement waits for the dead member's session to expire; a
            # heartbeat a third of it apart, as Kafka recommends.
            "session.timeout.ms": int(settings.session_timeout_seconds * 1000),
            "heartbeat.interval.ms": int(settings.session_timeout_seconds * 1000 / 3),
            # A message up to the codec's limit must be fetchable (it is then rejected as oversized).
            "fetch.max.bytes": max(52_428_800, settings.max_message_bytes + 1_048_576),
            "max.partition.fetch.bytes": max(1_048_576, settings.max_message_bytes + 65_536),
        }

    def _process(self, consumer: Consumer, messages: list[Message]) -> None:
        self._dispatch(consumer, batches_by_partition(messages, "consumer"), labels=False)

    def _process_labels(self, consumer: Consumer, reader: LabelReader) -> None:
        self._dispatch(consumer, reader.read(self.settings.batch_max_events), labels=True)
        for (_topic, partition), owned in self._owned.items():
            reader.throttle(owned.model, partition, owned.runner)

    def _dispatch(self, consumer: Consumer, batches: dict[PartitionId, MessageBatch], *, labels: bool) -> None:
        """Each partition's batch to its runner (keyed by its topic and partition; a label partition's by the prediction topic's)."""
        for key, batch in batches.items():
            if labels:
                key = (self._prediction_topic_of[key[0]], key[1])
            owned = self._owned.get(key)
            if owned is None:  # revoked meanwhile
                continue
            try:
                if owned.replay_of(labels) is not None:
                    self._replay_step(consumer, key, owned, batch, labels)
                else:
                    self._process_batch(consumer, key, owned, batch, labels)
            except DriftlineError as exc:
                if isinstance(exc, RegistryError):
                    raise  # the Schema Registry is unreachable: no message is at fault
                self._enter_outage(consumer, exc)  # a checkpoint of the replay failed
                return

    def _process_batch(self, consumer: Consumer, key: PartitionId, owned: _Owned, batch: MessageBatch, labels: bool) -> None:
        try:
            _feed(owned.runner, batch, labels)
        except (DriftlineError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure is the engine's on some message
            log.error(
                "%s[%d]: the engine failed on the batch of %soffsets %d-%d (%s: %s); restoring the partition from its "
                "checkpoint to find the message at fault",
                *key, "label " if labels else "", batch.offsets[0], batch.offsets[-1], type(exc).__name__, exc,
            )
            owned.set_replay(labels, _Replay(batch.offsets[-1] + 1, len(batch), max(1, len(batch) // 2)))
            self._restart(consumer, key, owned)

    def _replay_step(self, consumer: Consumer, key: PartitionId, owned: _Owned, batch: MessageBatch, labels: bool) -> None:
        replay = owned.replay_of(labels)
        assert replay is not None
        runner = owned.runner
        offsets = batch.offsets
        what = "label" if labels else "message"
        position = 0
        while position < len(batch):
            if offsets[position] >= replay.until:
                log.info("%s[%d]: past the batch the engine failed on; %d %s(s) set aside", *key, len(replay.bad), what)
                owned.set_replay(labels, None)
                self._process_batch(consumer, key, owned, batch.since(offsets[position]), labels)
                return
            if offsets[position] in replay.bad:
                _set_aside(runner, batch.message(position), replay.bad[offsets[position]], labels)
                position += 1
                continue
            end = position
            while (end < len(batch) and end - position < replay.chunk and offsets[end] < replay.until
                   and offsets[end] not in replay.bad):
                end += 1
            chunk = MessageBatch(offsets[position:end], batch.values[position:end], batch.timestamps_ms[position:end])
            position = end
            try:
                _feed(runner, chunk, labels)
            except (DriftlineError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - narrowing down the message at fault
                if len(chunk) == 1:
                    why = f"the monitor engine failed on this {'label' if labels else 'event'}: {type(exc).__name__}: {exc}"
                    replay.bad[chunk.offsets[0]] = why[:500]
                    log.error("%s[%d]: %s offset %d makes the engine fail; it is set aside (%s)", *key, what, chunk.offsets[0], why)
                    replay.chunk = replay.size  # found: the rest goes in large steps again
                else:
                    replay.chunk = max(1, len(chunk) // 2)
                self._restart(consumer, key, owned)
                return
            # What worked is made durable (the next restart begins after it), and the step grows again.
            if runner.checkpoint() is not None:
                self._commit(consumer, key, runner)
            replay.chunk = min(replay.size, replay.chunk * 2)

    def _restart(self, consumer: Consumer, key: PartitionId, owned: _Owned) -> None:
        """Rebuild the partition's runner from its checkpoint and read again from there (predictions and labels).

        The replays under way (``owned.replay``, ``owned.label_replay``) go on: they are keyed by offset.
        """
        self.latencies_ms.extend(owned.runner.latencies_ms)
        owned.runner = self.make_runner(owned.model, *key)
        start = owned.runner.next_offset if owned.runner.next_offset is not None else OFFSET_BEGINNING
        consumer.seek(TopicPartition(key[0], key[1], start))
        if self._labels is not None:
            self._labels.follow(owned.model, key[1], owned.runner)

    # -- checkpoints and outages -----------------------------------------------------------------

    def _checkpoint_all(self, consumer: Consumer) -> None:
        try:
            answered = False  # the store took a checkpoint or answered the probe
            for key, owned in list(self._owned.items()):
                # A partition of a split model that has been quiet stops holding the model's windows open.
                if owned.runner.go_idle(self.settings.idle_partition_seconds):
                    log.info("%s[%d]: no message for %.0f s: idle (its open windows are closed)", *key, self.settings.idle_partition_seconds)
                if owned.runner.checkpoint() is not None:
                    answered = True
                    self._commit(consumer, key, owned.runner)
            if (not answered and self.probe is not None
                    and (self._outage_since is not None or time.monotonic() - self._last_contact >= PROBE_SECONDS)):
                # Nothing new to write says nothing about the database: ask it (an idle worker must
                # notice an outage too, and give up after database_outage_seconds like a busy one).
                self.probe()
                answered = True
        except DriftlineError as exc:
            self._enter_outage(consumer, exc)
            return
        self._last_checkpoint = time.monotonic()
        if answered:
            self._last_contact = self._last_checkpoint
        if self._last_checkpoint - self._last_trim >= TRIM_SECONDS:
            # Between batches, when the least is live: RSS follows live memory (see .heap).
            self._last_trim = self._last_checkpoint
            seconds = trim_heap()
            if seconds is not None:
                log.debug("heap trimmed in %.1f ms", seconds * 1000)
        self._report_lag(consumer)
        if self._outage_since is not None:
            log.warning("checkpoints go through again after %.1f s: consumption resumed", time.monotonic() - self._outage_since)
            self._outage_since = None
            self._retry_pause = FIRST_RETRY_SECONDS
            self._resume(consumer)

    def _commit(self, consumer: Consumer, key: PartitionId, runner: PartitionRunner) -> None:
        if runner.next_offset is None:
            return
        try:
            consumer.commit(offsets=[TopicPartition(key[0], key[1], runner.next_offset)], asynchronous=True)
        except KafkaException as exc:  # informational only: the database checkpoint is what counts
            log.debug("offset commit of %s[%d] failed: %s", *key, exc)

    def _enter_outage(self, consumer: Consumer, error: DriftlineError) -> None:
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            self._outage_error = str(error)
            log.warning(
                "cannot checkpoint (%s): consumption paused; retrying for up to %.0f s",
                error, self.settings.database_outage_seconds,
            )
            self._pause(consumer)
        else:
            self._outage_error = str(error)
        self._retry_at = now + self._retry_pause
        self._retry_pause = min(MAX_RETRY_SECONDS, self._retry_pause * 2)

    def _recover(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if self._outage_since is not None and now - self._outage_since > self.settings.database_outage_seconds:
            raise WorkerError(
                f"could not checkpoint for {now - self._outage_since:.0f} s (--database-outage-seconds "
                f"{self.settings.database_outage_seconds:g}): {self._outage_error}"
            )
        if now < self._retry_at:
            return
        if self._unrestored:
            self._restore_pending(consumer)
        if self._outage_since is not None:
            self._checkpoint_all(consumer)

    def _pause(self, consumer: Consumer) -> None:
        with _ignore_kafka_state_errors():
            consumer.pause(consumer.assignment())
        if self._labels is not None:
            self._labels.suspend()

    def _resume(self, consumer: Consumer) -> None:
        ready = [tp for tp in consumer.assignment() if (tp.topic, tp.partition) not in self._unrestored]
        with _ignore_kafka_state_errors():
            consumer.resume(ready)
        if self._labels is not None:
            self._labels.resume()

    # -- rebalances ------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        waiting: list[TopicPartition] = []
        for tp in partitions:
            key = (tp.topic, tp.partition)
            try:
                owned = self._own(key)
            except WorkerError:
                raise  # the worker cannot go on as it is (its topics changed): it stops, saying why
            except DriftlineError as exc:
                log.warning("%s[%d]: cannot restore it yet (%s); it waits, paused", *key, exc)
                self._unrestored.add(key)
                waiting.append(tp)
                tp.offset = OFFSET_BEGINNING
                continue
            tp.offset = owned.runner.next_offset if owned.runner.next_offset is not None else OFFSET_BEGINNING
        consumer.incremental_assign(partitions)
        if waiting:
            with _ignore_kafka_state_errors():
                consumer.pause(waiting)
            self._retry_at = time.monotonic()
        if self._outage_since is not None:
            self._pause(consumer)
        self._assigned = True

    def _own(self, key: PartitionId) -> _Owned:
        topic, partition = key
        model = self._models[topic]
        runner = self.make_runner(model, topic, partition)
        log.info(
            "%s[%d]: %s", topic, partition,
            f"restored from its checkpoint at offset {runner.next_offset}" if runner.restored else "no checkpoint: from the beginning",
        )
        owned = self._owned[key] = _Owned(model, runner)
        if self._labels is not None:
            self._labels.follow(model, partition, runner)
        return owned

    def _restore_pending(self, consumer: Consumer) -> None:
        for key in sorted(self._unrestored):
            try:
                owned = self._own(key)
            except WorkerError:
                raise
            except DriftlineError as exc:
                log.debug("%s[%d]: still cannot restore it: %s", *key, exc)
                self._retry_at = time.monotonic() + self._retry_pause
                return
            self._unrestored.discard(key)
            start = owned.runner.next_offset if owned.runner.next_offset is not None else OFFSET_BEGINNING
            tp = TopicPartition(key[0], key[1], start)
            with _ignore_kafka_state_errors():
                consumer.seek(tp)
                if self._outage_since is None:
                    consumer.resume([tp])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._unrestored.discard(key)
            owned = self._owned.pop(key, None)
            if owned is None:
                continue
            self._forget(owned.model, tp.partition)
            try:
                if owned.runner.checkpoint() is not None:
                    self._commit(consumer, key, owned.runner)
            except DriftlineError as exc:  # the next owner redoes what was not committed
                log.error("%s[%d]: revoked, but its checkpoint failed (%s); the next owner redoes the rest", *key, exc)
            log.info("%s[%d]: revoked at offset %s", *key, owned.runner.next_offset)
            self.latencies_ms.extend(owned.runner.latencies_ms)
        consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._unrestored.discard(key)
            owned = self._owned.pop(key, None)
            if owned is not None:
                self._forget(owned.model, tp.partition)
                log.warning("%s[%d]: lost (the group went on without this worker); its next owner restores it", *key)
        consumer.incremental_unassign(partitions)

    # -- progress --------------------------------------------------------------------------------

    def _report_lag(self, consumer: Consumer) -> None:
        lag: dict[str, int] = {}
        for key, owned in self._owned.items():
            with _ignore_kafka_state_errors():
                _, high = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
                if high >= 0 and self.set_end_offset is not None:
                    self.set_end_offset(owned.model, self.settings.stream_of(owned.model), key[1], high)
                if high >= 0 and owned.runner.next_offset is not None:
                    lag[owned.model] = lag.get(owned.model, 0) + max(0, high - owned.runner.next_offset)
            if self._labels is not None and self.set_end_offset is not None:
                label_high = self._labels.end_offset(owned.model, key[1])
                if label_high is not None:
                    self.set_end_offset(owned.model, "labels", key[1], label_high)
        if self.set_lag is not None:
            for model, messages in lag.items():
                self.set_lag(model, messages)

    def _forget(self, model: str, partition: int) -> None:
        """A partition no longer owned: its label partition is no longer read, its end offsets no longer reported."""
        if self._labels is not None:
            self._labels.unfollow(model, partition)
        if self.forget_end_offset is not None:
            self.forget_end_offset(model, self.settings.stream_of(model), partition)
            if self._labels is not None:
                self.forget_end_offset(model, "labels", partition)

    def _caught_up(self) -> bool:
        assert self.end_offsets is not None
        for (topic, partition), end in self.end_offsets.items():
            owned = self._owned.get((topic, partition))
            if owned is not None:
                if owned.runner.uncommitted or (owned.runner.next_offset or 0) < end:
                    return False
            elif end > 0:
                # Not ours (yet, or any more): the database says how far the group has come.
                done = self.checkpointed_offset(topic, partition) if self.checkpointed_offset is not None else None
                if (done or 0) < end:
                    return False
        return self._labels_caught_up() and (self.merged is None or self.merged())

    def _labels_caught_up(self) -> bool:
        label_topics = {topic: self.settings.topics[model] for model, topic in self.settings.label_topics.items()}
        for (topic, partition), end in self.label_end_offsets.items():
            if end <= 0:
                continue
            key = (label_topics[topic], partition)
            owned = self._owned.get(key)
            if owned is not None:
                done = owned.runner.label_next_offset if not owned.runner.uncommitted else None
            else:
                done = self.checkpointed_label_offset(*key) if self.checkpointed_label_offset is not None else None
            if (done or 0) < end:
                return False
        return True


class _ignore_kafka_state_errors:
    """Pausing, resuming or seeking a partition that was revoked meanwhile is harmless: ignore it."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> bool:
        return kind is not None and issubclass(kind, KafkaException)
