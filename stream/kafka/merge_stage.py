"""The merge stage: a Faust agent on the window-partials topic that makes split models' windows (DESIGN decision 11).

The partitions of a model whose topic has several send their closed windows' partials, their
detector signals, new writer schemas and their progress to the partials topic, keyed by model
(:mod:`driftline.stream.runner.partials`). This agent reads that topic with Faust's own consumer —
the messages are few (a handful per window and partition), so Faust's per-message path costs
nothing here — and feeds each partition of it to a :class:`~driftline.stream.runner.MergeRunner`,
which merges each model's partials once every partition has passed the window.

The exactly-once effect is the runners' protocol, on Faust's terms:

* the agent reads with manual acknowledgement (``stream.noack()``): an event is acknowledged — and
  its offset becomes committable by Faust — only after the merge runner's database checkpoint that
  covers it (a timer, every ``checkpoint_interval_seconds``);
* on assignment a partition's runner is restored from its checkpoint, and redelivered messages below
  its offset are skipped; on revocation (and when the worker stops) it is checkpointed first;
* events of a partition this worker does not own (any more) are never processed.

A database outage stops the checkpoints: the events wait unacknowledged (the batch reader pauses
the model topics meanwhile, so few arrive) and the checkpoint is retried on the next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import faust
from mode import Service

from driftline.schemas.errors import DriftlineError
from driftline.stream.runner import MergeRunner, MessageBatch

__all__ = ["MergeStage"]

log = logging.getLogger("driftline.merge")


class MergeStage(Service):
    """Runs the merge agent and checkpoints its runners; started and stopped with the app.

    Parameters
    ----------
    app
        The worker's Faust app.
    topic
        The window-partials topic.
    make_runner
        Builds the merge runner of one partition of ``topic``, restored from its checkpoint.
    checkpoint_seconds
        Time between checkpoints.
    """

    def __init__(self, app: faust.App, topic: str, make_runner: Callable[[int], MergeRunner], checkpoint_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.topic_name = topic
        self.make_runner = make_runner
        self.checkpoint_seconds = checkpoint_seconds
        self.runners: dict[int, MergeRunner] = {}
        self._assigned: set[int] = set()
        self._held: dict[int, list[Any]] = {}  # events processed, waiting for their checkpoint to be acknowledged
        self._waiting: dict[int, list[Any]] = {}  # events of a partition that could not be restored yet
        self._failing: str | None = None  # the error of the failing checkpoints, while they fail
        self._register()

    def _register(self) -> None:
        app = self.app
        channel = app.topic(self.topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        stage = self

        @app.agent(channel, name=f"{app.conf.id}.merge")
        async def merge(stream: Any) -> None:
            async for event in stream.noack().events():
                stage.receive(event)

        @app.timer(self.checkpoint_seconds)  # type: ignore[untyped-decorator]
        async def checkpoint() -> None:
            stage.checkpoint_all()

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust passes signal= too (in kwargs)
        async def on_assigned(sender: Any, assigned: Iterable[Any], **kwargs: Any) -> None:
            stage.assigned({tp.partition for tp in assigned if tp.topic == stage.topic_name})

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def on_revoked(sender: Any, revoked: Iterable[Any], **kwargs: Any) -> None:
            stage.revoked({tp.partition for tp in revoked if tp.topic == stage.topic_name})

    # -- events --------------------------------------------------------------------------------------

    def receive(self, event: Any) -> None:
        """One message of the partials topic, in offset order per partition."""
        partition = int(event.message.partition)
        if partition not in self._assigned:
            return  # no longer ours (a rebalance under way): its next owner processes it
        if partition in self._waiting:
            self._waiting[partition].append(event)
            return
        runner = self.runners.get(partition) or self._restore(partition)
        if runner is None:
            self._waiting[partition] = [event]
            return
        self._process(partition, runner, [event])

    def _process(self, partition: int, runner: MergeRunner, events: list[Any]) -> None:
        messages = [event.message for event in events]
        runner.process(
            MessageBatch([int(m.offset) for m in messages], [m.value for m in messages], [int((m.timestamp or 0) * 1000) for m in messages])
        )
        self._held.setdefault(partition, []).extend(events)

    def _restore(self, partition: int) -> MergeRunner | None:
        try:
            runner = self.make_runner(partition)
        except DriftlineError as exc:
            log.warning("%s[%d]: cannot restore it yet (%s); its messages wait", self.topic_name, partition, exc)
            return None
        log.info(
            "%s[%d]: %s", self.topic_name, partition,
            f"restored from its checkpoint at offset {runner.next_offset}" if runner.restored else "no checkpoint: from the beginning",
        )
        self.runners[partition] = runner
        return runner

    # -- checkpoints and rebalances ------------------------------------------------------------------

    def checkpoint_all(self) -> None:
        """Checkpoint every runner, then acknowledge the events each checkpoint covers; restore waiting partitions."""
        for partition in sorted(self._waiting):
            runner = self._restore(partition)
            if runner is not None:
                self._process(partition, runner, self._waiting.pop(partition))
        for partition in sorted(self.runners):
            if not self._checkpoint(partition):
                return
        if self._failing is not None:
            log.warning("merge checkpoints go through again")
            self._failing = None

    def _checkpoint(self, partition: int) -> bool:
        runner = self.runners[partition]
        try:
            runner.checkpoint()
        except DriftlineError as exc:
            if self._failing is None:
                log.warning("cannot checkpoint the merge of %s[%d] (%s): retrying every %.1f s", self.topic_name, partition, exc,
                            self.checkpoint_seconds)
            self._failing = str(exc)
            return False
        for event in self._held.pop(partition, []):
            event.ack()
        return True

    def assigned(self, partitions: set[int]) -> None:
        """Faust's assignment (the whole of it: Faust rebalances eagerly)."""
        self._assigned = set(partitions)

    def revoked(self, partitions: set[int]) -> None:
        """Checkpoint the revoked partitions' runners, then let them go."""
        for partition in sorted(partitions):
            self._assigned.discard(partition)
            self._waiting.pop(partition, None)
            if partition in self.runners:
                self._checkpoint(partition)  # a failure: the next owner redoes what was not committed
                self.runners.pop(partition, None)
                self._held.pop(partition, None)
                log.info("%s[%d]: revoked", self.topic_name, partition)

    async def on_stop(self) -> None:
        for partition in sorted(self.runners):
            self._checkpoint(partition)
