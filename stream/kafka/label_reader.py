"""The worker's label consumer: reads partition p of each label topic for the runner that owns partition p.

Labels (``labels.<model>``) are co-partitioned with their predictions (same key, same partition
count; :func:`~driftline.stream.kafka.worker.prepare_topics` checks it), so the runner of prediction
partition p joins label partition p. Kafka's group protocol cannot be told to assign two topics'
partitions together under the cooperative assignor the worker uses (only the eager range assignor
happens to), so the label topics are not in the group at all: a second consumer, outside any group,
*follows* the prediction assignment — it is given label partition p when the reader owns prediction
partition p (at the position stored in that runner's checkpoint), and loses it when the reader does.
Its position is never committed to Kafka: the runner's checkpoint holds it, in the same transaction
as the engine state (DESIGN decision 7), which is what makes a restart exact.

Flow control: a label whose prediction has not been read yet waits in the join, in memory. A label
topic much sparser than its prediction topic would, on catch-up, run far ahead in event time and fill
the join with waiting labels (then evict them). So a label partition is paused while its runner holds
more than :data:`PAUSE_SHARE` of the join's capacity in waiting labels, and resumed below
:data:`RESUME_SHARE`; pausing drops what was fetched and not yet returned, and fetching resumes at the
position after the last label returned.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from driftline.stream.runner import MessageBatch, PartitionRunner

from .batching import batches_by_partition
from .settings import WorkerSettings
from .topics import CLIENT_LOGGER

__all__ = ["PAUSE_SHARE", "RESUME_SHARE", "LabelReader"]

log = logging.getLogger("driftline.worker")

#: A label partition pauses when its runner's waiting labels exceed this share of the join's capacity…
PAUSE_SHARE = 0.25
#: …and resumes once they are below this share.
RESUME_SHARE = 0.125


class LabelReader:
    """A group-less consumer of the label topics that follows the reader's prediction partitions.

    Parameters
    ----------
    settings
        The worker's settings: ``label_topics`` (model -> label topic) and the fetch limits.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.topics = dict(settings.label_topics)  # model -> label topic
        self._consumer = Consumer(self._config())
        self._followed: set[tuple[str, int]] = set()  # (label topic, partition)
        self._throttled: set[tuple[str, int]] = set()  # paused for flow control
        self._suspended = False  # paused for an outage

    def _config(self) -> dict[str, Any]:
        settings = self.settings
        return {
            **settings.kafka.client_config(),
            # Names the client only: partitions are assigned by hand, nothing joins the group or commits.
            "group.id": f"{settings.consumer_group}.labels",
            "logger": CLIENT_LOGGER,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": max(52_428_800, settings.max_message_bytes + 1_048_576),
            "max.partition.fetch.bytes": max(1_048_576, settings.max_message_bytes + 65_536),
        }

    def follow(self, model: str, partition: int, runner: PartitionRunner) -> None:
        """Read label partition ``partition`` of ``model`` from where ``runner``'s checkpoint says (again, if followed).

        Called when the reader owns the prediction partition, and when it rebuilt the partition's
        runner from its checkpoint (a replay after an engine failure): what was fetched past that
        position is dropped. Nothing for a name without labels (a feature set).
        """
        if model not in self.topics:
            return
        key = (self.topics[model], partition)
        if key in self._followed:
            self.unfollow(model, partition)
        start = runner.label_next_offset if runner.label_next_offset is not None else OFFSET_BEGINNING
        tp = TopicPartition(key[0], partition, start)
        self._consumer.incremental_assign([tp])
        self._followed.add(key)
        if self._suspended:
            self._pause([tp])
        log.debug("%s[%d]: labels followed from offset %s", *key, runner.label_next_offset)

    def unfollow(self, model: str, partition: int) -> None:
        """Stop reading the label partition (its prediction partition was revoked or lost)."""
        if model not in self.topics:
            return
        key = (self.topics[model], partition)
        if key not in self._followed:
            return
        self._followed.discard(key)
        self._throttled.discard(key)
        try:
            self._consumer.incremental_unassign([TopicPartition(*key)])
        except KafkaException as exc:  # not assigned after all: nothing to undo
            log.debug("%s[%d]: unassigning the labels: %s", *key, exc)

    def suspend(self) -> None:
        """Pause every label partition (a checkpoint outage: nothing more may pile up in memory)."""
        self._suspended = True
        self._pause([TopicPartition(*key) for key in self._followed])

    def resume(self) -> None:
        """Resume after :meth:`suspend` (the throttled partitions stay paused until their join drains)."""
        self._suspended = False
        self._resume([TopicPartition(*key) for key in self._followed - self._throttled])

    def throttle(self, model: str, partition: int, runner: PartitionRunner) -> None:
        """Pause or resume the label partition by how many labels wait for their prediction in ``runner``'s join."""
        join = runner.engine.label_join
        if join is None or model not in self.topics:
            return
        key = (self.topics[model], partition)
        waiting = join.waiting_labels
        if key not in self._throttled and waiting > PAUSE_SHARE * join.capacity:
            self._throttled.add(key)
            self._pause([TopicPartition(*key)])
            log.info("%s[%d]: %d labels wait for their predictions: labels paused until the predictions catch up", *key, waiting)
        elif key in self._throttled and waiting < RESUME_SHARE * join.capacity:
            self._throttled.discard(key)
            if not self._suspended:
                self._resume([TopicPartition(*key)])
            log.info("%s[%d]: %d labels wait: labels resumed", *key, waiting)

    def read(self, max_messages: int) -> dict[tuple[str, int], MessageBatch]:
        """What has arrived (without waiting): ``{(label topic, partition): batch}`` (error events are logged).

        Raises
        ------
        KafkaException
            A fatal error event.
        """
        if not self._followed:
            return {}
        return batches_by_partition(self._consumer.consume(num_messages=max_messages, timeout=0), "label consumer")

    def end_offset(self, model: str, partition: int) -> int | None:
        """The label partition's end offset as last fetched (``None``: not followed, or not known yet)."""
        if model not in self.topics:
            return None
        key = (self.topics[model], partition)
        if key not in self._followed:
            return None
        try:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    def close(self) -> None:
        self._consumer.close()

    def _pause(self, partitions: list[TopicPartition]) -> None:
        if partitions:
            try:
                self._consumer.pause(partitions)
            except KafkaException as exc:
                log.debug("pausing labels: %s", exc)

    def _resume(self, partitions: list[TopicPartition]) -> None:
        if partitions:
            try:
                self._consumer.resume(partitions)
            except KafkaException as exc:
                log.debug("resuming labels: %s", exc)
