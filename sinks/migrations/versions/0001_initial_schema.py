"""Initial schema: the analysts' tables, reference profiles and worker checkpoints.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

The operations are written out (not read from the models), so this revision creates the same
tables whatever later versions of ``driftline.sinks.database`` define. Names are final (``op.f``):
no naming convention rewrites them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# JSONB on PostgreSQL, JSON (text) on SQLite.
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "window_aggregates",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("feature", sa.Text(), nullable=False),
        sa.Column("window_start", UTC_TIMESTAMP, nullable=False),
        sa.Column("window_length_seconds", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("nulls", sa.BigInteger(), nullable=False),
        sa.Column("non_finite", sa.BigInteger(), nullable=False),
        sa.Column("out_of_range", sa.BigInteger(), nullable=False),
        sa.Column("unseen", sa.BigInteger(), nullable=False),
        sa.Column("minimum", sa.Double(), nullable=True),
        sa.Column("maximum", sa.Double(), nullable=True),
        sa.Column("mean", sa.Double(), nullable=True),
        sa.Column("variance", sa.Double(), nullable=True),
        sa.Column("p01", sa.Double(), nullable=True),
        sa.Column("p05", sa.Double(), nullable=True),
        sa.Column("p25", sa.Double(), nullable=True),
        sa.Column("p50", sa.Double(), nullable=True),
        sa.Column("p75", sa.Double(), nullable=True),
        sa.Column("p95", sa.Double(), nullable=True),
        sa.Column("p99", sa.Double(), nullable=True),
        sa.Column("psi", sa.Double(), nullable=True),
        sa.Column("psi_threshold", sa.Double(), nullable=True),
        sa.Column("jensen_shannon", sa.Double(), nullable=True),
        sa.Column("ks", sa.Double(), nullable=True),
        sa.Column("wasserstein", sa.Double(), nullable=True),
        sa.Column("top_items", JSON_DOCUMENT, nullable=False),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint(
            "model", "model_version", "feature", "window_start", "window_length_seconds",
            name=op.f("pk_window_aggregates"),
        ),
    )
    op.create_index(
        op.f("ix_window_aggregates_model_feature_window_start"),
        "window_aggregates",
        ["model", "feature", "window_start"],
    )
    op.create_index(op.f("ix_window_aggregates_window_start"), "window_aggregates", ["window_start"])

    op.create_table(
        "model_windows",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("window_start", UTC_TIMESTAMP, nullable=False),
        sa.Column("window_length_seconds", sa.Integer(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("rejected_by_reason", JSON_DOCUMENT, nullable=False),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint(
            "model", "model_version", "window_start", "window_length_seconds", name=op.f("pk_model_windows")
        ),
    )
    op.create_index(op.f("ix_model_windows_model_window_start"), "model_windows", ["model", "window_start"])

    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("feature", sa.Text(), nullable=True),
        sa.Column("detector", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("window_start", UTC_TIMESTAMP, nullable=True),
        sa.Column("event_time", UTC_TIMESTAMP, nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_event_time"), "alerts", ["event_time"])
    op.create_index(op.f("ix_alerts_model_event_time"), "alerts", ["model", "event_time"])
    op.create_index(op.f("ix_alerts_kind_severity_event_time"), "alerts", ["kind", "severity", "event_time"])

    op.create_table(
        "schema_changes",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("writer_id", sa.Text(), nullable=False),
        sa.Column("compatible", sa.Boolean(), nullable=False),
        sa.Column("missing_fields", JSON_DOCUMENT, nullable=False),
        sa.Column("new_fields", JSON_DOCUMENT, nullable=False),
        sa.Column("type_changes", JSON_DOCUMENT, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("first_seen_event_time", UTC_TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("model", "writer_id", name=op.f("pk_schema_changes")),
    )

    op.create_table(
        "reference_profiles",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model", "model_version", name=op.f("pk_reference_profiles")),
    )

    op.create_table(
        "checkpoints",
        sa.Column("consumer_group", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("engine_state", sa.LargeBinary(), nullable=False),
        sa.Column("consumed", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("dead_lettered", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("consumer_group", "topic", "partition", name=op.f("pk_checkpoints")),
        sa.CheckConstraint("next_offset >= 0", name=op.f("ck_checkpoints_next_offset_not_negative")),
        sa.CheckConstraint(
            "accepted >= 0 AND dead_lettered >= 0 AND consumed = accepted + dead_lettered",
            name=op.f("ck_checkpoints_counts_reconcile"),
        ),
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("reference_profiles")
    op.drop_table("schema_changes")
    op.drop_index(op.f("ix_alerts_kind_severity_event_time"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_model_event_time"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_event_time"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_index(op.f("ix_model_windows_model_window_start"), table_name="model_windows")
    op.drop_table("model_windows")
    op.drop_index(op.f("ix_window_aggregates_window_start"), table_name="window_aggregates")
    op.drop_index(op.f("ix_window_aggregates_model_feature_window_start"), table_name="window_aggregates")
    op.drop_table("window_aggregates")
