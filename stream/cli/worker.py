"""``driftline worker`` and ``driftline db upgrade``: argument parsing only; the work is in ``stream/worker.py``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .arguments import DEFAULT_BOOTSTRAP, kafka_bootstrap, positive_float, positive_int
from driftline.stream.monitor.engine import EngineConfig
from driftline.stream.kafka.settings import WorkerSettings
from driftline.stream.kafka.topics import DEADLETTER_TOPIC, PREDICTION_TOPIC_PREFIX

__all__ = ["register"]



def _add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL of the PostgreSQL database (default: $DRIFTLINE_DATABASE_URL), "
        "e.g. postgresql+psycopg://driftline@127.0.0.1:5432/driftline",
    )


def _database_url(args: argparse.Namespace) -> str:
    url = args.database_url or os.environ.get("DRIFTLINE_DATABASE_URL", "")
    if not url:
        raise SystemExit("driftline: error: no database: pass --database-url or set DRIFTLINE_DATABASE_URL")
    return str(url)


def register(commands: Any) -> None:
    """Add the ``worker`` and ``db`` sub-commands to the ``driftline`` parser's sub-parsers."""
    worker = commands.add_parser(
        "worker",
        help="monitor the models' Kafka topics (Faust worker): Postgres, Prometheus, dead-letter topic",
        description="Consumes predictions.<model> for every --model, checks each event against the "
        "model's contract (rejects go to the dead-letter topic with the reason in headers), runs the "
        "monitor engine, writes results and checkpoints to PostgreSQL and serves Prometheus metrics. "
        "Killed at any point and restarted, it neither loses nor double-counts an event.",
    )
    worker.add_argument("--model", dest="models", action="append", required=True, help="model to monitor (repeatable)")
    worker.add_argument("--bootstrap", help=f"Kafka bootstrap servers (default: $DRIFTLINE_KAFKA_BOOTSTRAP or {DEFAULT_BOOTSTRAP})")
    _add_database_url(worker)
    worker.add_argument("--group", default="driftline", help="Kafka consumer group and checkpoint key (default driftline)")
    worker.add_argument("--topic-prefix", default=PREDICTION_TOPIC_PREFIX, help=f"a model's topic is <prefix><model> (default {PREDICTION_TOPIC_PREFIX})")
    worker.add_argument("--deadletter-topic", default=DEADLETTER_TOPIC, help=f"topic of rejected messages (default {DEADLETTER_TOPIC})")
    worker.add_argument("--metrics-port", type=int, default=9464, help="Prometheus port (default 9464; -1 = none)")
    worker.add_argument("--metrics-address", default="127.0.0.1", help="address the metrics server binds (default 127.0.0.1)")
    worker.add_argument("--batch-events", type=positive_int, default=10_000, help="largest batch given to the engine (default 10000)")
    worker.add_argument("--batch-seconds", type=positive_float, default=0.25, help="longest wait to fill a batch (default 0.25)")
    worker.add_argument("--checkpoint-seconds", type=positive_float, default=1.0, help="time between checkpoints (default 1.0)")
    worker.add_argument("--max-message-bytes", type=positive_int, default=1_000_000, help="larger messages are rejected as oversized")
    worker.add_argument("--window-seconds", type=positive_int, default=None, help="event-time window length (default: the engine's)")
    worker.add_argument("--session-timeout", type=positive_float, default=10.0, help="seconds before a silent worker's partitions go to another (default 10)")
    worker.add_argument("--stop-at-end", action="store_true", help="exit once caught up with the topics' end offsets at start")
    worker.add_argument("--latency-record", type=Path, help="write every message's produce-to-commit latency (ms) to this .npy file at exit")
    worker.add_argument("--schemas", type=Path, help="contract directory (default: the bundled contracts)")
    worker.add_argument("--profiles", type=Path, help="reference profiles directory (default: the database's reference_profiles)")
    worker.add_argument("--log-level", default="INFO", help="log level of driftline's own messages (default INFO)")
    worker.set_defaults(handler=_run_worker)

    database = commands.add_parser("db", help="manage driftline's PostgreSQL schema (Alembic)")
    database_commands = database.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    upgrade = database_commands.add_parser("upgrade", help="create or migrate the tables to the latest revision")
    _add_database_url(upgrade)
    upgrade.add_argument("--revision", default="head", help="target revision (default head)")
    upgrade.set_defaults(handler=_run_db_upgrade)


def _run_worker(args: argparse.Namespace) -> int:
    from driftline.stream.kafka.worker import run_worker

    # driftline's own messages get their own handler: Faust's worker sets the root logger to WARNING.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    driftline_log = logging.getLogger("driftline")
    driftline_log.addHandler(handler)
    driftline_log.setLevel(args.log_level.upper())
    driftline_log.propagate = False
    engine = EngineConfig() if args.window_seconds is None else EngineConfig(window_length_ms=args.window_seconds * 1000)
    try:
        settings = _settings(args, engine)
    except ValueError as exc:
        print(f"driftline worker: error: {exc}", file=sys.stderr)
        return 2
    return run_worker(settings)


def _settings(args: argparse.Namespace, engine: EngineConfig) -> WorkerSettings:
    return WorkerSettings(
        bootstrap_servers=kafka_bootstrap(args.bootstrap),
        database_url=_database_url(args),
        models=tuple(args.models),
        consumer_group=args.group,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        metrics_address=args.metrics_address,
        batch_max_events=args.batch_events,
        batch_within_seconds=args.batch_seconds,
        checkpoint_interval_seconds=args.checkpoint_seconds,
        max_message_bytes=args.max_message_bytes,
        topic_prefix=args.topic_prefix,
        deadletter_topic=args.deadletter_topic,
        stop_at_end=args.stop_at_end,
        session_timeout_seconds=args.session_timeout,
        latency_record=args.latency_record,
        schemas_dir=args.schemas,
        profiles_dir=args.profiles,
        engine=engine,
    )


def _run_db_upgrade(args: argparse.Namespace) -> int:
    from driftline.sinks.database import current_revision, display_url, upgrade_database

    url = _database_url(args)
    upgrade_database(url, args.revision)
    print(f"database {display_url(url)} is at revision {current_revision(url)}")
    return 0
