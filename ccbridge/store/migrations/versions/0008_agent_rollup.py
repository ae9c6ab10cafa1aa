"""agent_rollup: the agent report's quarter-hour sums of closed days, and its triggers

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

A month's agent report by quarter hour grouped ~190,000 calls and ~200,000 activity rows
of one site and clipped every login span to its quarter hours in Python each time
(BENCHMARKS.md §10). agent_rollup keeps one row per (site, UTC quarter hour, agent) of
every rolled day (ccbridge/reports/rollup.py): answered calls and their times by the
answer's quarter hour, rings, and the login and pause time clipped to the quarter hour
in whole microseconds (exact: re-added, they give any bucket's figure to the last bit).
It shares report_rollup_days with the interval rollup: a day is rolled for both reports
or for neither.

The triggers keep it exact. Besides the interval rollup's (a call's arrival day at its
entry and target site), a calls row written or changed makes the day of its answer at
its target site raw, and an agent_activity row makes its own day raw and, for a login,
logout, pause or unpause, every later rolled day of its site too: the state at each
day's start is the last change before it. report_rollup_days gains (site, end_at) for
that "every later day" probe, and agent_activity a partial index of the state changes
(ix_agent_activity_states): each agent's last change before a day (the roll does it for
every day) read ~200,000 index entries of a busy site's month, nearly all rings.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The calls columns a report figure reads: 0007's and the agent report's.
OLD_WATCHED = (
    "entry_site, target_site, arrived_at, queued_at, service, language, queue, outcome, "
    "wait_s, talk_s, hold_s, wrapup_s, after_hours_action, static_fallback, route_source, "
    "satisfaction"
)
WATCHED = OLD_WATCHED + ", answered_at, agent"
STATES = "('login', 'logout', 'pause', 'unpause')"  # ActivityKind's state changes
STATE_CHANGES = f"kind IN {STATES}"  # schema.STATE_CHANGES, as of this revision


def _stale(row: str) -> str:
    """0007's: the rolled days of the sites a call touches, around its arrival."""
    return (
        "DELETE FROM report_rollup_days"
        f" WHERE site IN ({row}.entry_site, {row}.target_site)"
        f" AND start_at <= {row}.arrived_at AND end_at > {row}.arrived_at;"
    )


def _stale_answer(row: str) -> str:
    """The rolled day of a call's answer at the site it was sent to."""
    return (
        "DELETE FROM report_rollup_days"
        f" WHERE site = {row}.target_site"
        f" AND start_at <= {row}.answered_at AND end_at > {row}.answered_at;"
    )


def _stale_call(row: str) -> str:
    return _stale(row) + " " + _stale_answer(row)


# An activity row's day; for a state change, every later day of its site as well.
STALE_ACTIVITY = (
    "DELETE FROM report_rollup_days WHERE site = NEW.site AND end_at > NEW.at"
    f" AND (start_at <= NEW.at OR NEW.kind IN {STATES});"
)


def _pg_function(body: Callable[[str], str]) -> str:
    return (
        "CREATE OR REPLACE FUNCTION ccb_rollup_stale() RETURNS trigger LANGUAGE plpgsql"
        f" AS $$ BEGIN {body('NEW')} IF TG_OP = 'UPDATE' THEN {body('OLD')} END IF;"
        " RETURN NULL; END $$"
    )


def _calls_triggers(watched: str, body: Callable[[str], str]) -> None:
    """(Re)create the calls triggers of 0007 with ``body(row)`` and ``watched``."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ccb_calls_rollup_update ON calls")
        op.execute(_pg_function(body))
        op.execute(
            f"CREATE TRIGGER ccb_calls_rollup_update AFTER UPDATE OF {watched} ON calls"
            " FOR EACH ROW EXECUTE FUNCTION ccb_rollup_stale()"
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS ccb_calls_rollup_insert")
        op.execute("DROP TRIGGER IF EXISTS ccb_calls_rollup_update")
        op.execute(
            f"CREATE TRIGGER ccb_calls_rollup_insert AFTER INSERT ON calls BEGIN {body('NEW')} END"
        )
        op.execute(
            f"CREATE TRIGGER ccb_calls_rollup_update AFTER UPDATE OF {watched} ON calls BEGIN "
            f"{body('NEW')} {body('OLD')} END"
        )


def upgrade() -> None:
    op.create_table(
        "agent_rollup",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("offered", sa.Integer(), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.Column("ring_no_answer", sa.Integer(), nullable=False),
        sa.Column("talk_s", sa.Float(), nullable=False),
        sa.Column("hold_s", sa.Float(), nullable=False),
        sa.Column("wrapup_s", sa.Float(), nullable=False),
        sa.Column("login_us", sa.BigInteger(), nullable=False),
        sa.Column("pause_us", sa.BigInteger(), nullable=False),
        sa.Column("satisfaction_sum", sa.Integer(), nullable=False),
        sa.Column("satisfaction_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_rollup")),
    )
    op.create_index(
        op.f("ix_agent_rollup_site_slot"), "agent_rollup", ["site", "slot"], unique=False
    )
    op.create_index(
        "ix_agent_activity_states",
        "agent_activity",
        ["site", "agent", "queue", "kind", "at"],
        unique=False,
        sqlite_where=sa.text(STATE_CHANGES),
        postgresql_where=sa.text(STATE_CHANGES),
    )
    op.create_index(
        op.f("ix_report_rollup_days_site_end_at"),
        "report_rollup_days",
        ["site", "end_at"],
        unique=False,
    )
    # Days rolled before this revision have no agent rows: rollup.VERSION 2 changes every
    # fingerprint, so reports read them raw until the job rolls them again.
    _calls_triggers(WATCHED, _stale_call)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ccb_agent_rollup_stale() RETURNS trigger LANGUAGE plpgsql"
            f" AS $$ BEGIN {STALE_ACTIVITY} RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER ccb_activity_rollup_insert AFTER INSERT ON agent_activity"
            " FOR EACH ROW EXECUTE FUNCTION ccb_agent_rollup_stale()"
        )
    else:
        op.execute(
            "CREATE TRIGGER ccb_activity_rollup_insert AFTER INSERT ON agent_activity BEGIN "
            f"{STALE_ACTIVITY} END"
        )


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    on = " ON agent_activity" if pg else ""
    op.execute("DROP TRIGGER IF EXISTS ccb_activity_rollup_insert" + on)
    if pg:
        op.execute("DROP FUNCTION IF EXISTS ccb_agent_rollup_stale()")
    _calls_triggers(OLD_WATCHED, _stale)
    op.drop_index(op.f("ix_report_rollup_days_site_end_at"), table_name="report_rollup_days")
    op.drop_index("ix_agent_activity_states", table_name="agent_activity")
    op.drop_index(op.f("ix_agent_rollup_site_slot"), table_name="agent_rollup")
    op.drop_table("agent_rollup")
