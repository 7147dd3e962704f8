"""``driftline worker``: checks, prepares and runs the Faust worker that monitors the model topics.

:class:`WorkerRuntime` holds what the worker opens once at start-up — contracts, reference profiles,
the database, the dead-letter producer, the metrics — and builds the :class:`PartitionRunner` of each
assigned partition with the worker's ports (Kafka dead letters, PostgreSQL checkpoints).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import sqlalchemy as sa

from driftline.schemas.codec import Codec
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.schemas.errors import RegistryError
from driftline.stream.monitor.engine import EngineConfig
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import BatchResult, describe_alert
from driftline.stream.runner import MergedModel, MergeRunner, PartitionKey, PartitionRunner

from .deadletter import DeadLetterProducer
from .errors import TopicSetupError, WorkerError
from .partials import PartialsProducer
from .registry import codec_factory
from .settings import WorkerSettings
from .topics import end_offsets, ensure_topics, topic_partitions
from .webhook import TeePort, WebhookNotifier, redacted

if TYPE_CHECKING:
    from driftline.sinks import DriftlineMetrics

__all__ = ["DatabaseSettings", "TopicLayout", "WorkerError", "WorkerRuntime", "check_database", "load_profiles", "prepare_topics",
           "run_worker"]

log = logging.getLogger("driftline.worker")


class DatabaseSettings(Protocol):
    """What reading the database needs of a command's settings (the worker's, replay's)."""

    @property
    def database_url(self) -> str: ...

    @property
    def redacted_database_url(self) -> str: ...

    @property
    def profiles_dir(self) -> Path | None: ...


def load_profiles(settings: DatabaseSettings, engine: sa.Engine, model: str) -> dict[str, ReferenceProfile]:
    """Every reference profile of ``model``, by version: from ``settings.profiles_dir`` or the database.

    Raises
    ------
    WorkerError
        There is none.
    """
    texts: list[str]
    if settings.profiles_dir is not None:
        from driftline.stream.profiles import ProfileDirectory

        texts = ProfileDirectory(settings.profiles_dir).load_all(model)
        where = str(settings.profiles_dir / model)
    else:
        from driftline.sinks import SqlProfileStore

        texts = SqlProfileStore(engine).load_all(model)
        where = f"the reference_profiles table of {settings.redacted_database_url}"
    if not texts:
        raise WorkerError(f"no reference profile for model {model!r} in {where}; run `driftline baseline` first")
    profiles = [ReferenceProfile.from_json(text) for text in texts]
    for profile in profiles:
        log.info("%s %s: reference profile of %d rows from %s", model, profile.model_version, profile.rows, profile.source or "an unnamed source")
    return {profile.model_version: profile for profile in profiles}


@dataclass(frozen=True)
class TopicLayout:
    """The model topics as the worker found them at start: partitions, and end offsets then."""

    partitions: dict[str, int]  # model topic -> its partition count
    end_offsets: dict[tuple[str, int], int]  # (model topic, partition) -> end offset at start
    label_end_offsets: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)  # (label topic, partition) -> end offset

    @property
    def split_topics(self) -> list[str]:
        """The model topics of more than one partition (their windows are merged by the merge stage)."""
        return sorted(topic for topic, count in self.partitions.items() if count > 1)


def prepare_topics(settings: WorkerSettings, *, timeout: float = 30.0) -> TopicLayout:
    """Create missing topics, read the model topics' partition counts and end offsets.

    Missing model topics and the dead-letter topic are created with one partition; the window-partials
    topic (needed once a model topic has several) with ``settings.partials_partitions``. With a label
    horizon, each model's label topic must have as many partitions as its prediction topic (a missing
    one is created so), since partition p of both is joined by one runner. ``timeout``
    bounds the creation of the topics (and the wait until the new ones are ready), and then the
    end-offset requests: a model topic's leader that refuses them for a moment (a topic another worker
    has just created, a leader election) is asked again until ``timeout`` has passed.

    Raises
    ------
    WorkerError
        The broker does not answer, a topic is not ready within ``timeout`` (the message names the
        topic and the last Kafka error), or a label topic is not co-partitioned with its model's topic.
    """
    from .partials import MAX_PARTIAL_BYTES

    model_topics = list(settings.topics.values())
    try:
        partitions = ensure_topics(settings.kafka, [*model_topics, settings.deadletter_topic,
                                                                *([settings.alerts_topic] if settings.alerts_topic else [])], timeout)
        label_topics = {settings.topics[model]: topic for model, topic in settings.label_topics.items()}
        if label_topics:
            partitions.update(ensure_topics(
                settings.kafka, list(label_topics.values()), timeout,
                partitions={labels: partitions[predictions] for predictions, labels in label_topics.items()},
            ))
            _check_copartitioned(label_topics, partitions)
        if any(partitions[topic] > 1 for topic in model_topics):
            ensure_topics(
                settings.kafka,
                [settings.partials_topic],
                timeout,
                partitions={settings.partials_topic: settings.partials_partitions},
                configs={settings.partials_topic: {"max.message.bytes": str(MAX_PARTIAL_BYTES)}},
            )
        offsets = end_offsets(
            settings.kafka,
            [(topic, index) for topic in model_topics for index in range(partitions[topic])],
            timeout,
            group_id=f"{settings.consumer_group}.probe",
        )
        label_offsets = end_offsets(
            settings.kafka,
            [(topic, index) for topic in label_topics.values() for index in range(partitions[topic])],
            timeout,
            group_id=f"{settings.consumer_group}.probe",
        )
    except TopicSetupError as exc:
        raise WorkerError(str(exc)) from exc
    layout = TopicLayout({topic: partitions[topic] for topic in model_topics}, offsets, label_offsets)
    for topic in layout.split_topics:
        log.info("%s has %d partitions: one runner each, merged by window over %s", topic, layout.partitions[topic], settings.partials_topic)
    return layout


def _check_kinds(settings: WorkerSettings, contracts: dict[str, Contract]) -> None:
    """``--model`` names model contracts and ``--feature-set`` feature-set contracts (their topics differ)."""
    for name, contract in contracts.items():
        wanted = "feature_set" if name in settings.feature_sets else "model"
        if contract.kind != wanted:
            option = "--feature-set" if contract.kind == "feature_set" else "--model"
            raise WorkerError(f"{name} is a {contract.kind.replace('_', ' ')} ({contract.source}): monitor it with {option} {name}")


def _check_labels(settings: WorkerSettings, contract: Contract, profiles: dict[str, ReferenceProfile]) -> None:
    """A model whose labels are read can join them (its contract has a score), and says what its reference allows."""
    from driftline.stream.monitor.engine import MonitorEngine

    try:
        MonitorEngine(contract, profiles, settings.engine)
    except ValueError as exc:
        raise WorkerError(f"{contract.model}: cannot join labels (--label-horizon): {exc}") from exc
    unlabelled = sorted(version for version, profile in profiles.items() if profile.labels is None)
    if unlabelled:
        log.warning(
            "%s: the reference profile of %s has no labels (driftline baseline --label-column): realised performance is "
            "measured, but there is no concept-drift test or estimated performance for it", contract.model, ", ".join(unlabelled),
        )


def _check_copartitioned(label_topics: dict[str, str], partitions: dict[str, int]) -> None:
    """Each label topic has its prediction topic's partition count (same key, same partitioner: same partition)."""
    for predictions, labels in label_topics.items():
        if partitions[labels] != partitions[predictions]:
            raise WorkerError(
                f"{labels} has {partitions[labels]} partition(s) and {predictions} has {partitions[predictions]}: a model's "
                "labels must be co-partitioned with its predictions (keyed by the prediction's event_id, the same "
                "partition count), so that partition p of both meets in one runner"
            )


def check_database(settings: DatabaseSettings) -> sa.Engine:
    """An engine on the settings' database, which must be at the newest migration.

    Raises
    ------
    WorkerError
        The database is at another revision (``driftline db upgrade`` first).
    """
    from driftline.sinks.database import create_database_engine, current_revision, head_revision

    engine = create_database_engine(settings.database_url)
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise WorkerError(
            f"the database {settings.redacted_database_url} is at revision {current or 'none'}, not {head}; "
            "run `driftline db upgrade` first"
        )
    return engine


@dataclass
class WorkerRuntime:
    """What a worker opens once at start-up, and the factory of its runners."""

    settings: WorkerSettings
    catalog: Catalog
    contracts: dict[str, Contract]
    profiles: dict[str, dict[str, ReferenceProfile]]
    database: sa.Engine
    deadletters: DeadLetterProducer
    layout: TopicLayout = dataclasses.field(default_factory=lambda: TopicLayout({}, {}))
    partials: PartialsProducer | None = None
    alerts: PartialsProducer | WebhookNotifier | TeePort | None = None  # the alerts topic and the webhook (None: neither)
    metrics: DriftlineMetrics | None = None
    codecs: Callable[[], Codec] | None = None  # a codec per runner (None: from the settings, see codec_factory)

    def __post_init__(self) -> None:
        if self.codecs is None:
            self.codecs = codec_factory(self.catalog, self.settings.schema_registry, max_message_bytes=self.settings.max_message_bytes,
                                        check=False)

    @classmethod
    def open(cls, settings: WorkerSettings, *, metrics: DriftlineMetrics | None = None) -> WorkerRuntime:
        """Load the contracts and profiles, check the database's revision and connect the dead-letter producer.

        The topics come next (:meth:`use_topics`): a worker that cannot start says why before it
        touches Kafka.

        Raises
        ------
        WorkerError
            A profile is missing, or the database is not migrated.
        DriftlineError
            A contract or the database cannot be read.
        """
        catalog = Catalog.load(settings.schemas_dir) if settings.schemas_dir is not None else Catalog.load()
        contracts = {model: catalog.contract(model) for model in settings.monitored}
        _check_kinds(settings, contracts)
        database = check_database(settings)
        profiles = {model: load_profiles(settings, database, model) for model in settings.monitored}
        for model in settings.label_topics:
            _check_labels(settings, contracts[model], profiles[model])
        codecs = _codecs(settings, catalog)
        return cls(
            settings=settings,
            catalog=catalog,
            contracts=contracts,
            profiles=profiles,
            database=database,
            deadletters=DeadLetterProducer(settings.kafka, topic=settings.deadletter_topic),
            alerts=_alert_ports(settings),
            metrics=metrics,
            codecs=codecs,
        )

    def use_topics(self, layout: TopicLayout) -> None:
        """The model topics as :func:`prepare_topics` found them (a split model's partitions need the partials producer)."""
        self.layout = layout
        if layout.split_topics and self.partials is None:
            self.partials = PartialsProducer(self.settings.kafka, topic=self.settings.partials_topic)

    @property
    def split_models(self) -> list[str]:
        """The models whose topic has several partitions."""
        return [model for model, topic in self.settings.topics.items() if self.layout.partitions[topic] > 1]

    def engine_config(self, name: str) -> EngineConfig:
        """The engine's settings for a model or feature set (a feature set has no predictions: no labels, no challenger)."""
        if name in self.settings.feature_sets:
            return dataclasses.replace(self.settings.engine, label_horizon_ms=None, challenger=None)
        return self.settings.engine

    def make_runner(self, model: str, topic: str, partition: int) -> PartitionRunner:
        """The runner of one partition of ``model``'s topic, restored from its checkpoint if there is one.

        Each runner gets a codec of its own: a codec reports a new writer schema once in its life,
        and a runner rebuilt from its checkpoint (a rebalance, a replay after an engine failure)
        must see it again — its engine, restored, knows whether it was reported.
        """
        from driftline.sinks import SqlCheckpointStore

        partitions = self.layout.partitions.get(topic, 1)
        if partition >= partitions:
            raise WorkerError(
                f"{topic} now has more than the {partitions} partition(s) it had when this worker started; restart the "
                "workers (a model's partition count decides how its windows are made)"
            )
        config = self.engine_config(model)
        runner = PartitionRunner(
            key=PartitionKey(self.settings.consumer_group, topic, partition),
            contract=self.contracts[model],
            profiles=self.profiles[model],
            codec=self._codec(),
            store=SqlCheckpointStore(self.database, snapshot_retention=timedelta(seconds=self.settings.snapshot_retention_seconds)),
            deadletters=self.deadletters,
            config=config,
            metrics=self.metrics,
            on_result=_log_alerts,
            partials=self.partials if partitions > 1 else None,
            partitions=partitions,
            label_topic=self.settings.label_topics.get(model),
            alerts=self.alerts,
            snapshot_interval_seconds=self.settings.snapshot_interval_seconds,
        )
        runner.record_latencies = self.settings.latency_record is not None
        return runner

    def _codec(self) -> Codec:
        assert self.codecs is not None  # set by __post_init__
        return self.codecs()

    def make_merge_runner(self, partition: int, deadletters: DeadLetterProducer) -> MergeRunner:
        """The runner of one partition of the partials topic, restored from its checkpoint if there is one."""
        from driftline.sinks import SqlCheckpointStore

        return MergeRunner(
            key=PartitionKey(self.settings.consumer_group, self.settings.partials_topic, partition),
            models={model: MergedModel(self.contracts[model], self.profiles[model], self.engine_config(model))
                    for model in self.split_models},
            store=SqlCheckpointStore(self.database),
            deadletters=deadletters,
            metrics=self.metrics,
            on_result=_log_alerts,
            alerts=self.alerts,
        )


def _codecs(settings: WorkerSettings, catalog: Catalog) -> Callable[[], Codec]:
    """The runners' codecs (with a Schema Registry: one client for them all, which must answer now)."""
    try:
        codecs = codec_factory(catalog, settings.schema_registry, max_message_bytes=settings.max_message_bytes)
    except RegistryError as exc:
        raise WorkerError(str(exc)) from exc
    if settings.schema_registry is not None:
        log.info("Confluent-framed events: schema ids are resolved in the Schema Registry at %s", settings.schema_registry.url)
    return codecs


def _alert_ports(settings: WorkerSettings) -> PartialsProducer | WebhookNotifier | TeePort | None:
    """Where the incidents' state changes go: the alerts topic, the webhook, both or neither."""
    ports: list[Any] = []
    if settings.alerts_topic:
        ports.append(PartialsProducer(settings.kafka, topic=settings.alerts_topic, what="alerts"))
    if settings.webhook_url:
        ports.append(WebhookNotifier(settings.webhook_url, settings.webhook_dead_letter))
        log.info("incidents also go to the webhook %s (undelivered ones to %s)", redacted(settings.webhook_url),
                 settings.webhook_dead_letter)
    return None if not ports else ports[0] if len(ports) == 1 else TeePort(*ports)


def _close_webhook(runtime: WorkerRuntime) -> None:
    ports = runtime.alerts.ports if isinstance(runtime.alerts, TeePort) else (runtime.alerts,)
    for port in ports:
        if isinstance(port, WebhookNotifier):
            port.close()


def _log_alerts(result: BatchResult) -> None:
    # Every alert also goes to the log as it is raised (its row reaches the database with the next checkpoint).
    for alert in result.alerts:
        log.warning("%s", describe_alert(alert))


def run_worker(settings: WorkerSettings) -> int:
    """Run until stopped (SIGTERM/SIGINT) or, with ``stop_at_end``, until caught up; return the exit code."""
    from faust import Worker
    from prometheus_client import CollectorRegistry

    from driftline.sinks import DriftlineMetrics, SqlCheckpointStore, serve

    from .app import create_app, use_fast_event_loop
    from .batch_reader import BatchReader
    from .service import ReaderService, add_health_pages

    use_fast_event_loop()
    catalog = Catalog.load(settings.schemas_dir) if settings.schemas_dir is not None else Catalog.load()
    registry = CollectorRegistry()
    metrics = DriftlineMetrics(
        registry,
        models={model: [f.name for f in catalog.contract(model).fields] for model in settings.monitored},
    )
    runtime = WorkerRuntime.open(settings, metrics=metrics)
    layout = prepare_topics(settings)
    runtime.use_topics(layout)
    if settings.metrics_port is not None:
        port = serve(registry, settings.metrics_port, settings.metrics_address)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_address, port)

    app = create_app(settings)
    offsets = SqlCheckpointStore(runtime.database)

    def checkpointed(topic: str, partition: int) -> int | None:
        return offsets.checkpointed_offset(settings.consumer_group, topic, partition)

    def checkpointed_labels(topic: str, partition: int) -> int | None:
        return PartitionRunner.stored_label_offset(offsets.load_checkpoint(settings.consumer_group, topic, partition))

    merged = None
    if runtime.split_models:
        from .merge_stage import MergeStage

        merge_deadletters = DeadLetterProducer(settings.kafka, topic=settings.deadletter_topic)
        stage = MergeStage(
            app, settings.partials_topic, lambda partition: runtime.make_merge_runner(partition, merge_deadletters),
            settings.checkpoint_interval_seconds,
        )
        app.service(stage)  # type: ignore[arg-type]
        merged = _merged_check(settings, checkpointed) if settings.stop_at_end else None
    reader = BatchReader(
        settings,
        runtime.make_runner,
        checkpointed_offset=checkpointed,
        end_offsets=layout.end_offsets if settings.stop_at_end else None,
        # The same path as `kill -TERM`: Faust's worker stops its services gracefully.
        on_caught_up=lambda: os.kill(os.getpid(), signal.SIGTERM),
        set_lag=metrics.set_consumer_lag,
        merged=merged,
        probe=offsets.ping,
        label_end_offsets=layout.label_end_offsets if settings.stop_at_end else None,
        checkpointed_label_offset=checkpointed_labels,
        set_end_offset=metrics.set_topic_end_offset,
        forget_end_offset=metrics.forget_topic_partition,
    )
    service = ReaderService(app, reader)
    # Started and stopped with the app, as one of its own dependencies: a service added with
    # app.service() starts only once Faust's consumer has its first assignment, which with the merge
    # agent's topic in the group can take a rebalance (measured: 11 s for a second worker joining).
    app.add_dependency(service)
    if settings.health_port is not None:
        add_health_pages(app, service)
        log.info("health on http://%s:%d/healthz and /readyz", settings.health_address, settings.health_port)
    worker = Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    if not sys.stdout.isatty():
        worker.spinner = None  # Faust's spinner writes cursor escape codes even into log files
    exit_code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        exit_code = stop.code if isinstance(stop.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - Faust re-raises the reason it crashed for
        print(f"driftline: worker stopped: {exc}", file=sys.stderr)
        exit_code = 1
    _close_webhook(runtime)  # what is queued is delivered (or dead-lettered) before the worker exits
    if settings.latency_record is not None:
        _write_latencies(settings.latency_record, [*reader.latencies_ms, *(a for r in reader.runners for a in r.latencies_ms)])
    return exit_code


def _merged_check(settings: WorkerSettings, checkpointed: Callable[[str, int], int | None]) -> Callable[[], bool]:
    """With ``stop_at_end``: whether the merge stage has checkpointed the partials topic up to its end.

    Asked once the model topics are done (every partition runner has checkpointed, so published,
    its last partials); the partials topic's end offsets are read at the first call.
    """
    ends: dict[tuple[str, int], int] = {}

    def merged() -> bool:
        if not ends:
            partitions = topic_partitions(settings.kafka, settings.partials_topic, timeout=10.0)
            ends.update(end_offsets(settings.kafka, [(settings.partials_topic, p) for p in partitions], 30.0))
        return all((checkpointed(topic, partition) or 0) >= end for (topic, partition), end in ends.items())

    return merged


def _write_latencies(path: Path, arrays: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.concatenate(arrays) if arrays else np.empty(0))
