"""The ``driftline`` command line: one module per sub-command, each imported only to build its parser.

Command modules keep their heavy imports (Kafka, SQLAlchemy, pyarrow, Faust) inside the function
that runs the command, so ``driftline --help`` stays fast.
"""

from __future__ import annotations

from .commands import main

__all__ = ["main"]
