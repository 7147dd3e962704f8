"""Ranges of Kafka topics for ``driftline replay``: bounds to offsets, and the reader of a range.

A replay reads offsets ``[start, end)`` of each partition of a model's prediction topic, and of its
label topic, with a group-less consumer (nothing joins a group, nothing is committed: the replay's
checkpoints are in the database). Bounds given as times are the messages' Kafka timestamps — when
they were produced — resolved with ``offsets_for_times``; event time is the engine's business.

The reader gives a partition's prediction batch, then that partition's labels produced up to the
newest prediction read so far (a label comes after its prediction), and the remaining labels once
the predictions are done: the label join then holds few labels waiting for their predictions, and
what each label becomes does not depend on this order anyway (``stream/monitor/label_join.py``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from driftline.stream.runner import MessageBatch
from driftline.stream.runner.replay import ReplayItem

from .batching import batches_by_partition
from .errors import KafkaUnavailableError
from .topics import CLIENT_LOGGER

__all__ = ["KafkaRangeReader", "PartitionRange", "offsets_for_time", "watermarks"]

log = logging.getLogger("driftline.replay")


@dataclass(frozen=True)
class PartitionRange:
    """What a replay reads of one partition: predictions ``[start, end)``, labels ``[label_start, label_end)``.

    No labels when ``label_start`` is ``None``.
    """

    partition: int
    start: int
    end: int
    label_start: int | None = None
    label_end: int | None = None

    @property
    def messages(self) -> int:
        labels = 0 if self.label_start is None or self.label_end is None else max(0, self.label_end - self.label_start)
        return max(0, self.end - self.start) + labels


def _consumer(config: Mapping[str, Any]) -> Consumer:
    return Consumer({
        **config,
        # Names the client only: partitions are assigned by hand, nothing joins the group or commits.
        "group.id": f"driftline-replay-{uuid.uuid4().hex[:12]}",
        "logger": CLIENT_LOGGER,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    })


@contextlib.contextmanager
def _probe(config: Mapping[str, Any]) -> Iterator[Consumer]:
    """A group-less consumer for offset requests, closed afterwards."""
    consumer = _consumer(config)
    try:
        yield consumer
    finally:
        consumer.close()


def watermarks(config: Mapping[str, Any], topic: str, partitions: Sequence[int], timeout: float = 15.0) -> dict[int, tuple[int, int]]:
    """``{partition: (low, high)}``: the first offset the broker still has and the end offset, of each partition.

    Raises
    ------
    KafkaUnavailableError
        The broker did not answer within ``timeout``.
    """
    found: dict[int, tuple[int, int]] = {}
    with _probe(config) as consumer:
        for partition in partitions:
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            except KafkaException as exc:
                raise KafkaUnavailableError(f"could not read the offsets of {topic}[{partition}]: {exc}") from exc
            found[partition] = (int(low), int(high))
    return found


def offsets_for_time(config: Mapping[str, Any], topic: str, partitions: Sequence[int], time_ms: int,
                     timeout: float = 15.0) -> dict[int, int]:
    """``{partition: offset}`` of the first message produced at or after ``time_ms`` (the end offset when none was).

    Raises
    ------
    KafkaUnavailableError
        The broker did not answer within ``timeout``.
    """
    with _probe(config) as consumer:
        try:
            answered = consumer.offsets_for_times([TopicPartition(topic, p, int(time_ms)) for p in partitions], timeout=timeout)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"could not look up the offsets of {topic} at {time_ms} ms: {exc}") from exc
    found: dict[int, int] = {}
    for tp in answered:
        if tp.error is not None:
            raise KafkaUnavailableError(f"could not look up the offset of {topic}[{tp.partition}] at {time_ms} ms: {tp.error}")
        found[tp.partition] = int(tp.offset)
    missing = [p for p, offset in found.items() if offset < 0]  # no message that late: the end
    if missing:
        ends = watermarks(config, topic, missing, timeout)
        found.update({p: ends[p][1] for p in missing})
    return found


class KafkaRangeReader:
    """Reads the ranges of a model's prediction topic (and label topic) as :class:`ReplayItem` batches.

    Parameters
    ----------
    config
        librdkafka settings of the connection (``bootstrap.servers``, security).
    topic, label_topic
        The prediction topic and, when the ranges have labels, the label topic (co-partitioned).
    ranges
        One per partition to read.
    batch_events
        Most messages read at once (the worker's default, 50,000).
    stall_seconds
        A partition that gives nothing for this long while its range is not done fails the replay
        (the broker is gone, or the messages were deleted by retention meanwhile).
    """

    def __init__(self, config: Mapping[str, Any], topic: str, label_topic: str | None, ranges: Sequence[PartitionRange], *,
                 batch_events: int = 50_000, stall_seconds: float = 60.0) -> None:
        if any(r.label_start is not None for r in ranges) and label_topic is None:
            raise ValueError("label_topic: ranges with labels need the label topic")
        self.config = dict(config)
        self.topic = topic
        self.label_topic = label_topic
        self.ranges = {r.partition: r for r in ranges}
        self.batch_events = batch_events
        self.stall_seconds = stall_seconds

    @property
    def total(self) -> int:
        """Messages in the ranges (an upper bound: a compacted or transactional topic has gaps)."""
        return sum(r.messages for r in self.ranges.values())

    def __iter__(self) -> Iterator[ReplayItem]:
        predictions = _RangeConsumer(self.config, self.topic, {p: (r.start, r.end) for p, r in self.ranges.items()},
                                     self.batch_events, self.stall_seconds)
        labelled = {p: (r.label_start, r.label_end) for p, r in self.ranges.items()
                    if r.label_start is not None and r.label_end is not None}
        labels = None if not labelled or self.label_topic is None else _RangeConsumer(
            self.config, self.label_topic, {p: (s, e) for p, (s, e) in labelled.items() if s is not None and e is not None},
            self.batch_events, self.stall_seconds)
        newest: dict[int, int] = {}  # partition -> newest prediction timestamp read
        waiting: dict[int, deque[MessageBatch]] = {p: deque() for p in labelled}
        try:
            for partition, batch in predictions.batches():
                yield ReplayItem(partition, batch)
                newest[partition] = max(newest.get(partition, 0), max(batch.timestamps_ms))
                if labels is not None:
                    yield from self._labels_up_to(labels, waiting, newest)
            if labels is not None:
                for partition, batch in labels.batches():
                    waiting[partition].append(batch)
                for partition in sorted(waiting):
                    while waiting[partition]:
                        yield ReplayItem(partition, waiting[partition].popleft(), labels=True)
        finally:
            predictions.close()
            if labels is not None:
                labels.close()

    def _labels_up_to(self, labels: _RangeConsumer, waiting: dict[int, deque[MessageBatch]], newest: Mapping[int, int]) -> Iterator[ReplayItem]:
        """The labels produced up to each partition's newest prediction (reading more until one is later)."""
        while not all(labels.done(p) or (waiting[p] and waiting[p][-1].timestamps_ms[-1] > newest.get(p, -1)) for p in waiting):
            got = labels.read_once()
            if not got:
                break
            for partition, batch in got.items():
                waiting[partition].append(batch)
        for partition in sorted(waiting):
            queue, bound = waiting[partition], newest.get(partition, -1)
            while queue:
                head = queue[0]
                if head.timestamps_ms[0] > bound:
                    break
                cut = sum(1 for t in head.timestamps_ms if t <= bound)
                if cut == len(head):
                    queue.popleft()
                    yield ReplayItem(partition, head, labels=True)
                else:
                    offset = head.offsets[cut]
                    yield ReplayItem(partition, MessageBatch(head.offsets[:cut], head.values[:cut], head.timestamps_ms[:cut]), labels=True)
                    queue[0] = head.since(offset)
                    break


class _RangeConsumer:
    """One consumer reading ``[start, end)`` of some partitions of a topic, in offset order per partition."""

    def __init__(self, config: Mapping[str, Any], topic: str, bounds: Mapping[int, tuple[int, int]], batch_events: int,
                 stall_seconds: float) -> None:
        self.topic = topic
        self.bounds = {p: (s, e) for p, (s, e) in bounds.items() if e > s}
        self.batch_events = batch_events
        self.stall_seconds = stall_seconds
        self._done = {p for p, (s, e) in bounds.items() if e <= s}
        self._consumer = _consumer(config)
        self._last_progress = time.monotonic()
        if self.bounds:
            self._consumer.assign([TopicPartition(topic, p, s) for p, (s, _) in sorted(self.bounds.items())])

    def done(self, partition: int) -> bool:
        return partition in self._done

    @property
    def finished(self) -> bool:
        return all(p in self._done for p in self.bounds)

    def batches(self) -> Iterator[tuple[int, MessageBatch]]:
        """Every remaining batch, until each partition reached its end."""
        while not self.finished:
            yield from sorted(self.read_once().items())

    def read_once(self) -> dict[int, MessageBatch]:
        """What one ``consume`` gives (cut at each partition's end), by partition; ``{}`` once finished.

        Raises
        ------
        KafkaUnavailableError
            Nothing came for ``stall_seconds`` although a partition is not done.
        """
        if self.finished:
            return {}
        messages = self._consumer.consume(num_messages=self.batch_events, timeout=0.5)
        found: dict[int, MessageBatch] = {}
        for (_, partition), batch in batches_by_partition(messages, f"replay consumer of {self.topic}").items():
            end = self.bounds[partition][1]
            if partition in self._done:
                continue
            if batch.offsets[-1] >= end:
                keep = sum(1 for offset in batch.offsets if offset < end)
                batch = MessageBatch(batch.offsets[:keep], batch.values[:keep], batch.timestamps_ms[:keep])
            if len(batch):
                found[partition] = batch
        self._mark_done()
        if found:
            self._last_progress = time.monotonic()
        elif not self.finished and time.monotonic() - self._last_progress > self.stall_seconds:
            left = {p: self.bounds[p] for p in self.bounds if p not in self._done}
            raise KafkaUnavailableError(
                f"no message of {self.topic} for {self.stall_seconds:.0f}s while these ranges are not done: "
                + ", ".join(f"[{p}] up to {end}" for p, (_, end) in sorted(left.items()))
                + " (is the broker up? were the messages deleted by the topic's retention meanwhile?)")
        return found

    def _mark_done(self) -> None:
        pending = [TopicPartition(self.topic, p) for p in self.bounds if p not in self._done]
        if not pending:
            return
        for tp in self._consumer.position(pending):
            if tp.offset >= self.bounds[tp.partition][1]:
                self._done.add(tp.partition)
                self._consumer.pause([TopicPartition(self.topic, tp.partition)])

    def close(self) -> None:
        self._consumer.close()
