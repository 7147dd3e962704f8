"""``driftline worker``: checks, prepares and runs the Faust worker that monitors the model topics."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from driftline.schemas.codec import Codec
from driftline.schemas.contract import Catalog, Contract
from driftline.schemas.errors import DriftlineError

from .deadletter import DeadLetterProducer
from driftline.stream.runner.processor import PartitionProcessor
from driftline.stream.monitor.profile import ReferenceProfile
from .settings import WorkerSettings
from .topics import TopicSetupError, ensure_topics

__all__ = ["WorkerError", "load_profiles", "prepare_topics", "run_worker"]

log = logging.getLogger("driftline.worker")


class WorkerError(DriftlineError):
    """The worker cannot start: a missing profile, an unmigrated database, a misconfigured topic."""


def load_profiles(settings: WorkerSettings, engine: sa.Engine, model: str) -> dict[str, ReferenceProfile]:
    """Every reference profile of ``model``, by version: from ``settings.profiles_dir`` or the database."""
    texts: list[str]
    if settings.profiles_dir is not None:
        directory = settings.profiles_dir / model
        texts = [path.read_text(encoding="utf-8") for path in sorted(directory.glob("*.json"))]
        where = str(directory)
    else:
        from driftline.sinks.sql import SqlSink

        texts = SqlSink(engine).load_reference_profiles(model)
        where = f"the reference_profiles table of {settings.redacted_database_url}"
    if not texts:
        raise WorkerError(f"no reference profile for model {model!r} in {where}; run `driftline baseline` first")
    profiles = [ReferenceProfile.from_json(text) for text in texts]
    return {profile.model_version: profile for profile in profiles}


def prepare_topics(settings: WorkerSettings, *, timeout: float = 30.0) -> dict[str, int]:
    """Create missing topics (one partition each), check the model topics, return their end offsets.

    Raises
    ------
    WorkerError
        The broker does not answer, or a model topic has more than one partition (see ``stream/topics.py``).
    """
    from confluent_kafka import Consumer, TopicPartition

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
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"{settings.consumer_group}.probe"})
    try:
        return {
            topic: consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)[1]
            for topic in settings.topics.values()
        }
    finally:
        consumer.close()


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


def run_worker(settings: WorkerSettings) -> int:
    """Run until stopped (SIGTERM/SIGINT) or, with ``stop_at_end``, until caught up; return the exit code."""
    from faust import Worker
    from prometheus_client import CollectorRegistry

    from driftline.schemas.results import RejectReason
    from driftline.sinks.metrics import DriftlineMetrics, serve
    from driftline.sinks.sql import SqlSink

    from .agents import MonitorAgents
    from .app import create_app, use_fast_event_loop

    use_fast_event_loop()
    catalog = Catalog.load(settings.schemas_dir) if settings.schemas_dir is not None else Catalog.load()
    contracts: dict[str, Contract] = {model: catalog.contract(model) for model in settings.models}
    database = _check_database(settings)
    profiles = {model: load_profiles(settings, database, model) for model in settings.models}
    end_offsets = prepare_topics(settings)

    registry = CollectorRegistry()
    metrics = DriftlineMetrics(
        registry,
        models={model: [f.name for f in contract.fields] for model, contract in contracts.items()},
        rejection_reasons=[reason.value for reason in RejectReason],
    )
    if settings.metrics_port is not None:
        port = serve(registry, settings.metrics_port, settings.metrics_address)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_address, port)
    deadletter = DeadLetterProducer(settings.bootstrap_servers, topic=settings.deadletter_topic)
    codec = Codec(catalog, max_message_bytes=settings.max_message_bytes)

    def make_processor(model: str, topic: str, partition: int) -> PartitionProcessor:
        processor = PartitionProcessor(
            topic=topic,
            partition=partition,
            consumer_group=settings.consumer_group,
            contract=contracts[model],
            profiles=profiles[model],
            codec=codec,
            sink=SqlSink(database),
            deadletter=deadletter,
            config=settings.engine,
            metrics=metrics,
        )
        processor.record_latencies = settings.latency_record is not None
        return processor

    app = create_app(settings)
    offsets = SqlSink(database)
    agents = MonitorAgents(
        app,
        settings,
        make_processor,
        checkpointed_offset=lambda topic, partition: offsets.checkpointed_offset(settings.consumer_group, topic, partition),
        end_offsets=end_offsets if settings.stop_at_end else None,
    )
    worker = Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    exit_code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        exit_code = stop.code if isinstance(stop.code, int) else 1
    except Exception as exc:  # Faust re-raises the reason it crashed for
        print(f"driftline: worker stopped: {exc}", file=sys.stderr)
        exit_code = 1
    if settings.latency_record is not None:
        _write_latencies(settings.latency_record, agents.processors.values())
    return exit_code


def _write_latencies(path: Path, processors: Iterable[PartitionProcessor]) -> None:
    arrays = [array for processor in processors for array in processor.latencies_ms]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.concatenate(arrays) if arrays else np.empty(0))
