"""The one partition runner and its ports: every shell drives the monitor engine through it.

:class:`PartitionRunner` takes encoded messages, decodes them, sends rejections to a
:class:`DeadLetterPort`, runs the engine and commits results with checkpoints through a
:class:`CheckpointStore`. The worker, the demo and replay differ only in the ports they plug in.
A model split over partitions runs one such runner per partition, and :class:`MergeRunner` merges
their window partials into the model's windows (over a :class:`PartialsPort`).
"""

from __future__ import annotations

from .memory import CountedDeadLetters, DeadLetter, InMemoryCheckpointStore, InMemoryDeadLetters, InMemoryPartials
from .merge_runner import MergedModel, MergeRunner
from .ports import CheckpointStore, DeadLetterPort, EncodedMessage, MessageBatch, MetricsPort, PartialsPort, PartitionKey
from .replay import ReplayItem, ReplayMerge, ReplayStore, ReplayTally, replay
from .runner import CheckpointedRunner, PartitionRunner, RunInputs, RunnerCounts, RunStart

__all__ = [
    "CheckpointStore",
    "CheckpointedRunner",
    "CountedDeadLetters",
    "DeadLetter",
    "DeadLetterPort",
    "EncodedMessage",
    "InMemoryCheckpointStore",
    "InMemoryDeadLetters",
    "InMemoryPartials",
    "MergeRunner",
    "MergedModel",
    "MessageBatch",
    "MetricsPort",
    "PartialsPort",
    "PartitionKey",
    "PartitionRunner",
    "ReplayItem",
    "ReplayMerge",
    "ReplayStore",
    "ReplayTally",
    "RunInputs",
    "RunStart",
    "RunnerCounts",
    "replay",
]
