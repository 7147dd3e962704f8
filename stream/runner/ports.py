"""The ports of the partition runner: what it needs from the world, as small Protocols.

The runner (:class:`~driftline.stream.runner.PartitionRunner`) knows no transport and no database.
The worker plugs in a Kafka dead-letter producer and a PostgreSQL checkpoint store, the demo an
in-memory dead-letter list and a SQLite store, replay whatever its run needs — so every caller
computes exactly the same results from the same messages.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from driftline.schemas.results import Rejection
from driftline.stream.monitor.results import BatchResult, Checkpoint

__all__ = ["CheckpointStore", "DeadLetterPort", "EncodedMessage", "MessageBatch", "MetricsPort", "PartialsPort", "PartitionKey"]


@dataclass(frozen=True)
class EncodedMessage:
    """One message as it arrived: its bytes and its place in the partition."""

    offset: int
    value: bytes | None
    timestamp_ms: int  # the message's broker timestamp (producer time for CreateTime topics); 0 if unknown


@dataclass(frozen=True)
class MessageBatch:
    """Consecutive messages of one partition, column by column (the hot path's form: no object per message).

    ``offsets`` increase; ``values[i]`` is the message at ``offsets[i]`` (``None``: a tombstone);
    ``timestamps_ms[i]`` its broker timestamp (0 if unknown).

    Examples
    --------
    >>> batch = MessageBatch.of([EncodedMessage(4, b"a", 10), EncodedMessage(5, None, 11)])
    >>> len(batch), batch.offsets, batch.message(1)
    (2, [4, 5], EncodedMessage(offset=5, value=None, timestamp_ms=11))
    >>> batch.since(5).offsets
    [5]
    """

    offsets: list[int]
    values: list[bytes | None]
    timestamps_ms: list[int]

    @classmethod
    def of(cls, messages: Sequence[EncodedMessage]) -> MessageBatch:
        """The batch of ``messages`` (in offset order)."""
        return cls([m.offset for m in messages], [m.value for m in messages], [m.timestamp_ms for m in messages])

    def __len__(self) -> int:
        return len(self.offsets)

    def message(self, index: int) -> EncodedMessage:
        return EncodedMessage(self.offsets[index], self.values[index], self.timestamps_ms[index])

    def since(self, offset: int) -> MessageBatch:
        """The messages at ``offset`` or later."""
        start = bisect.bisect_left(self.offsets, offset)
        return self if start == 0 else MessageBatch(self.offsets[start:], self.values[start:], self.timestamps_ms[start:])


@dataclass(frozen=True)
class PartitionKey:
    """Which input a runner processes, and the key of its checkpoint.

    ``consumer_group`` tells runs over the same partition apart (the worker's Kafka consumer group,
    ``demo`` for the demo).
    """

    consumer_group: str
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


class DeadLetterPort(Protocol):
    """Where rejected messages go, with their original bytes and the reason."""

    def send(self, payload: bytes | None, *, topic: str, partition: int, offset: int, rejection: Rejection) -> None:
        """Queue one rejected message (may return before it is durable)."""

    def flush(self) -> None:
        """Return once every queued message is durable; raise a ``DriftlineError`` if one is not."""


class PartialsPort(Protocol):
    """Where the partitions of a split model send their window partials, signals and progress (in order)."""

    def send(self, key: bytes, value: bytes) -> None:
        """Queue one message (may return before it is durable); messages of one key keep their order."""

    def flush(self) -> None:
        """Return once every queued message is durable; raise a ``DriftlineError`` if one is not."""


class CheckpointStore(Protocol):
    """Durable checkpoints, each committed together with the results it accounts for."""

    def load_checkpoint(self, consumer_group: str, topic: str, partition: int) -> Checkpoint | None:
        """The last committed checkpoint of the partition, or ``None``."""

    def commit(self, checkpoint: Checkpoint, results: Iterable[BatchResult] = (), *, snapshot: bool = False) -> None:
        """Make ``results`` and ``checkpoint`` durable together (one transaction), or neither and raise.

        With ``snapshot``, also keep a copy of ``checkpoint`` (a replay may start from it) beside the last one.
        """


class MetricsPort(Protocol):
    """What the runner reports to monitoring (``driftline.sinks.DriftlineMetrics`` implements it)."""

    def observe(self, result: BatchResult, now_s: float, *, model: str | None = None, processing_seconds: float | None = None) -> None:
        """Update the metrics from one engine result."""

    def observe_commit(self, model: str, seconds: float) -> None:
        """Record the latency of one checkpoint (oldest message's timestamp to commit)."""
