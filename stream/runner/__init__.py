"""The one partition runner and its ports: every shell drives the monitor engine through it.

:class:`PartitionRunner` takes encoded messages, decodes them, sends rejections to a
:class:`DeadLetterPort`, runs the engine and commits results with checkpoints through a
:class:`CheckpointStore`. The worker, the demo and replay differ only in the ports they plug in.
"""

from __future__ import annotations

from .memory import DeadLetter, InMemoryCheckpointStore, InMemoryDeadLetters
from .ports import CheckpointStore, DeadLetterPort, EncodedMessage, MessageBatch, MetricsPort, PartitionKey
from .runner import PartitionRunner, RunnerCounts

__all__ = [
    "CheckpointStore",
    "DeadLetter",
    "DeadLetterPort",
    "EncodedMessage",
    "InMemoryCheckpointStore",
    "InMemoryDeadLetters",
    "MessageBatch",
    "MetricsPort",
    "PartitionKey",
    "PartitionRunner",
    "RunnerCounts",
]
