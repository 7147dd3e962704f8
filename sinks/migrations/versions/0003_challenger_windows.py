"""The online challenger against the production model, per window of prediction event time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Written out, like 0001 and 0002, so this revision creates the same table whatever later models define.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

UTC_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "challenger_windows",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("window_start", UTC_TIMESTAMP, nullable=False),
        sa.Column("window_length_seconds", sa.Integer(), nullable=False),
        sa.Column("compared", sa.BigInteger(), nullable=False),
        sa.Column("champion_accuracy", sa.Double(), nullable=True),
        sa.Column("challenger_accuracy", sa.Double(), nullable=True),
        sa.Column("champion_only", sa.BigInteger(), nullable=False),
        sa.Column("challenger_only", sa.BigInteger(), nullable=False),
        sa.Column("p_value", sa.Double(), nullable=False),
        sa.Column("alpha", sa.Double(), nullable=False),
        sa.Column("challenger_better", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("model", "window_start", "window_length_seconds", name=op.f("pk_challenger_windows")),
    )


def downgrade() -> None:
    op.drop_table("challenger_windows")
