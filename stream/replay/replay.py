"""``driftline replay``: the partition runner over a range of a model's topic (or an archive file), into the database.

Where each partition starts decides what the replay computes:

* **Into the live run** (``--run live``): from the live run's own state at or before ``--from`` —
  the latest of its kept checkpoint snapshots (``checkpoint_snapshots``), or its very beginning
  (an empty engine at the offsets it started from, recorded in its checkpoint). The replay then
  computes exactly what the live run computed, and writing it through the same idempotent upserts
  changes nothing. It is refused when the contract, a reference profile or an engine setting
  differs from what the live run used (the checkpoint records them): results computed differently
  belong under a run label of their own.
* **Under a run label of its own** (``--run fix-1``): from nothing at ``--from``, or, when the run
  has a checkpoint already (``replay:fix-1``), where that one stopped — a replay is continued by
  running it again. Its rows sit beside the live ones (the ``run`` column), for analysts to compare.

Nothing goes to the alerts topic or a webhook (a replay pages nobody); rejected messages are counted
by reason and, only with ``dead_letter_topic``, dead-lettered again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftline.schemas.codec import Codec
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.schemas.errors import DriftlineError
from driftline.stream.monitor.engine import EngineConfig
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import Checkpoint
from driftline.stream.runner import (
    CountedDeadLetters,
    DeadLetterPort,
    InMemoryPartials,
    MergedModel,
    MergeRunner,
    PartitionKey,
    PartitionRunner,
    ReplayMerge,
    ReplayStore,
    ReplayTally,
    RunInputs,
    RunStart,
    replay,
)

if TYPE_CHECKING:
    from driftline.stream.kafka.connection import KafkaConnection
    from driftline.stream.kafka.registry import SchemaRegistrySettings

__all__ = ["LIVE_RUN", "Bound", "ReplayError", "ReplayOutcome", "ReplaySettings", "run_replay"]

log = logging.getLogger("driftline.replay")

LIVE_RUN = "live"

#: A bound of a range: an offset (the same in every partition) or a time (UTC: Kafka timestamps of a
#: topic's messages, event time of an archive's rows).
Bound = int | datetime


class ReplayError(DriftlineError):
    """A replay cannot run as asked (the message says why and what to do instead)."""


@dataclass(frozen=True)
class ReplaySettings:
    """Everything ``driftline replay`` needs (built once from the command line).

    Attributes
    ----------
    model
        The model (or feature set) to replay.
    run
        ``live`` (into the live run's rows) or a run label of the replay's own.
    database_url
        The database the live run writes to (migrated).
    kafka
        The brokers and the connection's security (as the worker's); not used with ``input_file``.
    input_file, input_format
        Replay the rows of this archive (Parquet, CSV or JSON lines) instead of the topic.
    start, end
        The range: from ``start`` (included) to ``end`` (excluded); ``None``: the live run's
        beginning (into the live run) or the topic's first message, and the live run's position
        (into the live run) or the topic's end at start.
    consumer_group
        The live run's consumer group: whose checkpoints and snapshots ``--run live`` starts from.
    topic_prefix, feature_topic_prefix, label_topic_prefix
        As for the worker.
    engine
        The engine's settings (as for the worker; into the live run they must be the live run's).
    schemas_dir, profiles_dir
        Contracts and reference profiles (default: the bundled contracts, the database's profiles).
    max_message_bytes, batch_events
        As for the worker.
    checkpoint_seconds
        How often the replay's progress is committed (results and its own checkpoint, one transaction).
    dead_letter_topic
        Send rejected messages (again) to this topic; ``None``: count them only.
    schema_registry
        Where the schema ids of Confluent-framed messages are resolved (``None``: they are rejected as
        ``unknown_schema_id``, as by a worker without one).
    """

    model: str
    run: str
    database_url: str = field(repr=False)
    kafka: KafkaConnection | None = None
    input_file: Path | None = None
    input_format: str | None = None
    start: Bound | None = None
    end: Bound | None = None
    consumer_group: str = "driftline"
    topic_prefix: str = "predictions."
    feature_topic_prefix: str = "features."
    label_topic_prefix: str = "labels."
    engine: EngineConfig = field(default_factory=EngineConfig)
    schemas_dir: Path | None = None
    profiles_dir: Path | None = None
    max_message_bytes: int = 1_000_000
    batch_events: int = 50_000
    checkpoint_seconds: float = 5.0
    dead_letter_topic: str | None = None
    schema_registry: SchemaRegistrySettings | None = None

    def __post_init__(self) -> None:
        from driftline.sinks.sql_statements import check_run_label

        check_run_label(self.run)
        if self.input_file is None and self.kafka is None:
            raise ValueError("kafka: a replay of a topic needs the brokers")
        if self.input_file is not None and self.dead_letter_topic is not None:
            raise ValueError("dead_letter_topic: an archive's rows are not Kafka messages: they are counted, not dead-lettered")
        if self.input_file is not None and self.run == LIVE_RUN:
            raise ValueError("run: an archive file has no offsets of the live run's topic: replay it under a run label of its own")
        if isinstance(self.start, int) and isinstance(self.end, int) and self.end <= self.start:
            raise ValueError(f"end: offset {self.end} is not after the start, {self.start}")
        if isinstance(self.start, datetime) and isinstance(self.end, datetime) and self.end <= self.start:
            raise ValueError(f"end: {self.end.isoformat()} is not after the start, {self.start.isoformat()}")
        if not self.checkpoint_seconds > 0:
            raise ValueError(f"checkpoint_seconds must be > 0, got {self.checkpoint_seconds}")

    @property
    def redacted_database_url(self) -> str:
        from driftline.sinks.database import display_url

        return display_url(self.database_url)

    @property
    def replay_group(self) -> str:
        """The key of the replay's own checkpoints."""
        return f"replay:{self.run}"


@dataclass
class PartitionPlan:
    """Where one partition's replay starts, and how far it reads."""

    partition: int
    start: Checkpoint | None  # the state it starts from (None: an empty engine)
    origin: str  # what that state is, for the summary
    first: int  # first prediction offset read
    end: int  # first offset not read (archives: -1, to their last row)
    label_first: int | None = None  # None: no labels
    label_end: int | None = None
    inputs: RunInputs | None = None  # into the live run: the inputs its state recorded


@dataclass
class ReplayOutcome:
    """What a replay did: its plan per partition and its tally (the summary)."""

    settings: ReplaySettings
    source: str
    plans: list[PartitionPlan]
    tally: ReplayTally
    deadletters: CountedDeadLetters | None
    unencodable: int = 0
    unencodable_examples: list[str] = field(default_factory=list)


def run_replay(settings: ReplaySettings, *, progress: Callable[[int], None] | None = None,
               on_total: Callable[[int], None] | None = None) -> ReplayOutcome:
    """Run the replay ``settings`` describe; ``on_total`` hears how many messages the range holds before it starts.

    Raises
    ------
    ReplayError
        The replay cannot run as asked (no live state at ``--from``, other inputs than the live run's,
        a split model into the live run, a run label already past ``--from``, …).
    DriftlineError
        A contract, profile, the database or the broker failed.
    """
    from driftline.sinks import SqlCheckpointStore
    from driftline.stream.kafka.registry import codec_factory
    from driftline.stream.kafka.worker import check_database, load_profiles

    catalog = Catalog.load(settings.schemas_dir) if settings.schemas_dir is not None else Catalog.load()
    contract = catalog.contract(settings.model)
    codecs = codec_factory(catalog, settings.schema_registry, max_message_bytes=settings.max_message_bytes)
    database = check_database(settings)
    try:
        profiles = load_profiles(settings, database, settings.model)
        config = settings.engine
        if contract.kind == "feature_set":
            config = dataclasses.replace(config, label_horizon_ms=None, challenger=None)
        store = SqlCheckpointStore(database, run=settings.run)
        if settings.input_file is not None:
            return _replay_archive(settings, codecs, contract, profiles, config, store, progress, on_total)
        return _replay_topic(settings, codecs, contract, profiles, config, store, progress, on_total)
    finally:
        database.dispose()


def _deadletters(settings: ReplaySettings) -> tuple[DeadLetterPort, CountedDeadLetters | None]:
    if settings.dead_letter_topic is None:
        counted = CountedDeadLetters()
        return counted, counted
    from driftline.stream.kafka.deadletter import DeadLetterProducer

    assert settings.kafka is not None  # (a topic's replay; an archive's has no dead-letter topic)
    return DeadLetterProducer(settings.kafka, topic=settings.dead_letter_topic), None


def _runner(settings: ReplaySettings, codecs: Callable[[], Codec], contract: Contract, profiles: Mapping[str, ReferenceProfile],
            config: EngineConfig, key: PartitionKey, store: ReplayStore, deadletters: DeadLetterPort, *,
            partials: InMemoryPartials | None = None, partitions: int = 1, label_topic: str | None = None) -> PartitionRunner:
    runner = PartitionRunner(
        key=key, contract=contract, profiles=profiles, codec=codecs(),
        store=store, deadletters=deadletters, config=config, partials=partials, partitions=partitions, label_topic=label_topic,
    )
    store.bind(runner)
    return runner


# -- an archive file ---------------------------------------------------------------------------------


def _replay_archive(settings: ReplaySettings, codecs: Callable[[], Codec], contract: Contract, profiles: Mapping[str, ReferenceProfile],
                    config: EngineConfig, store: Any, progress: Callable[[int], None] | None,
                    on_total: Callable[[int], None] | None) -> ReplayOutcome:
    from driftline.stream.produce.archive import Archive

    assert settings.input_file is not None
    path = settings.input_file
    topic = f"file:{path.name}"
    key = PartitionKey(settings.replay_group, topic, 0)
    own = store.load_checkpoint(key.consumer_group, key.topic, 0)
    first = _continue_or_start(settings, own, f"{path}", settings.start)
    archive = Archive(path, contract, settings.input_format, start=settings.start if own is None else own.next_offset,
                      end=settings.end)
    tally = ReplayTally()
    deadletters, counted = _deadletters(settings)
    replay_store = ReplayStore(store, own, tally)
    runner = _runner(settings, codecs, contract, profiles, dataclasses.replace(config, label_horizon_ms=None, challenger=None),
                     key, replay_store, deadletters)
    plan = PartitionPlan(0, own, "its own checkpoint" if own is not None else "an empty engine", first, -1)
    replay({0: runner}, archive, tally, checkpoint_seconds=settings.checkpoint_seconds, progress=progress)
    return ReplayOutcome(settings, str(path), [plan], tally, counted, archive.unencodable, [str(p) for p in archive.problems])


def _continue_or_start(settings: ReplaySettings, own: Checkpoint | None, where: str, start: Bound | None) -> int:
    """The first offset of a replay under its own run label: where its checkpoint stopped, or ``start``'s."""
    if own is None:
        return start if isinstance(start, int) else -1
    if start is not None and start != own.next_offset:
        raise ReplayError(
            f"run {settings.run!r} has replayed {where} up to offset {own.next_offset} already: run it again without --from to "
            f"continue it, or replay under another --run"
        )
    return own.next_offset


# -- a topic -----------------------------------------------------------------------------------------


def _replay_topic(settings: ReplaySettings, codecs: Callable[[], Codec], contract: Contract, profiles: Mapping[str, ReferenceProfile],
                  config: EngineConfig, store: Any, progress: Callable[[int], None] | None,
                  on_total: Callable[[int], None] | None) -> ReplayOutcome:
    from driftline.stream.kafka.ranges import KafkaRangeReader, PartitionRange, watermarks
    from driftline.stream.kafka.topics import label_topic as label_topic_of
    from driftline.stream.kafka.topics import prediction_topic

    assert settings.kafka is not None  # (checked by ReplaySettings)
    kafka = settings.kafka.client_config()
    prefix = settings.topic_prefix if contract.kind != "feature_set" else settings.feature_topic_prefix
    topic = prediction_topic(settings.model, prefix)
    partitions = _partitions(settings.kafka, topic)
    labels_topic = label_topic_of(settings.model, settings.label_topic_prefix) if config.label_horizon_ms is not None else None
    if labels_topic is not None and _partitions(settings.kafka, labels_topic) != partitions:
        raise ReplayError(f"{labels_topic} and {topic} have different partition counts: labels must be co-partitioned")
    split = len(partitions) > 1
    if split and settings.run == LIVE_RUN:
        raise ReplayError(
            f"{topic} has {len(partitions)} partitions: its windows are made by the merge stage, whose state is not kept with "
            "the partitions' snapshots, so a replay cannot start where the live run was. Replay it under a run label of its "
            "own (--run NAME)"
        )
    bounds = _Bounds(settings, kafka, topic, labels_topic, partitions, watermarks(kafka, topic, partitions),
                     watermarks(kafka, labels_topic, partitions) if labels_topic is not None else {})
    tally = ReplayTally()
    deadletters, counted = _deadletters(settings)
    partials = InMemoryPartials() if split else None
    plans: list[PartitionPlan] = []
    runners: dict[int, PartitionRunner] = {}
    for partition in partitions:
        key = PartitionKey(settings.replay_group, topic, partition)
        live = settings.run == LIVE_RUN
        plan = _live_start(settings, store, bounds, partition) if live else _own_start(settings, store, bounds, key)
        replay_store = ReplayStore(store, plan.start, tally, hold_unsettled=live)
        runner = _runner(settings, codecs, contract, profiles, config, key, replay_store, deadletters,
                         partials=partials, partitions=len(partitions), label_topic=labels_topic)
        if live:
            _check_inputs(runner, plan)
        plans.append(plan)
        runners[partition] = runner
    merge = None
    if split:
        assert partials is not None
        merge_key = PartitionKey(settings.replay_group, f"{topic}.merge", 0)
        own_merge = store.load_checkpoint(merge_key.consumer_group, merge_key.topic, 0)
        merger = MergeRunner(key=merge_key, models={settings.model: MergedModel(contract, profiles, config)},
                             store=ReplayStore(store, own_merge, tally), deadletters=deadletters)
        merge = ReplayMerge(merger, partials)
    ranges = [PartitionRange(p.partition, p.first, p.end, p.label_first, p.label_end) for p in plans]
    reader = KafkaRangeReader(kafka, topic, labels_topic, ranges, batch_events=settings.batch_events)
    if on_total is not None:
        on_total(reader.total)
    for plan in plans:
        log.info("%s[%d]: offsets %d to %d, from %s", topic, plan.partition, plan.first, plan.end, plan.origin)
    replay(runners, reader, tally, merge=merge, checkpoint_seconds=settings.checkpoint_seconds, progress=progress)
    return ReplayOutcome(settings, topic, plans, tally, counted)


@dataclass
class _Bounds:
    """A replay's bounds as offsets of one topic's partitions (and of its label topic's)."""

    settings: ReplaySettings
    kafka: Mapping[str, Any]  # librdkafka's settings of the connection
    topic: str
    labels_topic: str | None
    partitions: list[int]
    marks: Mapping[int, tuple[int, int]]  # partition -> (first offset kept, end offset) now
    label_marks: Mapping[int, tuple[int, int]]

    def offset(self, bound: Bound, partition: int) -> int:
        """A prediction offset of ``partition``: an offset as given (within what the topic holds), a time looked up."""
        if isinstance(bound, datetime):
            from driftline.stream.kafka.ranges import offsets_for_time

            return offsets_for_time(self.kafka, self.topic, [partition], _ms(bound))[partition]
        low, high = self.marks[partition]
        return max(low, min(bound, high))

    def end(self, partition: int) -> int:
        """``--to`` as an offset of ``partition`` (default: the topic's end now)."""
        return self.marks[partition][1] if self.settings.end is None else self.offset(self.settings.end, partition)

    def label_first(self, partition: int) -> int | None:
        """Where labels start for a run that starts empty: at ``--from``'s time, else the label topic's first offset."""
        if self.labels_topic is None:
            return None
        if isinstance(self.settings.start, datetime):
            from driftline.stream.kafka.ranges import offsets_for_time

            return offsets_for_time(self.kafka, self.labels_topic, [partition], _ms(self.settings.start))[partition]
        return self.label_marks[partition][0]

    def label_end(self, partition: int) -> int | None:
        """Where labels end: ``--to``'s time plus the label horizon, else the label topic's end now."""
        if self.labels_topic is None:
            return None
        if isinstance(self.settings.end, datetime):
            from driftline.stream.kafka.ranges import offsets_for_time

            horizon = self.settings.engine.label_horizon_ms or 0
            return offsets_for_time(self.kafka, self.labels_topic, [partition], _ms(self.settings.end) + horizon)[partition]
        return self.label_marks[partition][1]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _partitions(kafka: KafkaConnection, topic: str) -> list[int]:
    from driftline.stream.kafka.errors import TopicSetupError
    from driftline.stream.kafka.topics import topic_partitions

    try:
        return topic_partitions(kafka, topic)
    except TopicSetupError as exc:
        raise ReplayError(f"cannot replay {topic}: {exc}") from exc


def _own_start(settings: ReplaySettings, store: Any, bounds: _Bounds, key: PartitionKey) -> PartitionPlan:
    """A run of its own: continue its checkpoint, or start empty at ``--from`` (default: the topic's first message)."""
    own = store.load_checkpoint(key.consumer_group, key.topic, key.partition)
    partition = key.partition
    if own is not None:
        first = _continue_or_start(settings, own, str(key), None if settings.start is None else bounds.offset(settings.start, partition))
        label_first = PartitionRunner.stored_label_offset(own)
        return PartitionPlan(partition, own, f"run {settings.run!r}'s own checkpoint", first, bounds.end(partition),
                             bounds.label_first(partition) if label_first is None else label_first, bounds.label_end(partition))
    first = bounds.marks[partition][0] if settings.start is None else bounds.offset(settings.start, partition)
    return PartitionPlan(partition, None, "an empty engine", first, bounds.end(partition), bounds.label_first(partition),
                         bounds.label_end(partition))


def _live_start(settings: ReplaySettings, store: Any, bounds: _Bounds, partition: int) -> PartitionPlan:
    """Into the live run: its latest kept state at or before ``--from`` (a snapshot, or its empty beginning).

    Without ``--from`` the earliest such state the topic still has messages after; without ``--to``,
    up to where the live run's checkpoint is (labels too).
    """
    topic = bounds.topic
    live = store.load_checkpoint(settings.consumer_group, topic, partition)
    where = f"{topic}[{partition}]"
    if live is None:
        raise ReplayError(f"the live run (consumer group {settings.consumer_group!r}) has no checkpoint of {where}: there is "
                          "nothing of it to replay into (check --group)")
    began = RunStart.from_state(live.engine_state)
    wanted = None if settings.start is None else bounds.offset(settings.start, partition)
    # (offset, snapshot or None for the empty beginning, what it is) of every state the live run is known to have had.
    candidates: list[tuple[int, bool, str]] = []
    if began.offset is not None:
        candidates.append((began.offset, False, "the live run's beginning (an empty engine)"))
    candidates.extend((s.next_offset, True, f"the live run's snapshot of {s.created_at:%Y-%m-%d %H:%M:%S} UTC")
                      for s in store.snapshots(settings.consumer_group, topic, partition))
    low = bounds.marks[partition][0]
    usable = [c for c in candidates if c[0] >= low and (wanted is None or c[0] <= wanted)]
    if not usable:
        known = ", ".join(f"{offset} ({what})" for offset, _, what in sorted(candidates)) or "none"
        at = f"at or before offset {wanted}" if wanted is not None else "after its first offset"
        raise ReplayError(
            f"the live run has no state of {where} {at} that the topic still has the messages after (its first offset is {low}; "
            f"states the live run kept: {known}): replay from one of those, or under a run label of its own (--run NAME)"
        )
    offset, is_snapshot, origin = max(usable) if wanted is not None else min(usable)
    start: Checkpoint | None = None
    label_first = began.label_offset
    if is_snapshot:
        start = store.load_snapshot(settings.consumer_group, topic, partition, offset)
        if start is None:
            raise ReplayError(f"{where}: the live run's snapshot at offset {offset} was deleted meanwhile (its retention): run again")
        stored = PartitionRunner.stored_label_offset(start)
        label_first = began.label_offset if stored is None else stored
    if bounds.labels_topic is not None and label_first is None:
        label_first = bounds.label_marks[partition][0]
    end = live.next_offset if settings.end is None else bounds.end(partition)
    label_end = bounds.label_end(partition)
    if settings.end is None and bounds.labels_topic is not None:
        stored_end = PartitionRunner.stored_label_offset(live)
        label_end = stored_end if stored_end is not None else label_end
    inputs = RunInputs.from_state(start.engine_state if start is not None else live.engine_state)
    return PartitionPlan(partition, start, origin, offset, end, label_first if bounds.labels_topic else None,
                         label_end if bounds.labels_topic else None, inputs=inputs)


def _check_inputs(runner: PartitionRunner, plan: PartitionPlan) -> None:
    """Into the live run: the replay's contract, profiles and settings are the ones the live run's state recorded."""
    if plan.inputs is None:
        raise ReplayError(f"{runner.key}: the live run's state does not record its inputs (a checkpoint of an older driftline): "
                          "replay under a run label of your own (--run NAME)")
    differences = runner.inputs.differences(plan.inputs)
    if differences:
        raise ReplayError(
            f"{runner.key}: this replay would compute with other inputs than the live run did — {'; '.join(differences)} (the "
            "replay's, the live run's) — so it cannot write into the live run: give it the worker's settings, or replay under a "
            "run label of its own (--run NAME)"
        )
