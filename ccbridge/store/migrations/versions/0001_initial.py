"""calls, legs, call events and coverage gaps

Revision ID: 0001
Revises:
Create Date: 2026-11-28

The first schema (issue 12): calls, legs, call_events, coverage_gaps; see
ccbridge/store/schema.py for what each index serves. Written out here, not imported
from schema.py: a migration is the schema as it was at this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("event_key", sa.String(length=160), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_events")),
        sa.UniqueConstraint("site", "event_key", name=op.f("uq_call_events_site_event_key")),
    )
    op.create_index(
        op.f("ix_call_events_call_id_at"), "call_events", ["call_id", "at"], unique=False
    )

    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("entry_site", sa.String(length=64), nullable=False),
        sa.Column("did", sa.String(length=32), nullable=True),
        sa.Column("number_kind", sa.String(length=16), nullable=True),
        sa.Column("caller_number", sa.String(length=64), nullable=True),
        sa.Column("caller_country", sa.String(length=2), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("language_source", sa.String(length=16), nullable=True),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("ivr_path", sa.JSON(), nullable=True),
        sa.Column("lookup_outcome", sa.String(length=32), nullable=True),
        sa.Column("target_site", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=80), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=True),
        sa.Column("static_fallback", sa.Boolean(), nullable=True),
        sa.Column("after_hours_action", sa.String(length=32), nullable=True),
        sa.Column("trunk_failovers", sa.Integer(), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("wait_s", sa.Float(), nullable=True),
        sa.Column("talk_s", sa.Float(), nullable=True),
        sa.Column("hold_s", sa.Float(), nullable=True),
        sa.Column("wrapup_s", sa.Float(), nullable=True),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("hung_up_by", sa.String(length=16), nullable=True),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_calls")),
    )
    op.create_index(
        op.f("ix_calls_agent_arrived_at"), "calls", ["agent", "arrived_at"], unique=False
    )
    op.create_index(op.f("ix_calls_arrived_at"), "calls", ["arrived_at"], unique=False)
    op.create_index(op.f("ix_calls_caller_number"), "calls", ["caller_number"], unique=False)
    op.create_index(
        op.f("ix_calls_entry_site_arrived_at"), "calls", ["entry_site", "arrived_at"], unique=False
    )
    op.create_index(
        op.f("ix_calls_target_site_arrived_at"),
        "calls",
        ["target_site", "arrived_at"],
        unique=False,
    )

    op.create_table(
        "coverage_gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coverage_gaps")),
        sa.UniqueConstraint("site", "started_at", name=op.f("uq_coverage_gaps_site_started_at")),
    )
    op.create_index(
        op.f("ix_coverage_gaps_site_ended_at"), "coverage_gaps", ["site", "ended_at"], unique=False
    )

    op.create_table(
        "legs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=80), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("ring_no_answers", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legs")),
        sa.UniqueConstraint(
            "call_id", "site", "linkedid", name=op.f("uq_legs_call_id_site_linkedid")
        ),
    )
    op.create_index(
        op.f("ix_legs_agent_answered_at"), "legs", ["agent", "answered_at"], unique=False
    )
    op.create_index(op.f("ix_legs_site_arrived_at"), "legs", ["site", "arrived_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_legs_site_arrived_at"), table_name="legs")
    op.drop_index(op.f("ix_legs_agent_answered_at"), table_name="legs")

    op.drop_table("legs")
    op.drop_index(op.f("ix_coverage_gaps_site_ended_at"), table_name="coverage_gaps")

    op.drop_table("coverage_gaps")
    op.drop_index(op.f("ix_calls_target_site_arrived_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_entry_site_arrived_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_caller_number"), table_name="calls")
    op.drop_index(op.f("ix_calls_arrived_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_agent_arrived_at"), table_name="calls")

    op.drop_table("calls")
    op.drop_index(op.f("ix_call_events_call_id_at"), table_name="call_events")

    op.drop_table("call_events")
