"""The record schema (SQLAlchemy Core tables), its outcome vocabulary and its indexes.

Every table has a natural unique key so that every write is an idempotent upsert
(``ON CONFLICT``, the same statement on SQLite and PostgreSQL): a record written twice,
replayed from the journal after a crash, or written by two bridges is one row.

Indexes, each for a query the reports (issue 12) will run:

- ``calls (entry_site, arrived_at)`` and ``calls (target_site, arrived_at)``: the interval
  report per site and time range (by where calls entered, by where they were sent);
- ``calls (agent, arrived_at)`` and ``legs (agent, answered_at)``: the agent report per
  agent and time range;
- ``calls (arrived_at)``: the call list over a time range and the retention purge;
- ``calls (caller_number)``: the caller filter and ``records erase --number``;
- ``calls (entry_site, arrived_at) WHERE target_site IS NULL OR target_site !=
  entry_site`` (partial, ``ix_calls_entry_site_away``): the interval report's calls that
  left their entry site or went nowhere;
- ``legs (site, arrived_at)``: a site's legs over a time range (queue reports);
- ``call_events (call_id, at)``: ``GET /calls/{id}`` lists one call's events in order;
- ``coverage_gaps (site, started_at)`` (the unique key) and ``(site, ended_at)``: the
  gaps a report interval touches;
- ``agent_activity (site, at, kind, agent)``: the agent report's ring counts (read from
  the index alone) and state changes over a time range;
- ``agent_activity (site, agent, queue, kind, at) WHERE kind IN ('login', 'logout',
  'pause', 'unpause')`` (partial, ``ix_agent_activity_states``): each agent's last state
  change before a range (``max(at)`` per agent, queue and kind), reading the state
  changes alone (the unique key, which it was read from before, holds every ring too);
- ``agent_rollup (site, slot)`` and ``report_rollup_days (site, end_at)``: the agent
  rollup's rows of a range, and the rolled days a late state change makes raw.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.ddl import CreateIndex

# Named constraints: alembic can then drop or alter them by name on both engines.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class RouteSource(StrEnum):
    """Who routed a call (calls.route_source): the bridge over FastAGI, a route held in the
    PBX while the bridge was alive but not asked (``use_without_bridge``), a held route
    after the bridge did not answer, or the static fallback. NULL: not seen (a coverage
    gap, a call that never reached a route step)."""

    BRIDGE = "bridge"
    HELD = "held"
    FALLBACK = "fallback"
    STATIC = "static"


class Outcome(StrEnum):
    """How a call ended for the caller: the one definition every record and report uses."""

    ANSWERED = "answered"
    ABANDONED = "abandoned"
    SHORT_ABANDON = "short_abandon"
    TIMEOUT = "timeout"
    AFTER_HOURS_VOICEMAIL = "after_hours_voicemail"
    AFTER_HOURS_CALLBACK = "after_hours_callback"
    CLOSED = "closed"
    REJECTED = "rejected"
    FAILED = "failed"


class HungUpBy(StrEnum):
    """Which side ended an answered or waiting call."""

    CALLER = "caller"
    AGENT = "agent"
    SYSTEM = "system"


class ActivityKind(StrEnum):
    """An agent's queue activity, as the agent report reads it (ccbridge/records/activity.py)."""

    LOGIN = "login"  # QueueMemberAdded, or a member first seen in a resync
    LOGOUT = "logout"  # QueueMemberRemoved
    PAUSE = "pause"  # QueueMemberPause Paused: 1
    UNPAUSE = "unpause"  # QueueMemberPause Paused: 0
    CALLED = "called"  # AgentCalled: a call rang the agent (the agent report's "offered")
    RING_NO_ANSWER = "ring_no_answer"  # AgentRingNoAnswer


_NOT_STATES = (ActivityKind.CALLED, ActivityKind.RING_NO_ANSWER)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC and read back aware: SQLite keeps no offset, so
    every instant is normalised before it is written and the time-range queries compare
    like with like on both engines."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: records need an aware instant")
        value = value.astimezone(UTC)
        # SQLite stores text: without the offset every value sorts the same way.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The partial index's predicate; a query uses the index only when it says the same.
ENTRY_AWAY = "target_site IS NULL OR target_site != entry_site"
# ix_agent_activity_states' predicate: the state changes, ~5 % of a site's activity rows.
STATE_CHANGES = "kind IN ({})".format(
    ", ".join(f"'{k.value}'" for k in ActivityKind if k not in _NOT_STATES)
)


def _partial(name: str, columns: tuple[str, ...], where: str) -> Index:
    """A partial index (``WHERE where``) on both engines. PostgreSQL's clause is set when
    the index is compiled for it (``_postgresql_where``), not as ``postgresql_where=``:
    that keyword loads the whole PostgreSQL dialect (asyncpg, psycopg, pg8000 modules:
    2.2 MB) in every bridge on SQLite (BENCHMARKS.md section 4)."""
    index = Index(name, *columns, sqlite_where=text(where))
    index.info["postgresql_where"] = where
    return index


@compiles(CreateIndex, "postgresql")
def _postgresql_where(create: CreateIndex, compiler: DDLCompiler, **kw: Any) -> str:
    index = create.element
    where = index.info.get("postgresql_where")
    if where is not None:  # the dialect is loaded now: the engine compiling is its own
        index.dialect_options["postgresql"]["where"] = text(where)
    sql: str = compiler.visit_create_index(create, **kw)  # type: ignore[no-untyped-call]
    return sql


def _site() -> String:
    return String(64)


calls = Table(
    "calls",
    metadata,
    Column("call_id", String(64), primary_key=True),
    # where the call entered
    Column("entry_site", _site(), nullable=False),
    Column("did", String(32)),
    Column("number_kind", String(16)),  # config NumberKind: local / tollfree
    Column("caller_number", String(64)),
    Column("caller_country", String(2)),
    Column("language", String(16)),
    Column("language_source", String(16)),  # ivr / prefix / country / default
    Column("service", String(64)),
    Column("ivr_path", JSON),  # the keys pressed, in order
    Column("lookup_outcome", String(32)),
    # the routing decision
    Column("target_site", _site()),
    Column("queue", String(80)),
    Column("reasons", JSON),  # routing.reasons values, in decision order
    Column("static_fallback", Boolean),  # the dialplan's static route took the call
    Column("route_source", String(16)),  # RouteSource: who routed it (bridge, held, ...)
    Column("after_hours_action", String(32)),
    Column("trunk_failovers", Integer),
    # times and durations (seconds)
    Column("arrived_at", UtcDateTime, nullable=False),
    Column("queued_at", UtcDateTime),
    Column("answered_at", UtcDateTime),
    Column("ended_at", UtcDateTime),
    Column("wait_s", Float),
    Column("talk_s", Float),
    Column("hold_s", Float),
    Column("wrapup_s", Float),
    Column("agent", String(64)),
    Column("outcome", String(32)),  # Outcome
    Column("hung_up_by", String(16)),  # HungUpBy
    Column("satisfaction", Integer),  # 1..5
    Index(None, "entry_site", "arrived_at"),
    Index(None, "target_site", "arrived_at"),
    Index(None, "agent", "arrived_at"),
    Index(None, "arrived_at"),
    Index(None, "caller_number"),
    # Only the calls sent away from where they entered, or sent nowhere (~15 %): the
    # interval report's overflow-out and after-hours pass reads these alone.
    _partial("ix_calls_entry_site_away", ("entry_site", "arrived_at"), ENTRY_AWAY),
)

legs = Table(
    "legs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(64), nullable=False),
    Column("site", _site(), nullable=False),
    Column("linkedid", String(64), nullable=False),
    Column("queue", String(80)),
    Column("arrived_at", UtcDateTime),
    Column("queued_at", UtcDateTime),
    Column("answered_at", UtcDateTime),
    Column("ended_at", UtcDateTime),
    Column("agent", String(64)),
    Column("ring_no_answers", Integer),
    UniqueConstraint("call_id", "site", "linkedid"),
    Index(None, "site", "arrived_at"),
    Index(None, "agent", "answered_at"),
)

call_events = Table(
    "call_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", _site(), nullable=False),
    # What makes an event unique at its site (e.g. the AMI event's uniqueid + name +
    # timestamp); two bridges seeing the same event derive the same key.
    Column("event_key", String(160), nullable=False),
    Column("call_id", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("name", String(64), nullable=False),
    Column("fields", JSON),
    UniqueConstraint("site", "event_key"),
    Index(None, "call_id", "at"),
)

coverage_gaps = Table(
    "coverage_gaps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", _site(), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),  # None: the gap is still open
    UniqueConstraint("site", "started_at"),
    Index(None, "site", "ended_at"),
)

agent_activity = Table(
    "agent_activity",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", _site(), nullable=False),
    Column("agent", String(64), nullable=False),  # the queue member's MemberName
    Column("queue", String(80), nullable=False),
    Column("kind", String(16), nullable=False),  # ActivityKind
    Column("at", UtcDateTime, nullable=False),
    Column("reason", String(80)),  # the pause reason
    UniqueConstraint("site", "agent", "queue", "kind", "at"),
    # kind and agent too: the ring counts read the index alone, never the rows
    Index(None, "site", "at", "kind", "agent"),
    # Each agent's last state change before a range (the agent report, and the agent
    # rollup for every day it rolls) reads the state changes alone, not every ring.
    _partial("ix_agent_activity_states", ("site", "agent", "queue", "kind", "at"), STATE_CHANGES),
)


# -- access (issue 13): users, their tokens, and the audit trail ---------------------

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # user / service
    Column("role", String(32), nullable=False),
    Column("sites", JSON, nullable=False),  # the sites a scoped role covers
    Column("agent", String(64)),  # the agent `me` stands for
    Column("password_hash", String(255)),  # argon2id; None: token only
    Column("disabled", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),  # the public part of the token
    Column("user_name", String(64), nullable=False),
    # SHA-256 of the secret part: 256 random bits need no slow hash, and a lookup by id
    # plus one constant-time compare keeps every request's check cheap.
    Column("secret_hash", String(64), nullable=False),
    Column("label", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Index(None, "user_name"),
)

# Append-only; each row's hash covers the previous row's hash (ccbridge/store/audit.py).
# `details` may be erased (a number's details on request) without breaking the chain:
# the hash covers `details_hash`, which stays.
audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("event_id", String(36), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("source", String(64), nullable=False),  # address, or "cli"
    Column("action", String(80), nullable=False),
    Column("object", String(160)),
    Column("site", _site()),
    Column("result", String(16), nullable=False),  # ok / denied / unauthorized / failed
    Column("status", Integer),  # the HTTP status, for API calls
    Column("details", JSON),
    Column("details_hash", String(64), nullable=False),
    Column("erased_at", UtcDateTime),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("event_id"),
    Index(None, "at"),
    Index(None, "site", "at"),
)

# Row 1: the chain's last sequence number and hash. Deleting the newest audit rows
# shows as a head that points past the table's end. Row 2, once a retention purge ran:
# the anchor, the last purged row's sequence number and hash (ccbridge/store/audit.py).
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

# -- recordings (issue 14): one row per MixMonitor file, indexed on its call --------

recordings = Table(
    "recordings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(64), nullable=False),
    Column("recording_id", String(80), nullable=False),  # SITE-UNIQUEID (recording/naming.py)
    Column("site", _site(), nullable=False),  # where it was recorded
    Column("status", String(16), nullable=False),  # RecordingStatus
    Column("started_at", UtcDateTime),
    Column("duration_s", Float),
    Column("size", Integer),  # bytes of the audio (the WAV as recorded)
    Column("sha256", String(64)),  # of the audio as recorded
    Column("key_id", String(32)),  # the key it is encrypted with at rest
    Column("storage_key", String(255)),  # where central storage keeps it
    Column("pauses", JSON),  # [[paused_at, resumed_at or null], ...] ISO 8601
    Column("error", String(255)),  # why the last try failed (status failed)
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("call_id", "recording_id"),
    Index(None, "site", "started_at"),
)


class RecordingStatus(StrEnum):
    """Where a recording is: being recorded, waiting at its site, stored, or failed."""

    RECORDING = "recording"  # MixMonitor runs (seen over AMI)
    STORED = "stored"  # encrypted in central storage, indexed; the site's copy deleted
    FAILED = "failed"  # the last try to store it failed (retried while the site has it)


# -- several bridges (issue 15): who is alive, and the jobs only one of them runs ------

# One row per bridge identity, rewritten every heartbeat (ccbridge/cluster.py); a bridge
# is alive while its seen_at is recent and it has not said it stopped.
bridges = Table(
    "bridges",
    metadata,
    Column("identity", String(160), primary_key=True),
    Column("version", String(32), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
    Column("stopped_at", UtcDateTime),  # a clean stop; None while it runs (or was killed)
    Column("sites", JSON, nullable=False),  # the sites whose AMI link is up, by name
    Column("sessions", Integer, nullable=False),  # FastAGI route and lookup sessions served
)

# When each once-only job (retention purge, ...) last ran, and where: read and written
# under the job's PostgreSQL advisory lock (ccbridge/store/cluster.py).
cluster_jobs = Table(
    "cluster_jobs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("ran_at", UtcDateTime, nullable=False),
    Column("bridge", String(160), nullable=False),
)

# -- the interval report's quarter-hour rollup (issue 12): ccbridge/reports/rollup.py ----

# Per site, UTC quarter hour and (service, language, queue), the interval report's sums
# of a closed local day, computed by the same SQL as the report itself
# (ccbridge/reports/queries.py SUM_COLUMNS): re-aggregated, they give every figure of
# any local bucket exactly. Rows are read only inside a day of report_rollup_days.
ROLLUP_HANDLED, ROLLUP_NOWHERE, ROLLUP_SENT_AWAY = 0, 1, 2  # report_rollup.kind
report_rollup = Table(
    "report_rollup",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", _site(), nullable=False),
    # handled at the site / entered there and sent nowhere / entered there, sent away
    Column("kind", SmallInteger, nullable=False),
    Column("slot", BigInteger, nullable=False),  # the UTC quarter hour: epoch seconds // 900
    Column("service", String(64)),
    Column("language", String(16)),
    Column("queue", String(80)),
    Column("n", Integer, nullable=False),  # calls
    Column("offered", Integer, nullable=False),
    Column("answered", Integer, nullable=False),
    Column("answered_within_sl", Integer, nullable=False),
    Column("abandoned", Integer, nullable=False),
    Column("short_abandons", Integer, nullable=False),
    Column("abandoned_within_sl", Integer, nullable=False),
    Column("timed_out", Integer, nullable=False),
    Column("answered_wait_s", Float, nullable=False),
    Column("handle_s", Float, nullable=False),
    Column("longest_wait_s", Float),
    Column("overflowed_in", Integer, nullable=False),
    Column("after_hours", Integer, nullable=False),
    Column("fallback_routed", Integer, nullable=False),
    Column("satisfaction_sum", Integer, nullable=False),
    Column("satisfaction_count", Integer, nullable=False),
    *(Column(f"routed_{s.value}", Integer, nullable=False) for s in RouteSource),
    Index(None, "site", "slot"),
)

# One row per rolled (site, local day): the day's span in UTC, the site's zone and the
# config fingerprint (thresholds, short abandons) its sums were computed with. A report
# uses a day's rows only when its fingerprint is the current one. Any write of a calls
# row that arrived inside a rolled day deletes the day's row (a trigger, migration 0007):
# a late record makes the day raw again until the next roll.
report_rollup_days = Table(
    "report_rollup_days",
    metadata,
    Column("site", _site(), primary_key=True),
    Column("day", String(10), primary_key=True),  # the local date, YYYY-MM-DD
    Column("zone", String(64), nullable=False),
    Column("start_at", UtcDateTime, nullable=False),  # local midnight, in UTC
    Column("end_at", UtcDateTime, nullable=False),  # the next local midnight
    Column("fingerprint", String(64), nullable=False),
    Column("rolled_at", UtcDateTime, nullable=False),
    Index(None, "site", "start_at"),
    # A late login/logout/pause/unpause makes every later rolled day raw (migration 0008)
    Index(None, "site", "end_at"),
)

# Per site, UTC quarter hour and agent, the agent report's sums of a rolled day (the same
# days as report_rollup): answered calls and their times by the answer's quarter hour,
# rings, and login and pause time clipped to the quarter hour in whole microseconds, so
# re-added they give any local bucket's figure exactly (ccbridge/reports/agentroll.py).
agent_rollup = Table(
    "agent_rollup",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", _site(), nullable=False),
    Column("slot", BigInteger, nullable=False),  # the UTC quarter hour: epoch seconds // 900
    Column("agent", String(64), nullable=False),
    Column("offered", Integer, nullable=False),
    Column("answered", Integer, nullable=False),
    Column("ring_no_answer", Integer, nullable=False),
    Column("talk_s", Float, nullable=False),
    Column("hold_s", Float, nullable=False),
    Column("wrapup_s", Float, nullable=False),
    Column("login_us", BigInteger, nullable=False),
    Column("pause_us", BigInteger, nullable=False),
    Column("satisfaction_sum", Integer, nullable=False),
    Column("satisfaction_count", Integer, nullable=False),
    Index(None, "site", "slot"),
)

TABLES: dict[str, Table] = {
    t.name: t for t in (calls, legs, call_events, coverage_gaps, agent_activity, audit)
}

# The columns an upsert matches on, per table: the natural key of each record.
CONFLICT_KEYS: dict[str, tuple[str, ...]] = {
    "calls": ("call_id",),
    "legs": ("call_id", "site", "linkedid"),
    "call_events": ("site", "event_key"),
    "coverage_gaps": ("site", "started_at"),
    "agent_activity": ("site", "agent", "queue", "kind", "at"),
    "audit": ("event_id",),
}

# Columns the writer fills in when it writes, never given by a record: the audit chain.
ASSIGNED_ON_WRITE: dict[str, frozenset[str]] = {
    "audit": frozenset({"seq", "details_hash", "erased_at", "prev_hash", "hash"}),
}

# Tables whose records only ever insert: a second copy changes nothing.
INSERT_ONLY: frozenset[str] = frozenset({"call_events", "agent_activity", "audit"})
