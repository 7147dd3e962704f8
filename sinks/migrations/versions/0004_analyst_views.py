"""Analysts' views: the stable interface to the result tables (README, "Analyst views").

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

The tables may change between driftline versions; these views keep their names and columns (a
later revision may add columns, never rename or drop one). Portable SQL, so they exist on SQLite
too; the read-only role (``driftline db grant-readonly``) is PostgreSQL's.
"""

from __future__ import annotations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

#: name -> SELECT; the order of creation (none depends on another).
VIEWS: dict[str, str] = {
    # Per model, version, feature and window: volume, data quality, distribution and drift.
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
       f.wasserstein
FROM window_aggregates AS f
LEFT JOIN model_windows AS m
       ON m.model = f.model AND m.model_version = f.model_version
      AND m.window_start = f.window_start AND m.window_length_seconds = f.window_length_seconds
""",
    # Per model, version and window: events, accepted and rejected (with the reasons).
    "model_volume": """
SELECT model,
       model_version,
       window_start,
       window_length_seconds,
       events,
       accepted,
       rejected,
       CAST(rejected AS DOUBLE PRECISION) / NULLIF(events, 0) AS rejection_rate,
       rejected_by_reason
FROM model_windows
""",
    # Per model and window of prediction time: realised and estimated performance, and the challenger.
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
       c.challenger_better
FROM performance_windows AS p
LEFT JOIN challenger_windows AS c
       ON c.model = p.model AND c.window_start = p.window_start AND c.window_length_seconds = p.window_length_seconds
""",
    # Every alert, newest first when ordered by event_time.
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
       created_at
FROM alerts
""",
}


def upgrade() -> None:
    for name, select in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {select.strip()}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW {name}")
