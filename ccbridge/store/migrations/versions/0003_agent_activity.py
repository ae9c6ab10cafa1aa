"""agent activity: logins, pauses, rings per agent and queue; calls that left their entry site

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

The agent report (issue 12) needs login and pause time and the calls that rang an agent
(offered, ring-no-answer): one row per change, written by ccbridge/records/activity.py.
The interval report reads the calls sent away from their entry site (or nowhere) over a
partial index of those alone (~15 % of calls).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_activity",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=80), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_activity")),
        sa.UniqueConstraint(
            "site",
            "agent",
            "queue",
            "kind",
            "at",
            name=op.f("uq_agent_activity_site_agent_queue_kind_at"),
        ),
    )
    op.create_index(
        op.f("ix_agent_activity_site_at_kind_agent"),
        "agent_activity",
        ["site", "at", "kind", "agent"],
        unique=False,
    )

    away = sa.text("target_site IS NULL OR target_site != entry_site")
    op.create_index(
        "ix_calls_entry_site_away",
        "calls",
        ["entry_site", "arrived_at"],
        unique=False,
        sqlite_where=away,
        postgresql_where=away,
    )


def downgrade() -> None:
    op.drop_index("ix_calls_entry_site_away", table_name="calls")
    op.drop_index(op.f("ix_agent_activity_site_at_kind_agent"), table_name="agent_activity")
    op.drop_table("agent_activity")
