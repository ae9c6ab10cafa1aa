"""report_rollup: the interval report's quarter-hour sums of closed days, and their days

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

A month's 15-minute report summed ~190,000 calls rows of one site each time (BENCHMARKS.md
§10); the rollup keeps those sums per UTC quarter hour for every closed local day
(ccbridge/reports/rollup.py), and a report reads raw rows only for the days not rolled.
The triggers keep it exact: any write of a calls row (a late record, a replayed journal,
a second bridge) that arrived inside a rolled day deletes that day's report_rollup_days
row, so reports read the day raw until the next roll. "UPDATE OF" names the columns a
report figure reads: erasing a caller's number leaves the rollup alone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The calls columns a report figure reads (ccbridge/reports/queries.py).
WATCHED = (
    "entry_site, target_site, arrived_at, queued_at, service, language, queue, outcome, "
    "wait_s, talk_s, hold_s, wrapup_s, after_hours_action, static_fallback, route_source, "
    "satisfaction"
)
ROUTE_SOURCES = ("bridge", "held", "fallback", "static")


def _stale(row: str) -> str:
    """Delete the rolled days of the sites a call touches, around its arrival."""
    return (
        "DELETE FROM report_rollup_days"
        f" WHERE site IN ({row}.entry_site, {row}.target_site)"
        f" AND start_at <= {row}.arrived_at AND end_at > {row}.arrived_at;"
    )


def upgrade() -> None:
    counts = ("offered", "answered", "answered_within_sl", "abandoned", "short_abandons")
    more = ("abandoned_within_sl", "timed_out")
    tail = ("overflowed_in", "after_hours", "fallback_routed")
    op.create_table(
        "report_rollup",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("queue", sa.String(length=80), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in counts + more),
        sa.Column("answered_wait_s", sa.Float(), nullable=False),
        sa.Column("handle_s", sa.Float(), nullable=False),
        sa.Column("longest_wait_s", sa.Float(), nullable=True),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in tail),
        sa.Column("satisfaction_sum", sa.Integer(), nullable=False),
        sa.Column("satisfaction_count", sa.Integer(), nullable=False),
        *(sa.Column(f"routed_{s}", sa.Integer(), nullable=False) for s in ROUTE_SOURCES),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_rollup")),
    )
    op.create_index(
        op.f("ix_report_rollup_site_slot"), "report_rollup", ["site", "slot"], unique=False
    )
    op.create_table(
        "report_rollup_days",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site", "day", name=op.f("pk_report_rollup_days")),
    )
    op.create_index(
        op.f("ix_report_rollup_days_site_start_at"),
        "report_rollup_days",
        ["site", "start_at"],
        unique=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ccb_rollup_stale() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            + _stale("NEW")
            + " IF TG_OP = 'UPDATE' THEN "
            + _stale("OLD")
            + " END IF; RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER ccb_calls_rollup_insert AFTER INSERT ON calls"
            " FOR EACH ROW EXECUTE FUNCTION ccb_rollup_stale()"
        )
        op.execute(
            f"CREATE TRIGGER ccb_calls_rollup_update AFTER UPDATE OF {WATCHED} ON calls"
            " FOR EACH ROW EXECUTE FUNCTION ccb_rollup_stale()"
        )
    else:
        op.execute(
            "CREATE TRIGGER ccb_calls_rollup_insert AFTER INSERT ON calls BEGIN "
            + _stale("NEW")
            + " END"
        )
        op.execute(
            f"CREATE TRIGGER ccb_calls_rollup_update AFTER UPDATE OF {WATCHED} ON calls BEGIN "
            + _stale("NEW")
            + " "
            + _stale("OLD")
            + " END"
        )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS ccb_calls_rollup_update" + _on_calls())
    op.execute("DROP TRIGGER IF EXISTS ccb_calls_rollup_insert" + _on_calls())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ccb_rollup_stale()")
    op.drop_index(op.f("ix_report_rollup_days_site_start_at"), table_name="report_rollup_days")
    op.drop_table("report_rollup_days")
    op.drop_index(op.f("ix_report_rollup_site_slot"), table_name="report_rollup")
    op.drop_table("report_rollup")


def _on_calls() -> str:
    return " ON calls" if op.get_bind().dialect.name == "postgresql" else ""
