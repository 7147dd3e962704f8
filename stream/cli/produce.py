"""``driftline produce``: publish prediction events from a file or the synthetic generator.

The command's arguments and its two sources of batches — a file (:mod:`driftline.stream.produce.input_files`)
or the synthetic generator (:mod:`driftline.stream.demo.sources`) — over the publishing loop of
:mod:`driftline.stream.produce.publishing`.

Exit codes: 0 every event delivered, 2 bad arguments or input, 1 Kafka did not take every event.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

from driftline.schemas.wire import REGISTRY_MODES, WIRE_FORMATS

from .arguments import (
    DEFAULT_BOOTSTRAP,
    UsageError,
    add_kafka_security,
    add_schema_registry,
    check_client_properties,
    kafka_connection,
    positive_float,
    positive_int,
    schema_registry,
)

__all__ = ["register", "run"]


def _property(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


def register(commands: Any) -> None:
    """Add the ``produce`` sub-command to the ``driftline`` parser's sub-parsers."""
    produce = commands.add_parser(
        "produce",
        help="publish prediction events to a model's topic, from a file or the synthetic generator",
        description="Avro-encodes events of --model (single-object encoding by default: no Schema "
        "Registry needed) and publishes them to predictions.<model>, keyed by event id. A file is "
        "checked entirely before anything is sent; a row that does not fit the contract's types aborts "
        "the command naming its row and column, unless --skip-invalid. Exit codes: 0 delivered, "
        "2 bad arguments or input, 1 delivery failure.",
    )
    produce.add_argument("--model", required=True, help="model name, as in its contract")
    source = produce.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="Parquet, CSV or JSON-lines file of events (format from the extension)")
    source.add_argument("--synthetic", type=positive_int, metavar="N", help="publish N events of the synthetic generator")
    produce.add_argument("--format", choices=("parquet", "csv", "jsonl"), help="format of --input (default: from its extension)")
    produce.add_argument("--skip-invalid", action="store_true", help="skip (and count) rows that do not fit the contract instead of aborting")
    produce.add_argument("--model-version", help="model version of synthetic events (default v1), or of a file's rows when it has no such column")
    produce.add_argument("--seed", type=int, default=7, help="random seed of the synthetic stream (default 7)")
    produce.add_argument("--events-per-second", type=positive_float, default=10.0, help="event-time rate of the synthetic stream (default 10)")
    produce.add_argument("--drift", action="store_true",
        help="synthetic stream with the demo's drift episodes (the stream `driftline demo` monitors)")
    produce.add_argument("--topic", help="topic to publish to (default: predictions.<model>)")
    produce.add_argument("--partitions", type=positive_int, default=1,
                         help="partitions of the topic if it must be created (default 1); events are spread by their id")
    produce.add_argument("--bootstrap", help=f"Kafka bootstrap servers (default: $DRIFTLINE_KAFKA_BOOTSTRAP or {DEFAULT_BOOTSTRAP})")
    add_kafka_security(produce)
    produce.add_argument("--wire-format", choices=WIRE_FORMATS, default="single-object", help="single-object (default) or confluent")
    add_schema_registry(produce, "of --wire-format confluent")
    produce.add_argument("--registry-mode", choices=REGISTRY_MODES, default=None,
        help="--wire-format confluent: auto-register (default) registers the writer schema under <topic>-value, which the "
        "registry refuses if its compatibility rule does not allow it; use-latest registers nothing and writes with the "
        "subject's latest registered version")
    produce.add_argument("--writer-schema", type=Path, metavar="FILE",
        help="Avro schema (.avsc) to write the events with instead of the contract's, e.g. a producer's evolved schema: its "
        "fields are filled from the events by name, those the contract lacks with their defaults (with single-object "
        "encoding the worker's catalog must know it)")
    produce.add_argument("--rate", type=positive_float, metavar="EVENTS_PER_SECOND",
        help="send at this steady wall-clock rate (default: as fast as possible)")
    produce.add_argument("--delivery-timeout", type=positive_float, default=60.0, help="seconds Kafka may take to acknowledge a message (default 60)")
    produce.add_argument("-X", "--producer-property", type=_property, action="append", default=[], metavar="KEY=VALUE",
        help="librdkafka producer setting (repeatable)")
    produce.add_argument("--schemas", type=Path, help="contract directory (default: the bundled contracts)")
    produce.add_argument("--quiet", "-q", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    produce.set_defaults(handler=run)


def _fail(message: str, code: int) -> int:
    print(f"driftline produce: error: {message}", file=sys.stderr)
    return code


def _writer_schema(path: Path) -> Any:
    """The JSON of ``--writer-schema`` (parsed as Avro by the producer, which names what is wrong with it)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--writer-schema {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Run ``driftline produce``; return the exit code."""
    if args.input is None and (args.format or args.skip_invalid):
        raise UsageError("--format and --skip-invalid apply to --input")
    if args.synthetic is None and args.drift:
        raise UsageError("--drift applies to --synthetic")
    registry = schema_registry(args) if args.wire_format == "confluent" else None
    if args.wire_format == "confluent" and registry is None:
        raise UsageError("--wire-format confluent needs a Schema Registry: --schema-registry URL or $DRIFTLINE_SCHEMA_REGISTRY_URL")
    if args.registry_mode is not None and args.wire_format != "confluent":
        raise UsageError("--registry-mode applies to --wire-format confluent")
    mode = args.registry_mode or "auto-register"
    if mode == "use-latest" and args.writer_schema is not None:
        raise UsageError("--writer-schema and --registry-mode use-latest contradict each other: use-latest writes with the "
                         "subject's latest version")
    check_client_properties(args.producer_property)
    kafka = kafka_connection(args)
    if registry is not None and registry.url.startswith("mock://"):
        print("driftline produce: warning: a mock:// registry lives in this process only; no consumer can "
              "resolve its schema ids", file=sys.stderr)
    writer_schema = _writer_schema(args.writer_schema) if args.writer_schema is not None else None

    from driftline.schemas.contract_catalog import Catalog
    from driftline.schemas.errors import RegistryError
    from driftline.stream.demo.sources import synthetic_batches
    from driftline.stream.kafka.registry import registry_client
    from driftline.stream.kafka.topics import prediction_topic
    from driftline.stream.produce.producer import DeliveryError, EventProducer
    from driftline.stream.produce.publishing import check_file, ensure_topic, publish

    catalog = Catalog.load(args.schemas) if args.schemas is not None else Catalog.load()
    contract = catalog.contract(args.model)
    try:
        topic = args.topic or prediction_topic(args.model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.input is not None:
        total, sources = check_file(args.input, args.format, contract, model_version=args.model_version, skip_invalid=args.skip_invalid)
    else:
        total = args.synthetic
        sources = partial(
            synthetic_batches, contract, total, seed=args.seed, events_per_second=args.events_per_second,
            drift=args.drift, model_version=args.model_version or "v1",
        )
    try:
        for warning in ensure_topic(kafka, topic, args.delivery_timeout, partitions=args.partitions):
            print(f"driftline produce: warning: {warning}", file=sys.stderr)
        config = {"message.timeout.ms": int(args.delivery_timeout * 1000), **dict(args.producer_property)}
        producer = EventProducer(
            kafka, model=args.model, catalog=catalog, wire_format=args.wire_format,
            registry_client=registry_client(registry) if registry is not None else None, registry_mode=mode,
            topic=topic, writer_schema=writer_schema, producer_config=config,
        )
        report = publish(
            producer, sources(), total, rate=args.rate, delivery_timeout=args.delivery_timeout,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except (DeliveryError, RegistryError) as exc:
        return _fail(str(exc), 1)
    if report.unacknowledged:
        return _fail(f"{report.unacknowledged} of {report.sent} events were not acknowledged within {args.delivery_timeout:g} s", 1)
    rate = report.sent / report.seconds if report.seconds > 0 else 0.0
    line = f"sent {report.sent:,} events ({report.sent_bytes:,} bytes) to {topic} in {report.seconds:.2f} s: {rate:,.0f} events/s"
    if report.skipped:
        line += f"; skipped {report.skipped:,} invalid rows"
        for problem in report.skipped_examples:
            print(f"driftline produce: skipped {problem}", file=sys.stderr)
    print(line)
    return 0
