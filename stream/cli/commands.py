"""The ``driftline`` parser: every sub-command registers itself the same way, from its own module.

Each command module has ``register(commands)``, which adds its parser and sets ``handler`` to its
``run(args) -> int``. The modules import nothing heavy at module level, so ``driftline --help``
loads none of Kafka, SQLAlchemy or pyarrow (tested).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from driftline.schemas.errors import DriftlineError

from . import baseline, db, demo, generate, produce, replay, report, worker

__all__ = ["build_parser", "main"]

#: In the order ``driftline --help`` lists them.
COMMANDS = (demo, generate, baseline, db, worker, produce, replay, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline",
        description="Streaming drift monitor for machine-learning models in production.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``driftline`` console script: one clear line and a non-zero exit for every mistake."""
    args = build_parser().parse_args(argv)
    # librdkafka reports every failed connection attempt; the commands say once what went wrong.
    logging.getLogger("driftline.kafka.client").setLevel(logging.CRITICAL)
    try:
        return int(args.handler(args))
    except DriftlineError as exc:
        print(f"driftline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"driftline {args.command}: interrupted", file=sys.stderr)
        return 130
