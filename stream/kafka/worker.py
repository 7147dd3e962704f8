"""``driftline worker``: checks, prepares and runs the Faust worker that monitors the model topics.

:class:`WorkerRuntime` holds what the worker opens once at start-up — contracts, reference profiles,
the database, the dead-letter producer, the metrics — and builds the :class:`PartitionRunner` of each
assigned partition with the worker's ports (Kafka dead letters, PostgreSQL checkpoints).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa

from driftline.schemas.codec import Codec
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import BatchResult, describe_alert
from driftline.stream.runner import PartitionKey, PartitionRunner

from .deadletter import DeadLetterProducer
from .errors import TopicSetupError, WorkerError
from .settings import WorkerSettings
from .topics import end_offsets, ensure_topics

if TYPE_CHECKING:
    from driftline.sinks import DriftlineMetrics

__all__ = ["WorkerError", "WorkerRuntime", "load_profiles", "prepare_topics", "run_worker"]

log = logging.getLogger("driftline.worker")


def load_profiles(settings: WorkerSettings, engine: sa.Engine, model: str) -> dict[str, ReferenceProfile]:
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


def prepare_topics(settings: WorkerSettings, *, timeout: float = 30.0) -> dict[str, int]:
    """Create missing topics (one partition each), check the model topics, return their end offsets.

    ``timeout`` bounds the creation of the topics (and the wait until the new ones are ready), and then
    the end-offset requests: a model topic's leader that refuses them for a moment (a topic another
    worker has just created, a leader election) is asked again until ``timeout`` has passed.

    Raises
    ------
    WorkerError
        The broker does not answer, a model topic has more than one partition (see ``stream/kafka/topics.py``),
        or a topic is not ready within ``timeout`` (the message names the topic and the last Kafka error).
    """
    try:
        partitions = ensure_topics(settings.bootstrap_servers, [*settings.topics.values(), settings.deadletter_topic], timeout)
    except TopicSetupError as exc:
        raise WorkerError(str(exc)) from exc
    for topic in settings.topics.values():
        if partitions[topic] != 1:
            raise WorkerError(
                f"topic {topic} has {partitions[topic]} partitions; driftline needs one partition per model topic "
                "(its detectors need the model's events in one order)"
            )
    try:
        offsets = end_offsets(
            settings.bootstrap_servers, [(topic, 0) for topic in settings.topics.values()], timeout, group_id=f"{settings.consumer_group}.probe"
        )
    except TopicSetupError as exc:
        raise WorkerError(str(exc)) from exc
    return {topic: offsets[topic, 0] for topic in settings.topics.values()}


def _check_database(settings: WorkerSettings) -> sa.Engine:
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
    """What a worker opens once at start-up, and the factory of its partition runners."""

    settings: WorkerSettings
    contracts: dict[str, Contract]
    profiles: dict[str, dict[str, ReferenceProfile]]
    database: sa.Engine
    codec: Codec
    deadletters: DeadLetterProducer
    metrics: DriftlineMetrics | None = None

    @classmethod
    def open(cls, settings: WorkerSettings, *, metrics: DriftlineMetrics | None = None) -> WorkerRuntime:
        """Load the contracts and profiles, check the database's revision and connect the dead-letter producer.

        Raises
        ------
        WorkerError
            A profile is missing, or the database is not migrated.
        DriftlineError
            A contract or the database cannot be read.
        """
        catalog = Catalog.load(settings.schemas_dir) if settings.schemas_dir is not None else Catalog.load()
        contracts = {model: catalog.contract(model) for model in settings.models}
        database = _check_database(settings)
        profiles = {model: load_profiles(settings, database, model) for model in settings.models}
        return cls(
            settings=settings,
            contracts=contracts,
            profiles=profiles,
            database=database,
            codec=Codec(catalog, max_message_bytes=settings.max_message_bytes),
            deadletters=DeadLetterProducer(settings.bootstrap_servers, topic=settings.deadletter_topic),
            metrics=metrics,
        )

    def make_runner(self, model: str, topic: str, partition: int) -> PartitionRunner:
        """The runner of one partition of ``model``'s topic, restored from its checkpoint if there is one."""
        from driftline.sinks import SqlCheckpointStore

        runner = PartitionRunner(
            key=PartitionKey(self.settings.consumer_group, topic, partition),
            contract=self.contracts[model],
            profiles=self.profiles[model],
            codec=self.codec,
            store=SqlCheckpointStore(self.database),
            deadletters=self.deadletters,
            config=self.settings.engine,
            metrics=self.metrics,
            on_result=_log_alerts,
        )
        runner.record_latencies = self.settings.latency_record is not None
        return runner


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
        models={model: [f.name for f in catalog.contract(model).fields] for model in settings.models},
    )
    runtime = WorkerRuntime.open(settings, metrics=metrics)
    end_offsets = prepare_topics(settings)
    if settings.metrics_port is not None:
        port = serve(registry, settings.metrics_port, settings.metrics_address)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_address, port)

    app = create_app(settings)
    offsets = SqlCheckpointStore(runtime.database)
    reader = BatchReader(
        settings,
        runtime.make_runner,
        checkpointed_offset=lambda topic, partition: offsets.checkpointed_offset(settings.consumer_group, topic, partition),
        end_offsets={(topic, 0): end for topic, end in end_offsets.items()} if settings.stop_at_end else None,
        # The same path as `kill -TERM`: Faust's worker stops its services gracefully.
        on_caught_up=lambda: os.kill(os.getpid(), signal.SIGTERM),
        set_lag=metrics.set_consumer_lag,
    )
    service = ReaderService(app, reader)
    # Started and stopped with the app; Faust takes an instance as well as a class (App._prepare_subservice).
    app.service(service)  # type: ignore[arg-type]
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
    if settings.latency_record is not None:
        _write_latencies(settings.latency_record, [*reader.latencies_ms, *(a for r in reader.runners for a in r.latencies_ms)])
    return exit_code


def _write_latencies(path: Path, arrays: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.concatenate(arrays) if arrays else np.empty(0))
