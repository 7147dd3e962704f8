"""``driftline worker``: argument parsing only; the work is in :mod:`driftline.stream.kafka.worker`."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from driftline.stream.kafka.topics import (
    ALERTS_TOPIC,
    DEADLETTER_TOPIC,
    FEATURE_TOPIC_PREFIX,
    LABEL_TOPIC_PREFIX,
    PREDICTION_TOPIC_PREFIX,
)

from .arguments import (
    DEFAULT_BOOTSTRAP,
    UsageError,
    add_budget,
    add_data_dir,
    add_database_url,
    add_kafka_security,
    add_metrics,
    at_least,
    data_dir,
    database_url,
    duration_ms,
    kafka_connection,
    metrics_port,
    port_number,
    positive_float,
    positive_int,
)

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
    worker.add_argument("--topic-prefix", default=PREDICTION_TOPIC_PREFIX,
        help=f"a model's topic is <prefix><model> (default {PREDICTION_TOPIC_PREFIX})")
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
    worker.add_argument("--max-message-bytes", type=positive_int, default=1_000_000, help="larger messages are rejected as oversized")
    worker.add_argument("--window-seconds", type=positive_int, default=None, help="event-time window length (default: the engine's, 60)")
    add_budget(worker)
    worker.add_argument(
        "--events-per-second", type=positive_float, default=None,
        help="each model's event rate the budget is spread over (default: its reference's, from the training "
        "data's timestamps); a floor: a busier live stream tightens the thresholds",
    )
    worker.add_argument("--allowed-lateness-seconds", type=at_least(0), default=None,
                        help="how far behind the latest event time an event still counts in its window (default: the engine's, 120)")
    worker.add_argument("--alert-quiet", type=duration_ms, default=None, metavar="DURATION",
                        help="an incident (one per model, alert kind and field) resolves once this much event time passed "
                        "without a signal, and signals closer than this extend it (default 15m)")
    labels = worker.add_argument_group("labels", "join late ground truth to the predictions: performance per window, concept "
                                        "drift, estimated performance (README, Labels and performance)")
    labels.add_argument("--label-horizon", type=duration_ms, default=None, metavar="DURATION",
        help="read <label-topic-prefix><model> and join each label to its prediction if it comes at most this long after "
        "it in event time (90s, 15m, 2h, 7d; a bare number is seconds); default: labels are not read")
    labels.add_argument("--label-grace", type=duration_ms, default=None, metavar="DURATION",
        help="how far out of event-time order predictions may arrive before a label that waits for its prediction is "
        "given up as unknown_prediction (default 1h)")
    labels.add_argument("--label-capacity", type=positive_int, default=None,
        help="most predictions and waiting labels each partition's join holds; size it as events/s x 2 x horizon "
        "(default 200000; beyond it the oldest are evicted and counted)")
    labels.add_argument("--challenger", nargs="?", const="default", default=None, metavar="MODULE:FACTORY",
        help="run an online River challenger beside a binary classifier and recommend it (a challenger_better alert, the "
        "challenger_windows table) when it is significantly better on the same labelled predictions; without a value the "
        "default (online logistic regression), else a factory returning a River classifier; needs --label-horizon")
    labels.add_argument("--challenger-sample", type=positive_float, default=None, metavar="SHARE",
        help="share of predictions the challenger scores and learns from, chosen by a hash of the event id (default 1)")
    labels.add_argument("--label-topic-prefix", default=LABEL_TOPIC_PREFIX,
        help=f"a model's labels are read from <prefix><model>, co-partitioned with its predictions (default {LABEL_TOPIC_PREFIX})")
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
    worker.add_argument("--schemas", type=Path, help="contract directory (default: the bundled contracts)")
    worker.add_argument("--profiles", type=Path, help="reference profiles directory (default: the database's reference_profiles)")
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
    from driftline.stream.monitor.engine import EngineConfig

    engine: dict[str, Any] = {}
    if args.window_seconds is not None:
        engine["window_length_ms"] = args.window_seconds * 1000
    if args.allowed_lateness_seconds is not None:
        engine["allowed_lateness_ms"] = args.allowed_lateness_seconds * 1000
    engine["false_alarms_per_month"] = args.false_alarms_per_month
    if args.events_per_second is not None:
        engine["events_per_second"] = args.events_per_second
    if args.alert_quiet is not None:
        engine["alert_cooldown_ms"] = args.alert_quiet
    for option, name in (("label_horizon", "label_horizon_ms"), ("label_grace", "label_grace_ms"), ("label_capacity", "label_capacity"),
                         ("challenger", "challenger"), ("challenger_sample", "challenger_sample")):
        if getattr(args, option) is not None:
            engine[name] = getattr(args, option)
    if args.label_horizon is None and any(v is not None for v in (args.label_grace, args.label_capacity, args.challenger,
                                                                   args.challenger_sample)):
        raise UsageError("--label-grace, --label-capacity and --challenger need --label-horizon (labels are read only with a horizon)")
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
            engine=EngineConfig(**engine),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
