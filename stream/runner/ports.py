"""The ports of the partition runner: what it needs from the world, as small Protocols.

The runner (:class:`~driftline.stream.runner.PartitionRunner`) knows no transport and no database.
The worker plugs in a Kafka dead-letter producer and a PostgreSQL checkpoint store, the demo an
in-memory dead-letter list and a SQLite store, replay whatever its run needs — so every caller
computes exactly the same results from the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from driftline.schemas.results import Rejection
from driftline.stream.monitor.results import BatchResult, Checkpoint

__all__ = ["CheckpointStore", "DeadLetterPort", "EncodedMessage", "MetricsPort", "PartitionKey"]


@dataclass(frozen=True)
class EncodedMessage:
    """One message as it arrived: its bytes and its place in the partition."""

    offset: int
    value: bytes | None
    timestamp_ms: int  # the message's broker timestamp (producer time for CreateTime topics); 0 if unknown


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


class CheckpointStore(Protocol):
    """Durable checkpoints, each committed together with the results it accounts for."""

    def load_checkpoint(self, consumer_group: str, topic: str, partition: int) -> Checkpoint | None:
        """The last committed checkpoint of the partition, or ``None``."""

    def commit(self, checkpoint: Checkpoint, results: Iterable[BatchResult] = ()) -> None:
        """Make ``results`` and ``checkpoint`` durable together (one transaction), or neither and raise."""


class MetricsPort(Protocol):
    """What the runner reports to monitoring (``driftline.sinks.DriftlineMetrics`` implements it)."""

    def observe(self, result: BatchResult, now_s: float, *, model: str | None = None, processing_seconds: float | None = None) -> None:
        """Update the metrics from one engine result."""

    def observe_commit(self, model: str, seconds: float) -> None:
        """Record the latency of one checkpoint (oldest message's timestamp to commit)."""
