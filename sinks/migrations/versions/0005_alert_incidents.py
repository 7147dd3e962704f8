"""Alerts open incidents that resolve: when, after which last signal, and how many signals it gathered.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

The three columns are NULL while an alert's incident is open. The ``alert_log`` view gains them and
a ``state`` (``firing`` / ``resolved``) at its end (a view may add columns, never drop one).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

UTC_TIMESTAMP = sa.DateTime(timezone=True)

ALERT_LOG = """
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
       signals
FROM alerts
"""


def upgrade() -> None:
    op.execute("DROP VIEW alert_log")
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("resolved_at", UTC_TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("last_signal_at", UTC_TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("signals", sa.BigInteger(), nullable=True))
    op.execute(f"CREATE VIEW alert_log AS {ALERT_LOG.strip()}")


def downgrade() -> None:
    op.execute("DROP VIEW alert_log")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("signals")
        batch.drop_column("last_signal_at")
        batch.drop_column("resolved_at")
    previous = ALERT_LOG.split(",\n       CASE")[0] + "\nFROM alerts"  # 0004's view: the columns before the new ones
    op.execute(f"CREATE VIEW alert_log AS {previous.strip()}")
