"""driftline.sinks — where engine results go: SQL tables for analysts, Prometheus metrics for on-call.

Every sink buffers with ``add()``/``observe()`` and never changes the engine's results; the SQL sink
writes idempotently, so at-least-once delivery has an exactly-once effect.
"""

from __future__ import annotations

from .errors import DriftlineError, SinkError, UnsupportedDialectError
from .metrics import DriftlineMetrics, serve
from .sql import SqlSink, metadata

__all__ = [
    "DriftlineError",
    "DriftlineMetrics",
    "SinkError",
    "SqlSink",
    "UnsupportedDialectError",
    "metadata",
    "serve",
]
