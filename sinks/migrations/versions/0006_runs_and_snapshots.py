"""Runs and snapshots: every result row names the run that wrote it; checkpoints are kept for replays.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08

* ``run`` (text, ``'live'`` for what the worker writes and for every row written before) is added to
  each result table and to its primary key, so a replay under a label of its own (``driftline replay
  --run fix-1``) writes beside the live rows instead of over them, and analysts compare the two.
* ``checkpoint_snapshots`` keeps copies of the worker's checkpoints (about one an hour, for a week):
  a replay into the live run starts from one, exactly where the live run was.
* The four analyst views gain a ``run`` column at their end (a view may add columns, never drop
  one) and join their tables on it. They cover every run: filter ``run = 'live'`` for the live
  monitor's rows.

Written out, like the earlier revisions, so it migrates the same way whatever later models define.
The views are dropped first and created again afterwards: SQLite rebuilds a table to change its
primary key, and a view naming a table that is being rebuilt would stop the rename.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

UTC_TIMESTAMP = sa.DateTime(timezone=True)

#: Each result table's primary key before this revision (``run`` is appended to it).
KEYS: dict[str, tuple[str, ...]] = {
    "window_aggregates": ("model", "model_version", "feature", "window_start", "window_length_seconds"),
    "model_windows": ("model", "model_version", "window_start", "window_length_seconds"),
    "performance_windows": ("model", "window_start", "window_length_seconds"),
    "challenger_windows": ("model", "window_start", "window_length_seconds"),
    "alerts": ("alert_id",),
    "schema_changes": ("model", "writer_id"),
}

#: The views of 0004 and 0005 with ``run`` (name -> SELECT), in creation order.
VIEWS: dict[str, str] = {
    "feature_drift": """
SELECT f.model,
       f.model_version,
       f.feature,
       f.window_start,
       f.window_length_seconds,
       f.kind,
       m.events,
       f.count AS valid_values,
       f.nulls,
       CAST(f.nulls AS DOUBLE PRECISION) / NULLIF(m.events, 0) AS null_rate,
       f.non_finite,
       f.out_of_range,
       f.unseen,
       f.minimum,
       f.maximum,
       f.mean,
       f.variance,
       f.p01, f.p05, f.p25, f.p50, f.p75, f.p95, f.p99,
       f.psi,
       f.psi_threshold,
       CASE WHEN f.psi IS NULL OR f.psi_threshold IS NULL THEN NULL ELSE f.psi > f.psi_threshold END AS drifted,
       f.jensen_shannon,
       f.ks,
       f.wasserstein,
       f.run
FROM window_aggregates AS f
LEFT JOIN model_windows AS m
       ON m.model = f.model AND m.model_version = f.model_version
      AND m.window_start = f.window_start AND m.window_length_seconds = f.window_length_seconds
      AND m.run = f.run
""",
    "model_volume": """
SELECT model,
       model_version,
       window_start,
       window_length_seconds,
       events,
       accepted,
       rejected,
       CAST(rejected AS DOUBLE PRECISION) / NULLIF(events, 0) AS rejection_rate,
       rejected_by_reason,
       run
FROM model_windows
""",
    "model_performance": """
SELECT p.model,
       p.window_start,
       p.window_length_seconds,
       p.task,
       p.predictions,
       p.labelled,
       p.invalid_labels,
       p.accuracy,
       p.estimated_accuracy,
       p.estimated_accuracy_se,
       p.estimated_accuracy - p.accuracy AS estimate_error,
       p.precision,
       p.recall,
       p.f1,
       p.estimated_f1,
       p.log_loss,
       p.true_positives,
       p.false_positives,
       p.true_negatives,
       p.false_negatives,
       p.mae,
       p.rmse,
       c.compared AS challenger_compared,
       c.champion_accuracy,
       c.challenger_accuracy,
       c.p_value AS challenger_p_value,
       c.challenger_better,
       p.run
FROM performance_windows AS p
LEFT JOIN challenger_windows AS c
       ON c.model = p.model AND c.window_start = p.window_start AND c.window_length_seconds = p.window_length_seconds
      AND c.run = p.run
""",
    "alert_log": """
SELECT alert_id,
       model,
       model_version,
       kind,
       feature,
       detector,
       severity,
       window_start,
       event_time,
       score,
       threshold,
       message,
       created_at,
       CASE WHEN resolved_at IS NULL THEN 'firing' ELSE 'resolved' END AS state,
       resolved_at,
       last_signal_at,
       signals,
       run
FROM alerts
""",
}


def _without_run(select: str) -> str:
    """A view of :data:`VIEWS` as 0005 left it: without the ``run`` column and the joins on it."""
    lines = [line for line in select.splitlines() if line.strip() not in ("f.run", "p.run", "run")
             and not line.strip().startswith("AND m.run") and not line.strip().startswith("AND c.run")]
    text = "\n".join(lines)
    # The column before ``run`` ended with a comma.
    for last in ("f.wasserstein,", "rejected_by_reason,", "c.challenger_better,", "signals,"):
        text = text.replace(f"{last}\nFROM", f"{last[:-1]}\nFROM")
    return text


def upgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW {name}")
    for table, key in KEYS.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("run", sa.Text(), nullable=False, server_default=sa.text("'live'")))
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", [*key, "run"])
    op.create_table(
        "checkpoint_snapshots",
        sa.Column("consumer_group", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("engine_state", sa.LargeBinary(), nullable=False),
        sa.Column("consumed", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("dead_lettered", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("consumer_group", "topic", "partition", "next_offset", name=op.f("pk_checkpoint_snapshots")),
    )
    for name, select in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {select.strip()}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW {name}")
    op.drop_table("checkpoint_snapshots")
    for table, key in KEYS.items():
        # Rows of other runs would collide on the old key: only the live run's are kept.
        op.execute(f"DELETE FROM {table} WHERE run <> 'live'")
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", list(key))
            batch.drop_column("run")
    for name, select in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {_without_run(select).strip()}")
