"""Performance per window of prediction event time, from joined labels and estimated from the scores.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Written out, like 0001, so this revision creates the same table whatever later models define.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

UTC_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "performance_windows",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("window_start", UTC_TIMESTAMP, nullable=False),
        sa.Column("window_length_seconds", sa.Integer(), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("labelled", sa.BigInteger(), nullable=False),
        sa.Column("invalid_labels", sa.BigInteger(), nullable=False),
        sa.Column("accuracy", sa.Double(), nullable=True),
        sa.Column("precision", sa.Double(), nullable=True),
        sa.Column("recall", sa.Double(), nullable=True),
        sa.Column("f1", sa.Double(), nullable=True),
        sa.Column("log_loss", sa.Double(), nullable=True),
        sa.Column("true_positives", sa.BigInteger(), nullable=False),
        sa.Column("false_positives", sa.BigInteger(), nullable=False),
        sa.Column("true_negatives", sa.BigInteger(), nullable=False),
        sa.Column("false_negatives", sa.BigInteger(), nullable=False),
        sa.Column("mae", sa.Double(), nullable=True),
        sa.Column("rmse", sa.Double(), nullable=True),
        sa.Column("predictions", sa.BigInteger(), nullable=False),
        sa.Column("estimated_accuracy", sa.Double(), nullable=True),
        sa.Column("estimated_accuracy_se", sa.Double(), nullable=True),
        sa.Column("estimated_f1", sa.Double(), nullable=True),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("model", "window_start", "window_length_seconds", name=op.f("pk_performance_windows")),
    )


def downgrade() -> None:
    op.drop_table("performance_windows")
