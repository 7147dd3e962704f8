"""The ``driftline`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from driftline.schemas.errors import DriftlineError

from .arguments import at_least

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline",
        description="Streaming drift monitor for machine-learning models in production.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the whole engine in-process on a synthetic stream with three drift episodes",
        description="Generates a prediction stream for the example credit-risk model with a gradual "
        "mean shift, a producer schema change and a flood of a new category value; prints alerts as "
        "they fire, writes window aggregates and alerts to SQLite, serves Prometheus metrics on "
        "localhost while it runs, and writes an HTML report.",
    )
    demo.add_argument("--output", type=Path, default=Path("out/demo"), help="directory for the database and report")
    demo.add_argument("--events", type=at_least(10_000), default=200_000, help="events in the stream (default 200000)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the synthetic stream")
    demo.add_argument(
        "--metrics-port", type=at_least(0), default=9464, help="Prometheus port on 127.0.0.1 (0 = any free port)"
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")

    baseline = commands.add_parser(
        "baseline",
        help="build a model version's reference profile from training data (Parquet)",
        description="Reads a Parquet file with pyarrow, summarises every contract field and calibrates "
        "the streaming detectors; stores the profile under --profiles/<model>/<version>.json.",
    )
    baseline.add_argument("--model", required=True, help="model name, as in its contract")
    baseline.add_argument("--input", type=Path, required=True, help="Parquet file of reference data")
    baseline.add_argument("--model-version", help="version to store the profile under (default: the file's model_version column)")
    baseline.add_argument("--profiles", type=Path, default=Path("profiles"), help="profile store directory")
    baseline.add_argument("--schemas", type=Path, default=None, help="contract directory (default: the bundled contracts)")
    baseline.add_argument("--false-alarm-rate", type=float, default=1e-6, help="false alarms per event of all the model's streaming detectors together (default 1e-6)")
    baseline.add_argument("--database-url", help="also store the profile in this database's reference_profiles table (where the worker reads it)")

    # Commands with their own modules register themselves and set ``handler``.
    from . import produce as produce_command
    from . import worker as worker_command

    worker_command.register(commands)
    produce_command.register(commands)
    return parser


def _store_profile(database_url: str, path: Path) -> None:
    from driftline.sinks.database import create_database_engine, display_url
    from driftline.sinks import SqlProfileStore

    from driftline.stream.monitor.profile import ReferenceProfile

    text = path.read_text(encoding="utf-8")
    profile = ReferenceProfile.from_json(text)
    SqlProfileStore(create_database_engine(database_url)).save(profile.model, profile.model_version, text)
    print(f"reference profile stored in {display_url(database_url)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``driftline`` console script."""
    args = _build_parser().parse_args(argv)
    try:
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args))
        if args.command == "demo":
            from driftline.stream.demo.demo import run_demo

            summary = run_demo(
                output=args.output,
                events=args.events,
                seed=args.seed,
                metrics_port=args.metrics_port,
                progress=not args.no_progress,
            )
            return 0 if summary.ok else 1
        if args.command == "baseline":
            from driftline.stream.profiles.training import run_baseline

            path = run_baseline(
                model=args.model,
                input_path=args.input,
                model_version=args.model_version,
                profiles_dir=args.profiles,
                schemas_dir=args.schemas,
                false_alarm_rate=args.false_alarm_rate,
            )
            print(f"reference profile written to {path}")
            if args.database_url:
                _store_profile(args.database_url, path)
            return 0
    except DriftlineError as exc:
        print(f"driftline: error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse guarantees a known command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
