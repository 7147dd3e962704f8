"""driftline.sinks — where engine results go: SQL tables for analysts, Prometheus metrics for on-call.

Every sink buffers with ``add()``/``observe()`` and never changes the engine's results; the SQL sink
writes idempotently and stores each worker's :class:`Checkpoint` in the same transaction as the
results, so at-least-once delivery has an exactly-once effect. :func:`upgrade_database` creates or
migrates the tables (Alembic revisions shipped in the package).
"""

from __future__ import annotations

from .database import create_database_engine, current_revision, head_revision, upgrade_database
from .errors import DriftlineError, SinkError, UnsupportedDialectError
from .metrics import DriftlineMetrics, serve
from .sql import Checkpoint, SqlSink, metadata

__all__ = [
    "Checkpoint",
    "DriftlineError",
    "DriftlineMetrics",
    "SinkError",
    "SqlSink",
    "UnsupportedDialectError",
    "create_database_engine",
    "current_revision",
    "head_revision",
    "metadata",
    "serve",
    "upgrade_database",
]
