"""In-memory ports of the partition runner: for the demo, tests and runs that need no durability."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from driftline.schemas.results import Rejection
from driftline.stream.monitor.results import BatchResult, Checkpoint

__all__ = ["CountedDeadLetters", "DeadLetter", "InMemoryCheckpointStore", "InMemoryDeadLetters", "InMemoryPartials"]


@dataclass(frozen=True)
class DeadLetter:
    """One rejected message as the in-memory port keeps it."""

    topic: str
    partition: int
    offset: int
    payload: bytes | None
    rejection: Rejection


class InMemoryDeadLetters:
    """Keeps every rejected message in a list (:attr:`messages`), in the order they were rejected.

    Examples
    --------
    >>> from driftline.schemas.results import RejectReason, Rejection
    >>> port = InMemoryDeadLetters()
    >>> port.send(b"x", topic="t", partition=0, offset=4, rejection=Rejection(RejectReason.CORRUPT, 0, None, "bad"))
    >>> port.flush()
    >>> [(m.offset, m.rejection.reason.value) for m in port.messages]
    [(4, 'corrupt')]
    """

    def __init__(self) -> None:
        self.messages: list[DeadLetter] = []

    def send(self, payload: bytes | None, *, topic: str, partition: int, offset: int, rejection: Rejection) -> None:
        self.messages.append(DeadLetter(topic, partition, offset, payload, rejection))

    def flush(self) -> None:
        """Nothing to wait for: a list is as durable as this port gets."""


class CountedDeadLetters:
    """Counts rejected messages by reason (:attr:`by_reason`) and keeps the first few, without their bytes.

    For a replay of messages whose rejects the live run dead-lettered already (the source keeps the
    originals): sending them again would only duplicate them.

    Examples
    --------
    >>> from driftline.schemas.results import RejectReason, Rejection
    >>> port = CountedDeadLetters()
    >>> port.send(b"x", topic="t", partition=0, offset=4, rejection=Rejection(RejectReason.CORRUPT, 0, None, "bad"))
    >>> dict(port.by_reason), port.examples
    ({'corrupt': 1}, ['t[0] offset 4: corrupt: bad'])
    """

    def __init__(self, examples: int = 5) -> None:
        self.by_reason: Counter[str] = Counter()
        self.examples: list[str] = []
        self._keep = examples

    def send(self, payload: bytes | None, *, topic: str, partition: int, offset: int, rejection: Rejection) -> None:
        self.by_reason[rejection.reason.value] += 1
        if len(self.examples) < self._keep:
            self.examples.append(f"{topic}[{partition}] offset {offset}: {rejection.reason.value}: {rejection.detail}")

    def flush(self) -> None:
        """Nothing to wait for."""


@dataclass
class InMemoryCheckpointStore:
    """Keeps the last checkpoint of each partition, the snapshots asked for and every committed result, in commit order."""

    checkpoints: dict[tuple[str, str, int], Checkpoint] = field(default_factory=dict)
    results: list[BatchResult] = field(default_factory=list)
    snapshots: list[Checkpoint] = field(default_factory=list)

    def load_checkpoint(self, consumer_group: str, topic: str, partition: int) -> Checkpoint | None:
        return self.checkpoints.get((consumer_group, topic, partition))

    def commit(self, checkpoint: Checkpoint, results: Iterable[BatchResult] = (), *, snapshot: bool = False) -> None:
        self.results.extend(results)
        self.checkpoints[(checkpoint.consumer_group, checkpoint.topic, checkpoint.partition)] = checkpoint
        if snapshot:
            self.snapshots.append(checkpoint)


class InMemoryPartials:
    """Keeps every window-partials message in a list (:attr:`messages`, ``(key, value)``), in the order sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []

    def send(self, key: bytes, value: bytes) -> None:
        self.messages.append((key, value))

    def flush(self) -> None:
        """Nothing to wait for."""
