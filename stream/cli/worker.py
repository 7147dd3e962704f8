"""``driftline worker``: argument parsing only; the work is in :mod:`driftline.stream.kafka.worker`."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from driftline.stream.kafka.topics import ALERTS_TOPIC, DEADLETTER_TOPIC, FEATURE_TOPIC_PREFIX

from .arguments import (
    DEFAULT_BOOTSTRAP,
    UsageError,
    add_data_dir,
    add_database_url,
    add_kafka_security,
    add_metrics,
    add_schema_registry,
    data_dir,
    database_url,
    duration_ms,
    kafka_connection,
    metrics_port,
    optional_duration_ms,
    port_number,
    positive_float,
    positive_int,
    schema_registry,
)
from .engine_options import add_engine_options, engine_config

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    """Add the ``worker`` sub-command to the ``driftline`` parser's sub-parsers."""
    worker = commands.add_parser(
        "worker",
        help="monitor the models' Kafka topics (Faust worker): Postgres, Prometheus, dead-letter topic",
        description="Consumes predictions.<model> for every --model and features.<feature set> for every --feature-set (or every "
        "contract, --all-models), checks each event against its contract (rejects go to the dead-letter topic with the reason in "
        "headers), runs the "
        "monitor engine, writes results and checkpoints to PostgreSQL and serves Prometheus metrics. "
        "Killed at any point and restarted, it neither loses nor double-counts an event.",
    )
    which = worker.add_mutually_exclusive_group()
    which.add_argument("--model", dest="models", action="append", help="model to monitor (repeatable)")
    which.add_argument("--all-models", action="store_true",
        help="monitor every model and feature set of the contract catalog (--schemas): workers of one --group then share "
        "all their topics")
    worker.add_argument("--feature-set", dest="feature_sets", action="append", default=[],
        help="feature set to monitor (a contract of kind feature_set; repeatable): its rows, read from features.<name>, are "
        "checked and their features monitored against the training data's profile like a model's inputs")
    worker.add_argument("--feature-topic-prefix", default=FEATURE_TOPIC_PREFIX,
        help=f"a feature set's rows are read from <prefix><name> (default {FEATURE_TOPIC_PREFIX})")
    worker.add_argument("--bootstrap", help=f"Kafka bootstrap servers (default: $DRIFTLINE_KAFKA_BOOTSTRAP or {DEFAULT_BOOTSTRAP})")
    add_kafka_security(worker)
    add_database_url(worker)
    worker.add_argument("--group", default="driftline", help="Kafka consumer group and checkpoint key (default driftline)")
    worker.add_argument("--deadletter-topic", default=DEADLETTER_TOPIC, help=f"topic of rejected messages (default {DEADLETTER_TOPIC})")
    worker.add_argument("--alerts-topic", default=ALERTS_TOPIC,
                        help=f"topic of the incidents' state changes, firing and resolved (Avro, schemas/alert.avsc; default "
                        f"{ALERTS_TOPIC}; '' for none)")
    worker.add_argument("--webhook-url", default=os.environ.get("DRIFTLINE_WEBHOOK_URL") or None, metavar="URL",
                        help="also POST each incident state change as JSON to this URL, with retries (default: "
                        "$DRIFTLINE_WEBHOOK_URL, which keeps a token in it off the command line; none if unset)")
    worker.add_argument("--webhook-dead-letter", type=Path, default=Path("driftline-webhook-dead-letters.jsonl"), metavar="FILE",
                        help="where deliveries that failed every attempt are appended, one JSON line each "
                        "(default driftline-webhook-dead-letters.jsonl)")
    add_metrics(worker)
    worker.add_argument("--metrics-address", default="127.0.0.1", help="address the metrics server binds (default 127.0.0.1)")
    worker.add_argument("--health-port", type=port_number, default=None,
        help="serve /healthz (liveness) and /readyz (readiness) on this port, Faust's web server (default: none)")
    worker.add_argument("--health-address", default="127.0.0.1", help="address the health server binds (default 127.0.0.1)")
    worker.add_argument("--database-outage-seconds", type=positive_float, default=300.0,
        help="how long checkpoints may fail (database or dead-letter topic down) before the worker gives up; "
        "meanwhile it pauses and retries (default 300)")
    worker.add_argument("--batch-events", type=positive_int, default=50_000,
        help="most events read (and given to the engine) at once (default 50000)")
    worker.add_argument("--batch-seconds", type=positive_float, default=0.25, help="longest wait to fill a batch (default 0.25)")
    worker.add_argument("--checkpoint-seconds", type=positive_float, default=1.0, help="time between checkpoints (default 1.0)")
    worker.add_argument("--snapshot-interval", type=optional_duration_ms, default=3_600_000, metavar="DURATION",
        help="keep a copy of each partition's checkpoint about this often (default 1h; 'none': never), for `driftline "
        "replay --run live` to start from")
    worker.add_argument("--snapshot-retention", type=duration_ms, default=7 * 86_400_000, metavar="DURATION",
        help="how long the checkpoint copies are kept (default 7d, Kafka's default retention)")
    add_engine_options(worker)
    worker.add_argument("--partials-topic", default="",
                        help="topic of the window partials of models split over partitions (default <group>.window-partials)")
    worker.add_argument("--partials-partitions", type=positive_int, default=4,
                        help="partitions of the partials topic when the worker creates it (default 4)")
    worker.add_argument("--idle-partition-seconds", type=positive_float, default=30.0,
                        help="a split model's partition without messages for this long stops holding the model's windows open (default 30)")
    worker.add_argument("--session-timeout", type=positive_float, default=10.0,
        help="seconds before a silent worker's partitions go to another (default 10)")
    worker.add_argument("--stop-at-end", action="store_true", help="exit once caught up with the topics' end offsets at start")
    worker.add_argument("--latency-record", type=Path, help="write every message's produce-to-commit latency (ms) to this .npy file at exit")
    add_schema_registry(worker, "in which the schema ids of Confluent-framed events are resolved (without one, such events "
                        "are dead-lettered as unknown_schema_id)")
    add_data_dir(worker)
    worker.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level of driftline's own messages (default INFO)")
    worker.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from driftline.stream.kafka.worker import run_worker

    settings = _settings(args)
    # driftline's own messages get their own handler: Faust's worker sets the root logger to WARNING.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    driftline_log = logging.getLogger("driftline")
    driftline_log.addHandler(handler)
    driftline_log.setLevel(args.log_level)
    driftline_log.propagate = False
    # A worker logs its Kafka clients' errors (unlike the short-lived commands, see commands.main).
    logging.getLogger("driftline.kafka.client").setLevel(logging.ERROR if args.log_level != "DEBUG" else logging.DEBUG)
    return run_worker(settings)


def _models(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The models and the feature sets to monitor."""
    if not args.all_models:
        if not args.models and not args.feature_sets:
            raise UsageError("name what to monitor: --model, --feature-set or --all-models")
        return tuple(args.models or ()), tuple(args.feature_sets)
    from driftline.schemas.contract_catalog import Catalog

    catalog = Catalog.load(args.schemas) if args.schemas is not None else Catalog.load()
    return catalog.models, tuple(dict.fromkeys((*catalog.feature_sets, *args.feature_sets)))


def _settings(args: argparse.Namespace) -> Any:
    from driftline.stream.kafka.settings import WorkerSettings

    engine = engine_config(args)
    models, feature_sets = _models(args)
    try:
        return WorkerSettings(
            kafka=kafka_connection(args),
            database_url=database_url(args),
            models=models,
            feature_sets=feature_sets,
            feature_topic_prefix=args.feature_topic_prefix,
            consumer_group=args.group,
            metrics_port=metrics_port(args),
            metrics_address=args.metrics_address,
            health_port=args.health_port or None,
            health_address=args.health_address,
            database_outage_seconds=args.database_outage_seconds,
            batch_max_events=args.batch_events,
            batch_within_seconds=args.batch_seconds,
            checkpoint_interval_seconds=args.checkpoint_seconds,
            snapshot_interval_seconds=None if args.snapshot_interval is None else args.snapshot_interval / 1000,
            snapshot_retention_seconds=args.snapshot_retention / 1000,
            max_message_bytes=args.max_message_bytes,
            topic_prefix=args.topic_prefix,
            label_topic_prefix=args.label_topic_prefix,
            deadletter_topic=args.deadletter_topic,
            alerts_topic=args.alerts_topic,
            webhook_url=args.webhook_url,
            webhook_dead_letter=args.webhook_dead_letter,
            partials_topic=args.partials_topic,
            partials_partitions=args.partials_partitions,
            idle_partition_seconds=args.idle_partition_seconds,
            stop_at_end=args.stop_at_end,
            session_timeout_seconds=args.session_timeout,
            latency_record=args.latency_record,
            schemas_dir=args.schemas,
            profiles_dir=args.profiles,
            data_dir=data_dir(args),
            engine=engine,
            schema_registry=schema_registry(args),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
