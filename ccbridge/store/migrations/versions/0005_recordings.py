"""recordings: one row per call recording (site, duration, size, sha256, key ID, status)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

Issue 14: each MixMonitor file, once encrypted in central storage, is indexed on its
call; a file the bridge could not store is a row with status failed (and its error).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("recording_id", sa.String(length=80), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("storage_key", sa.String(length=255), nullable=True),
        sa.Column("pauses", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint(
            "call_id", "recording_id", name=op.f("uq_recordings_call_id_recording_id")
        ),
    )
    op.create_index(
        op.f("ix_recordings_site_started_at"), "recordings", ["site", "started_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_recordings_site_started_at"), table_name="recordings")
    op.drop_table("recordings")
