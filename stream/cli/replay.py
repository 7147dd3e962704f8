"""``driftline replay``: argument parsing and the summary; the work is in :mod:`driftline.stream.replay`."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from .arguments import (
    DEFAULT_BOOTSTRAP,
    UsageError,
    add_database_url,
    add_kafka_security,
    add_schema_registry,
    database_url,
    kafka_connection,
    positive_float,
    positive_int,
    schema_registry,
    utc_time,
)
from .engine_options import add_engine_options, engine_config

__all__ = ["range_bound", "register", "run"]


def range_bound(text: str) -> int | datetime:
    """An argparse type: an offset (a whole number ≥ 0) or an ISO 8601 time (UTC unless it says otherwise).

    >>> range_bound("120000"), range_bound("2026-12-07T10:30")
    (120000, datetime.datetime(2026, 12, 7, 10, 30, tzinfo=datetime.timezone.utc))
    """
    stripped = text.strip()
    if stripped.isdigit():
        return int(stripped)
    try:
        return utc_time(stripped)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an offset (a whole number) nor an ISO 8601 time (2026-12-07, 2026-12-07T10:30:00Z)") from None


def register(commands: Any) -> None:
    """Add the ``replay`` sub-command to the ``driftline`` parser's sub-parsers."""
    parser = commands.add_parser(
        "replay",
        help="re-run the monitor over a range of a model's topic (or an archive file): backfill, or a run after a fix",
        description="Runs the worker's partition runner over offsets or times [--from, --to) of predictions.<model> (with its "
        "labels when --label-horizon is given), or over the rows of an archive file (--input), and writes the results "
        "through the worker's idempotent sinks. --run live (the default) starts from the live run's own kept state and "
        "computes what it computed, so replaying what it covered changes nothing; --run NAME writes beside the live rows "
        "under its own label (the `run` column), e.g. after a contract or reference fix. Nothing is paged or published. "
        "Exit codes: 0 done, 2 anything that stopped it — bad arguments, a replay that cannot run as asked, a broker or "
        "database failure — said in one line on stderr (run it again to continue: its checkpoints are committed as it goes).",
    )
    parser.add_argument("--model", required=True, help="the model (or feature set) to replay")
    parser.add_argument("--run", default="live",
        help="the run label to write under: 'live' (default: into the live run's rows, which it must reproduce) or a label of "
        "its own (letters, digits, . _ - :)")
    parser.add_argument("--from", dest="start", type=range_bound, default=None, metavar="OFFSET|TIME",
        help="first offset (of each partition) or time (Kafka timestamps; an archive's event time) to replay; default: the "
        "live run's beginning (into it), else the topic's first message")
    parser.add_argument("--to", dest="end", type=range_bound, default=None, metavar="OFFSET|TIME",
        help="offset or time to stop before; default: where the live run is (into it), else the topic's end when the replay starts")
    parser.add_argument("--input", type=Path, help="replay the rows of this Parquet, CSV or JSON-lines archive instead of the topic")
    parser.add_argument("--format", choices=("parquet", "csv", "jsonl"), help="format of --input (default: from its extension)")
    parser.add_argument("--bootstrap", help=f"Kafka bootstrap servers (default: $DRIFTLINE_KAFKA_BOOTSTRAP or {DEFAULT_BOOTSTRAP})")
    add_kafka_security(parser)
    add_database_url(parser)
    parser.add_argument("--group", default="driftline",
                        help="the live run's consumer group, whose checkpoint snapshots --run live starts from (default driftline)")
    parser.add_argument("--feature-topic-prefix", default="features.",
                        help="a feature set's rows are read from <prefix><name> (default features.)")
    add_engine_options(parser)
    add_schema_registry(parser, "in which the schema ids of Confluent-framed messages are resolved (as the worker's)")
    parser.add_argument("--batch-events", type=positive_int, default=50_000, help="most messages read at once (default 50000)")
    parser.add_argument("--checkpoint-seconds", type=positive_float, default=5.0,
                        help="how often the replay's results and its own checkpoint are committed (default 5)")
    parser.add_argument("--dead-letter-topic", default=None, metavar="TOPIC",
                        help="send rejected messages (again) to this topic; default: count them (the live run dead-lettered them)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``driftline replay``; print its summary; return the exit code."""
    from tqdm import tqdm

    from driftline.stream.replay import ReplaySettings, run_replay

    if args.input is None and args.format:
        raise UsageError("--format applies to --input")
    if args.input is not None and args.label_horizon is not None:
        raise UsageError("--label-horizon applies to a topic: an archive replay reads no labels")
    try:
        settings = ReplaySettings(
            model=args.model, run=args.run, database_url=database_url(args), kafka=None if args.input is not None else kafka_connection(args),
            input_file=args.input, input_format=args.format, start=args.start, end=args.end, consumer_group=args.group,
            topic_prefix=args.topic_prefix, feature_topic_prefix=args.feature_topic_prefix, label_topic_prefix=args.label_topic_prefix,
            engine=engine_config(args), schemas_dir=args.schemas, profiles_dir=args.profiles, max_message_bytes=args.max_message_bytes,
            batch_events=args.batch_events, checkpoint_seconds=args.checkpoint_seconds, dead_letter_topic=args.dead_letter_topic,
            schema_registry=schema_registry(args),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    show = not args.quiet and sys.stderr.isatty()
    bar = tqdm(total=None, unit="msg", unit_scale=True, disable=not show, file=sys.stderr, dynamic_ncols=True)

    def total(count: int) -> None:
        bar.total = count or None
        bar.refresh()

    try:
        outcome = run_replay(settings, progress=bar.update, on_total=total)
    finally:
        bar.close()
    for line in summary(outcome):
        print(line)
    return 0


def summary(outcome: Any) -> list[str]:
    """The lines ``driftline replay`` prints when it is done."""
    tally, settings = outcome.tally, outcome.settings
    rate = (tally.predictions + tally.labels) / tally.seconds if tally.seconds > 0 else 0.0
    lines = [f"replayed {outcome.source} into run {settings.run!r} in {tally.seconds:.1f} s ({rate:,.0f} messages/s)"]
    for plan in outcome.plans:
        end = "its last row" if plan.end < 0 else f"{plan.end:,}"
        line = f"  partition {plan.partition}: offsets {plan.first:,} to {end}, from {plan.origin}"
        if plan.label_first is not None:
            line += f"; labels {plan.label_first:,} to {plan.label_end:,}"
        lines.append(line)
    rejected = sum(tally.rejected_by_reason.values())
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(tally.rejected_by_reason.items()))
    lines.append(f"  {tally.predictions:,} messages: {tally.accepted:,} accepted, {rejected:,} rejected" + (f" ({reasons})" if reasons else ""))
    if tally.labels:
        outcomes = ", ".join(f"{name} {count:,}" for name, count in sorted(tally.label_outcomes.items()) if not name.startswith("prediction_"))
        lines.append(f"  {tally.labels:,} labels: {outcomes}")
    if outcome.unencodable:
        lines.append(f"  {outcome.unencodable:,} rows of the archive do not fit the contract and were not replayed, e.g.:")
        lines.extend(f"    {example}" for example in outcome.unencodable_examples)
    written = ", ".join(f"{table} {count:,}" for table, count in sorted(tally.rows.items()) if count)
    lines.append(f"  written (upserted, run {settings.run!r}): {written or 'nothing'}; {tally.alerts:,} alerts raised, "
                 f"{tally.resolutions:,} resolved")
    if tally.held_back:
        lines.append(f"  {tally.held_back:,} performance rows not written: labels may still come for their windows (the live run writes them)")
    if outcome.deadletters is not None and outcome.deadletters.examples:
        lines.append("  rejected, e.g.: " + "; ".join(outcome.deadletters.examples[:3]))
    return lines
