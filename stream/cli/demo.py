"""``driftline demo``: the embedded monitor on a synthetic stream with three drift episodes (no services)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .arguments import add_budget, add_data_dir, add_metrics, at_least, data_dir, metrics_port

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the whole engine in-process on a synthetic stream with three drift episodes",
        description="Generates a prediction stream for the example credit-risk model with a gradual "
        "mean shift, a producer schema change and a flood of a new category value; prints alerts as "
        "they fire, writes window aggregates and alerts to SQLite, serves Prometheus metrics on "
        "localhost while it runs, and writes an HTML report.",
    )
    parser.add_argument("--output", type=Path, help="directory for the database and the report (default: <data dir>/demo)")
    parser.add_argument("--events", type=at_least(10_000), default=200_000, help="events in the stream (default 200000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the synthetic stream (default 7)")
    add_budget(parser)
    add_metrics(parser)
    add_data_dir(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from driftline.stream.demo.demo import run_demo

    summary = run_demo(
        output=args.output if args.output is not None else data_dir(args) / "demo",
        events=args.events,
        seed=args.seed,
        metrics_port=metrics_port(args),
        progress=not args.no_progress and sys.stderr.isatty(),
        false_alarms_per_month=args.false_alarms_per_month,
    )
    return 0 if summary.ok else 1
