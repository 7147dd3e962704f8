"""``driftline report``: the HTML report of a model over a time range, from the database."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .arguments import UsageError, add_database_url, database_url, utc_time

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="the HTML report of a model over a time range, from the database",
        description="Reads a model's window aggregates, window counts (accepted and rejected), performance and "
        "alerts (with their incidents' ends) from the database and renders them as one HTML file.",
    )
    parser.add_argument("--model", required=True, help="the model (or feature set) to report on")
    parser.add_argument("--since", type=utc_time, required=True, help="start of the range (ISO 8601, UTC unless it says otherwise)")
    parser.add_argument("--until", type=utc_time, default=None, help="end of the range (default: now)")
    parser.add_argument("--output", type=Path, required=True, help="the HTML file to write")
    parser.add_argument("--run", default="live", help="the run to report on: live (the worker's rows, default) or a replay's label")
    add_database_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from driftline.schemas.contract_catalog import Catalog
    from driftline.sinks.database import create_database_engine
    from driftline.sinks.report_reader import read_report_data
    from driftline.stream.demo.report import write_report

    until = args.until or datetime.now(UTC)
    if until <= args.since:
        raise UsageError(f"--until ({until.isoformat()}) must be after --since ({args.since.isoformat()})")
    engine = create_database_engine(database_url(args))

    def progress(done: int, days: int, rows: int) -> None:
        print(f"\rread {done} of {days} day(s): {rows:,} rows", end="" if done < days else "\n", file=sys.stderr, flush=True)

    try:
        data = read_report_data(engine, args.model, args.since, until, progress=progress, run=args.run)
    finally:
        engine.dispose()
    if not data.rows:
        print(f"driftline report: no rows of model {args.model!r}, run {args.run!r}, between {args.since.isoformat()} and "
              f"{until.isoformat()}",
              file=sys.stderr)
    # The drift panels of a model's outputs come first, whatever alerted: its contract names them.
    catalog = Catalog.load()
    outputs = [f.name for f in catalog.contract(args.model).prediction_fields] if args.model in catalog else ["score", "prediction"]
    path = write_report(
        args.output,
        prediction_features=outputs,
        title=f"driftline — {args.model}, {args.since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"
              + ("" if args.run == "live" else f", run {args.run}"),
        feature_windows=data.feature_windows, alerts=data.alerts, model_windows=data.model_windows,
        performance_windows=data.performance_windows, resolutions=data.resolutions,
        summary={
            "model": args.model, "run": args.run, "since": args.since.isoformat(), "until": until.isoformat(),
            "windows": len(data.model_windows), "events": sum(w.events for w in data.model_windows),
            "rejected events": sum(w.rejected for w in data.model_windows), "alerts": len(data.alerts),
            "incidents resolved": len(data.resolutions),
        },
    )
    print(f"report written to {path}")
    return 0
