"""``driftline produce``: publish prediction events from a file or the synthetic generator.

This module is the command: its arguments, its two sources of batches (a file, read and converted
by :mod:`~driftline.stream.produce.input_files`, or :func:`synthetic_batches`), and the publishing loop
(progress bar, ``--rate`` pacing, the closing summary) over :class:`~driftline.stream.producer.EventProducer`.

A row of a file that does not fit is never dropped silently: by default the whole file is checked
before anything is sent and the first bad row aborts the command (exit code 2) naming its row and
column; with ``--skip-invalid`` such rows are skipped, counted and reported.

Exit codes: 0 every event delivered, 2 bad arguments or input, 1 Kafka did not take every event.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from driftline.schemas.contract import Catalog, Contract
from driftline.schemas.errors import DriftlineError, RegistryError

from .arguments import DEFAULT_BOOTSTRAP, kafka_bootstrap, positive_float, positive_int
from driftline.stream.demo.generator import Episode, SyntheticStream
from driftline.stream.produce.input_files import InputError, RowMapper, RowProblem, SourceBatch, file_format, read_file
from driftline.stream.produce.producer import WIRE_FORMATS, DeliveryError, EventProducer
from driftline.stream.kafka.topics import KafkaUnavailableError, TopicSetupError, ensure_topics, prediction_topic

__all__ = [
    "register",
    "run",
    "synthetic_batches",
]



# -- the synthetic generator ---------------------------------------------------------------------------


def synthetic_batches(
    contract: Contract, events: int, *, seed: int = 7, events_per_second: float = 10.0, drift: bool = False, model_version: str = "v1"
) -> Iterator[SourceBatch]:
    """Columns of ``events`` synthetic events, in the generator's batches of 2,000.

    With ``drift`` the stream is exactly the one ``driftline demo`` monitors for the same ``events``,
    ``seed`` and ``events_per_second``: its three episodes (mean shift, producer schema change,
    new-category flood; the renamed field is written with the renamed writer schema, which the
    bundled catalog knows) and its trickle of events later than the allowed lateness.
    """
    from driftline.stream.demo.demo import BATCH_SIZE

    stream = SyntheticStream(contract, seed=seed, events_per_second=events_per_second)
    episodes: list[Episode] = []
    rename: Episode | None = None
    renamed: dict[str, object] | None = None
    if drift:
        from driftline.stream.demo.demo import demo_episodes, renamed_schema

        episodes = demo_episodes(events)
        missing = sorted({e.feature for e in episodes} - {f.name for f in contract.monitored_fields})
        if missing:
            raise InputError(f"--drift uses the demo model's fields {missing}, which contract {contract.label} lacks")
        rename = next(e for e in episodes if e.kind == "rename")
        renamed = renamed_schema(contract, rename.feature, rename.new_name)
    identity = {spec.role: spec.name for spec in contract.fields}
    for offset in range(0, events, BATCH_SIZE):
        n = min(BATCH_SIZE, events - offset)
        columns: dict[str, Any] = stream.columns(n, offset=offset)
        if drift:
            from driftline.stream.demo.demo import demo_event_times

            stream.apply_episodes(columns, episodes, offset=offset)
            times = demo_event_times(stream, n, offset)
        else:
            times = stream.event_times(n, offset=offset)
        columns[identity["id"]] = [f"evt-{i:09d}" for i in range(offset, offset + n)]
        columns[identity["event_time"]] = times
        columns[identity["model_name"]] = pa.array([contract.model] * n, pa.string())
        columns[identity["model_version"]] = pa.array([model_version] * n, pa.string())
        if rename is None or not (offset < rename.end and rename.start < offset + n):
            yield SourceBatch(columns, n)
            continue
        cuts = sorted({0, n, min(max(rename.start - offset, 0), n), min(max(rename.end - offset, 0), n)})
        for start, stop in zip(cuts, cuts[1:]):
            part = {name: values[start:stop] for name, values in columns.items()}
            inside = rename.start <= offset + start < rename.end
            if inside:
                part[rename.new_name] = part.pop(rename.feature)
            yield SourceBatch(part, stop - start, writer_schema=renamed if inside else None)


# -- the command -------------------------------------------------------------------------------------


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
    produce.add_argument("--drift", action="store_true", help="synthetic stream with the demo's drift episodes (the stream `driftline demo` monitors)")
    produce.add_argument("--topic", help="topic to publish to (default: predictions.<model>)")
    produce.add_argument("--bootstrap", help=f"Kafka bootstrap servers (default: $DRIFTLINE_KAFKA_BOOTSTRAP or {DEFAULT_BOOTSTRAP})")
    produce.add_argument("--wire-format", choices=WIRE_FORMATS, default="single-object", help="single-object (default) or confluent")
    produce.add_argument("--schema-registry", metavar="URL", help="Schema Registry of --wire-format confluent")
    produce.add_argument("--rate", type=positive_float, metavar="EVENTS_PER_SECOND", help="send at this steady wall-clock rate (default: as fast as possible)")
    produce.add_argument("--delivery-timeout", type=positive_float, default=60.0, help="seconds Kafka may take to acknowledge a message (default 60)")
    produce.add_argument("-X", "--producer-property", type=_property, action="append", default=[], metavar="KEY=VALUE", help="librdkafka producer setting (repeatable)")
    produce.add_argument("--schemas", type=Path, help="contract directory (default: the bundled contracts)")
    produce.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    produce.set_defaults(handler=run)


def _fail(message: str, code: int) -> int:
    print(f"driftline produce: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Run ``driftline produce``; return the exit code."""
    bootstrap = kafka_bootstrap(args.bootstrap)
    if args.input is None and (args.format or args.skip_invalid):
        return _fail("--format and --skip-invalid apply to --input", 2)
    if args.synthetic is None and args.drift:
        return _fail("--drift applies to --synthetic", 2)
    if args.wire_format == "confluent" and not args.schema_registry:
        return _fail("--wire-format confluent needs --schema-registry URL", 2)
    if (args.schema_registry or "").startswith("mock://"):
        print("driftline produce: warning: a mock:// registry lives in this process only; no consumer can "
              "resolve its schema ids", file=sys.stderr)
    try:
        catalog = Catalog.load(args.schemas) if args.schemas is not None else Catalog.load()
        contract = catalog.contract(args.model)
        topic = args.topic or prediction_topic(args.model)
        if args.input is not None:
            total, sources = _file_source(args, contract)
        else:
            total = args.synthetic
            sources = partial(
                synthetic_batches, contract, total, seed=args.seed, events_per_second=args.events_per_second,
                drift=args.drift, model_version=args.model_version or "v1",
            )
        _ensure_topic(bootstrap, topic, args.delivery_timeout)
        config = {"message.timeout.ms": int(args.delivery_timeout * 1000), **dict(args.producer_property)}
        producer = EventProducer(
            bootstrap, model=args.model, catalog=catalog, wire_format=args.wire_format,
            schema_registry_url=args.schema_registry, topic=topic, producer_config=config,
        )
        return _publish(producer, sources(), total, args)
    except (DeliveryError, RegistryError) as exc:
        return _fail(str(exc), 1)
    except (DriftlineError, ValueError) as exc:
        return _fail(str(exc), 2)


def _file_source(args: argparse.Namespace, contract: Contract) -> tuple[int, Callable[[], Iterator[SourceBatch]]]:
    """Check the whole file first (unless --skip-invalid): nothing is sent from a file with a bad row."""
    unit = "line" if file_format(args.input, args.format) == "jsonl" else "row"
    mapper = RowMapper(contract, model_version=args.model_version, unit=unit)
    sources = partial(read_file, args.input, mapper, args.format)
    if args.skip_invalid:
        return 0, sources
    total = 0
    for batch in sources():
        if batch.problems:
            raise InputError(f"{args.input}: {batch.problems[0]} (nothing was sent; --skip-invalid skips such rows)")
        total += batch.rows
    return total, sources


def _ensure_topic(bootstrap: str, topic: str, timeout: float) -> None:
    """Fail fast when Kafka does not answer; create a missing topic with one partition (see topics.py)."""
    try:
        partitions = ensure_topics(bootstrap, [topic], timeout, answer_timeout=min(timeout, 15.0))[topic]
    except KafkaUnavailableError as exc:
        raise DeliveryError(str(exc)) from exc
    except TopicSetupError as exc:
        # Not allowed to create topics: the broker may auto-create it, or the send fails then.
        print(f"driftline produce: {exc}", file=sys.stderr)
        return
    if partitions != 1:
        print(f"driftline produce: warning: topic {topic} has {partitions} partitions; driftline worker needs one", file=sys.stderr)


def _publish(producer: EventProducer, sources: Iterator[SourceBatch], total: int, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    quiet = args.quiet or not sys.stderr.isatty()
    bar = tqdm(total=total or None, unit="ev", unit_scale=True, disable=quiet, file=sys.stderr, dynamic_ncols=True)
    pacer = _Pacer(args.rate) if args.rate else None
    skipped = 0
    examples: list[RowProblem] = []
    started: float | None = None
    try:
        for batch in sources:
            if batch.invalid_rows:
                skipped += batch.invalid_rows
                examples.extend(batch.problems[: 5 - len(examples)])
            if not batch.rows:
                continue
            encoded = producer.encode_batch(batch.columns, writer_schema=batch.writer_schema)
            if started is None:
                started = time.perf_counter()  # from the first send to the last acknowledgement
            if pacer is None:
                producer.send_encoded(encoded)
            else:
                pacer.send(producer, encoded.payloads, encoded.keys)
            bar.update(len(encoded))
        remaining = producer.close(args.delivery_timeout)
    finally:
        bar.close()
        try:
            producer.close(5.0)  # after an error: deliver what can be, release the client
        except DeliveryError:
            pass
    seconds = time.perf_counter() - started if started is not None else 0.0
    if remaining:
        return _fail(f"{remaining} of {producer.sent} events were not acknowledged within {args.delivery_timeout:g} s", 1)
    line = (
        f"sent {producer.sent:,} events ({producer.sent_bytes:,} bytes) to {producer.topic} in {seconds:.2f} s: "
        f"{producer.sent / seconds if seconds > 0 else 0:,.0f} events/s"
    )
    if skipped:
        line += f"; skipped {skipped:,} invalid rows"
        for problem in examples:
            print(f"driftline produce: skipped {problem}", file=sys.stderr)
    print(line)
    return 0


class _Pacer:
    """Release messages at a steady wall-clock rate: message ``i`` goes at ``start + i / rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start: float | None = None
        self.released = 0

    def send(self, producer: EventProducer, payloads: Sequence[bytes], keys: Sequence[Any]) -> None:
        i = 0
        while i < len(payloads):
            now = time.perf_counter()
            if self.start is None:
                self.start = now
            due = int((now - self.start) * self.rate) + 1 - self.released
            if due <= 0:
                producer.poll(0)
                time.sleep(max(0.0, self.start + self.released / self.rate - time.perf_counter()))
                continue
            stop = min(len(payloads), i + due)
            for payload, key in zip(payloads[i:stop], keys[i:stop]):
                producer.send_raw(payload, key)
            self.released += stop - i
            i = stop
