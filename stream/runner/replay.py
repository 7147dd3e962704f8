"""Replay: the partition runner over a bounded range of messages, as a backfill (``driftline replay``).

A replay drives the very runners the worker drives (DESIGN decision 1), with other ports: its
messages come from a range of a topic or from an archive file, it publishes nothing to the alerts
topic and pages nobody, and its checkpoints are its own (``replay:<run>``). What it computes is
what a live run reading the same messages from the same state computed — the engine is
deterministic, however the messages are batched.

Two things here are the replay's own:

* :class:`ReplayStore` starts a runner where the replay decided (the live run's snapshot, the
  replay's own last checkpoint, or nothing) and counts what is written. Replaying *into the live
  run* it also holds back the performance rows of windows whose labels may still come: the live
  run, which read further, has more of them, and a replay must not write an older version over
  it. Such a row is written once the window is settled within the replay, else left to the live run.
* :func:`replay` feeds the messages to the runners in the order the input gives (a prediction
  batch, then the labels observed up to it), checkpoints every few seconds, and, for a model split
  over partitions, passes the partitions' partials to one merger, as the merge stage would.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from driftline.stream.monitor.results import BatchResult, Checkpoint, PerformanceWindow

from .memory import InMemoryPartials
from .merge_runner import MergeRunner
from .ports import CheckpointStore, EncodedMessage, MessageBatch
from .runner import PartitionRunner

__all__ = ["ReplayItem", "ReplayMerge", "ReplayStore", "ReplayTally", "replay"]


@dataclass(frozen=True)
class ReplayItem:
    """A batch of one partition's messages for the replay: predictions, or (``labels``) that partition's labels."""

    partition: int
    batch: MessageBatch
    labels: bool = False


@dataclass
class ReplayTally:
    """What a replay read and wrote (the summary a user sees)."""

    predictions: int = 0
    labels: int = 0
    accepted: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    label_outcomes: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)  # by table, as committed
    resolutions: int = 0
    held_back: int = 0  # performance rows of windows not settled at the end: left to the live run
    seconds: float = 0.0

    @property
    def alerts(self) -> int:
        """Alerts raised (written) by the replay."""
        return self.rows["alerts"]

    def count_result(self, result: BatchResult) -> None:
        self.accepted += result.accepted
        self.rejected_by_reason.update(result.rejected_by_reason)
        self.label_outcomes.update(result.label_counts)

    def count_commit(self, results: Iterable[BatchResult]) -> None:
        for result in results:
            self.rows["window_aggregates"] += len(result.feature_windows)
            self.rows["model_windows"] += len(result.model_windows)
            self.rows["performance_windows"] += len(result.performance_windows)
            self.rows["challenger_windows"] += len(result.challenger_windows)
            self.rows["schema_changes"] += len(result.schema_changes)
            self.rows["alerts"] += len(result.alerts)
            self.resolutions += len(result.resolved_alerts)


class ReplayStore:
    """The checkpoint store of a replay's runner: it starts where the replay decided, and counts what it writes.

    Parameters
    ----------
    store
        Where results and checkpoints are committed (the replay's own checkpoint key).
    start
        The state the runner starts from: a snapshot of the live run's checkpoint, the replay's own
        last checkpoint, or ``None`` (nothing: an empty engine).
    tally
        Counts the committed rows.
    hold_unsettled
        Replaying into the live run: hold back each performance row of a window whose labels may
        still come (see the module docstring); call :meth:`bind` with the runner.
    """

    def __init__(self, store: CheckpointStore, start: Checkpoint | None, tally: ReplayTally, *, hold_unsettled: bool = False) -> None:
        self.store = store
        self.start = start
        self.tally = tally
        self.hold_unsettled = hold_unsettled
        self._runner: PartitionRunner | None = None
        self._held: dict[int, PerformanceWindow] = {}  # window start -> its latest row, not settled yet

    def bind(self, runner: PartitionRunner) -> None:
        """The runner whose engine says which windows are settled."""
        self._runner = runner

    def load_checkpoint(self, consumer_group: str, topic: str, partition: int) -> Checkpoint | None:
        if self.start is None:
            return None
        return dataclasses.replace(self.start, consumer_group=consumer_group, topic=topic, partition=partition)

    def commit(self, checkpoint: Checkpoint, results: Iterable[BatchResult] = (), *, snapshot: bool = False) -> None:
        results = list(results)
        if self.hold_unsettled:
            results = self._release(results)
        self.store.commit(checkpoint, results, snapshot=snapshot)
        self.tally.count_commit(results)

    @property
    def held(self) -> int:
        """Performance rows held back now (windows not settled)."""
        return len(self._held)

    def _release(self, results: list[BatchResult]) -> list[BatchResult]:
        """``results`` with every performance row of an unsettled window held back, and the held rows now settled added."""
        for result in results:
            for window in result.performance_windows:
                self._held[window.window_start_ms] = window  # a later row of a window replaces the earlier
        settled_before = self._settled_before()
        released = [self._held.pop(start) for start in sorted(self._held) if start < settled_before]
        kept = [dataclasses.replace(result, performance_windows=[]) if result.performance_windows else result for result in results]
        if released:
            kept.append(BatchResult(performance_windows=released))
        return kept

    def _settled_before(self) -> float:
        if self._runner is None:
            raise RuntimeError("ReplayStore.bind(runner) must be called before the first checkpoint of a replay into the live run")
        bound = self._runner.engine.performance_settled_before
        return float("-inf") if bound is None else bound


@dataclass
class ReplayMerge:
    """A split model's merge stage inside the replay: the partitions' partials go to one merger.

    The partials get consecutive offsets from the merger's own position on, so a replay continued
    from its checkpoints numbers them on where it stopped.
    """

    merger: MergeRunner
    partials: InMemoryPartials

    def pump(self) -> None:
        """Give the merger the partials published since the last call, and checkpoint it."""
        if self.partials.messages:
            base = self.merger.next_offset or 0
            self.merger.process(MessageBatch.of([EncodedMessage(base + index, value, 0)
                                                 for index, (_, value) in enumerate(self.partials.messages)]))
            self.partials.messages.clear()
        self.merger.checkpoint()


def replay(
    runners: Mapping[int, PartitionRunner],
    items: Iterable[ReplayItem],
    tally: ReplayTally,
    *,
    merge: ReplayMerge | None = None,
    checkpoint_seconds: float = 5.0,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ReplayTally:
    """Feed ``items`` to the partitions' runners, checkpointing every ``checkpoint_seconds``; return ``tally`` completed.

    The runners' windows are not closed at the end: a replay writes what a live run that had read
    exactly these messages would have written, so that replaying a range the live run covered
    changes nothing, and a replay under a run label of its own can be continued later.

    Raises
    ------
    KeyError
        An item names a partition without a runner.
    DriftlineError
        A store, dead-letter port or the engine failed; what was checkpointed before stays, and the
        replay can be run again (it continues from its own checkpoint).
    """
    started = clock()
    last_checkpoint = started
    for item in items:
        runner = runners[item.partition]
        if item.labels:
            result = runner.process_labels(item.batch)
            tally.labels += len(item.batch)
        else:
            result = runner.process(item.batch)
            tally.predictions += len(item.batch)
        if result is not None:
            tally.count_result(result)
        if progress is not None:
            progress(len(item.batch))
        if clock() - last_checkpoint >= checkpoint_seconds:
            _checkpoint(runners, merge)
            last_checkpoint = clock()
    _checkpoint(runners, merge)
    tally.seconds = clock() - started
    tally.held_back = sum(runner.store.held for runner in runners.values() if isinstance(runner.store, ReplayStore))
    return tally


def _checkpoint(runners: Mapping[int, PartitionRunner], merge: ReplayMerge | None) -> None:
    for partition in sorted(runners):
        runners[partition].checkpoint()
    if merge is not None:
        merge.pump()
