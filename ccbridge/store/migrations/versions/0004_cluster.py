"""several bridges: heartbeat rows, once-only jobs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Several bridges share one PostgreSQL store (issue 15): each keeps a heartbeat row in
``bridges`` (GET /api/v1/cluster reads it), and a job that must run once per interval
whatever the number of bridges (the retention purge) notes in ``cluster_jobs`` when it
last ran, under an advisory lock.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _at() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bridges",
        sa.Column("identity", sa.String(length=160), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("started_at", _at(), nullable=False),
        sa.Column("seen_at", _at(), nullable=False),
        sa.Column("stopped_at", _at(), nullable=True),
        sa.Column("sites", sa.JSON(), nullable=False),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("identity", name=op.f("pk_bridges")),
    )
    op.create_table(
        "cluster_jobs",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ran_at", _at(), nullable=False),
        sa.Column("bridge", sa.String(length=160), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cluster_jobs")),
    )


def downgrade() -> None:
    op.drop_table("cluster_jobs")
    op.drop_table("bridges")
