"""``driftline generate``: a file of clean synthetic events of a model's contract (e.g. training data for ``baseline``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .arguments import UsageError, positive_float, positive_int

__all__ = ["register", "run"]

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".csv": "csv"}


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "generate",
        help="write synthetic events of a model's contract to a Parquet, JSON-lines or CSV file",
        description="Writes clean events of the synthetic generator (the stream the demo starts from, "
        "without its drift episodes) for --model: every contract field, with an event id, event time "
        "(epoch milliseconds) and model version. Use it as training data for `driftline baseline` or "
        "as input of `driftline produce --input`.",
    )
    parser.add_argument("--model", required=True, help="model name, as in its contract")
    parser.add_argument("--events", type=positive_int, default=50_000, help="number of events (default 50000)")
    parser.add_argument("--output", type=Path, required=True, help="file to write; the format follows its extension (.parquet, .jsonl, .csv)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1: not the seed `produce --synthetic` uses, 7)")
    parser.add_argument("--events-per-second", type=positive_float, default=10.0, help="event-time rate (default 10)")
    parser.add_argument("--model-version", default="v1", help="model version of the events (default v1)")
    parser.add_argument("--schemas", type=Path, help="contract directory (default: the bundled contracts)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    fmt = FORMATS.get(args.output.suffix.lower())
    if fmt is None:
        raise UsageError(f"--output {args.output}: the extension must be one of {', '.join(FORMATS)}")
    if args.output.exists() and args.output.is_dir():
        raise UsageError(f"--output {args.output} is a directory")

    from driftline.schemas.contract_catalog import Catalog
    from driftline.stream.demo.files import write_events

    catalog = Catalog.load(args.schemas) if args.schemas is not None else Catalog.load()
    contract = catalog.contract(args.model)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    rows = write_events(
        args.output, fmt, contract, args.events,
        seed=args.seed, events_per_second=args.events_per_second, model_version=args.model_version,
    )
    print(f"wrote {rows:,} {contract.model} events to {args.output}")
    return 0
