"""driftline.sinks — where engine results go: SQL tables for analysts, Prometheus metrics for on-call.

* :class:`SqlResultsSink` buffers results with ``add()`` and upserts them idempotently on their
  natural keys; :class:`SqlCheckpointStore` commits a runner's checkpoint in the same transaction as
  the results it accounts for, so at-least-once delivery has an exactly-once effect;
  :class:`SqlProfileStore` keeps the reference profiles the worker loads.
* :mod:`~driftline.sinks.tables` defines the tables; :func:`upgrade_database` creates or migrates them
  (Alembic revisions shipped in the package).
* :class:`DriftlineMetrics` holds every Prometheus metric, with bounded label values.
"""

from __future__ import annotations

from .checkpoint_store import SqlCheckpointStore
from .database import create_database_engine, current_revision, display_url, head_revision, upgrade_database, upgrade_engine
from .errors import DatabaseUrlError, SinkError, UnsupportedDialectError
from .metrics import DriftlineMetrics, serve
from .profile_store import SqlProfileStore
from .results_sink import SqlResultsSink
from .tables import metadata

__all__ = [
    "DatabaseUrlError",
    "DriftlineMetrics",
    "SinkError",
    "SqlCheckpointStore",
    "SqlProfileStore",
    "SqlResultsSink",
    "UnsupportedDialectError",
    "create_database_engine",
    "current_revision",
    "display_url",
    "head_revision",
    "metadata",
    "serve",
    "upgrade_database",
    "upgrade_engine",
]
