"""Retention and erasure on both engines: old records purged with their legs, events and
agent activity, recent ones kept; a caller's number erased from calls and events with a
marker; the background job purges on its own; the `records:` section is checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ccbridge.access.audit import AuditEvent, append
from ccbridge.config import ConfigError, parse_config
from ccbridge.store.audit import verify
from ccbridge.store.retention import ERASED, RetentionJob, erase_number, purge
from ccbridge.store.schema import (
    agent_activity,
    audit,
    call_events,
    calls,
    coverage_gaps,
    legs,
)
from tests.polling import until
from tests.store.conftest import Db
from tests.store.report_world import write

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NUMBER = "+8801712345678"
REPO = Path(__file__).resolve().parents[2]


def world() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for cid, age_days, caller in (
        ("old1", 40, NUMBER),
        ("old2", 31, "+8801700000000"),
        ("new1", 29, NUMBER),
        ("new2", 1, "+8801711111111"),
    ):
        t = NOW - timedelta(days=age_days)
        out += [
            (
                "calls",
                {"call_id": cid, "entry_site": "dhaka", "arrived_at": t, "caller_number": caller},
            ),
            ("legs", {"call_id": cid, "site": "dhaka", "linkedid": f"{cid}.1", "arrived_at": t}),
            (
                "call_events",
                {
                    "site": "dhaka",
                    "event_key": f"{cid}/Join",
                    "call_id": cid,
                    "at": t,
                    "name": "QueueCallerJoin",
                    "fields": {
                        "CallerIDNum": caller.lstrip("+"),
                        "Queue": "q",
                        "Nested": [{"ConnectedLineNum": caller}],
                    },
                },
            ),
            (
                "agent_activity",
                {"site": "dhaka", "agent": "a", "queue": "q", "kind": "login", "at": t},
            ),
            (
                "coverage_gaps",
                {"site": "dhaka", "started_at": t, "ended_at": t + timedelta(minutes=5)},
            ),
        ]
    return out


async def _count(db: Db, table: Any) -> int:
    async with db.engine().connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_purge_keeps_the_last_30_days(migrated: Db) -> None:
    await write(migrated, world())
    gone = await purge(migrated.engine(), NOW - timedelta(days=30))
    assert gone == {
        "calls": 2,
        "legs": 2,
        "call_events": 2,
        "recordings": 0,
        "agent_activity": 2,
        "coverage_gaps": 2,
        "report_rollup_days": 0,  # nothing rolled here (tests/store/test_rollup.py)
    }
    async with migrated.engine().connect() as conn:
        ids = sorted((await conn.execute(select(calls.c.call_id))).scalars())
    assert ids == ["new1", "new2"]
    for t in (legs, call_events, agent_activity, coverage_gaps):
        assert await _count(migrated, t) == 2
    assert await purge(migrated.engine(), NOW - timedelta(days=30)) == dict.fromkeys(gone, 0)


async def test_erase_removes_the_number_everywhere_and_leaves_a_marker(migrated: Db) -> None:
    await write(migrated, world())
    done = await erase_number(migrated.engine(), NUMBER)
    assert (done.calls, done.events) == (2, 2)
    async with migrated.engine().connect() as conn:
        callers = dict((await conn.execute(select(calls.c.call_id, calls.c.caller_number))).all())
        events = dict(
            (await conn.execute(select(call_events.c.call_id, call_events.c.fields))).all()
        )
    assert callers == {
        "old1": ERASED,
        "new1": ERASED,
        "old2": "+8801700000000",
        "new2": "+8801711111111",
    }
    assert events["old1"] == {
        "CallerIDNum": ERASED,
        "Queue": "q",
        "Nested": [{"ConnectedLineNum": ERASED}],
    }
    assert events["new2"]["CallerIDNum"] == "8801711111111"  # another caller: untouched
    assert (await erase_number(migrated.engine(), NUMBER)).calls == 0


async def test_the_background_job_purges(migrated: Db) -> None:
    await write(migrated, world())
    old = AuditEvent("sue", "10.0.0.7", "login", "ok", at=NOW - timedelta(days=100))
    await append(migrated.engine(), old, AuditEvent("sue", "10.0.0.7", "login", "ok", at=NOW))
    job = RetentionJob(
        migrated.settings, days=30, interval=0.05, now=lambda: NOW, first_delay=0, audit_days=90
    )
    await job.start()
    try:
        await until(lambda: job.rounds >= 2, 20, "two purge rounds")
    finally:
        await job.stop()
    assert job.purged["calls"] == 2 and job.last_error is None
    assert await _count(migrated, calls) == 2
    # The old audit row went; the chain verifies from the anchor the purge recorded.
    assert job.purged["audit"] == 1
    async with migrated.engine().connect() as conn:
        result = await verify(conn)
        actors = (await conn.execute(select(audit.c.actor).order_by(audit.c.seq))).scalars()
        assert list(actors) == ["sue", "retention"]
    assert result.ok and result.rows == 2


async def test_the_job_waits_for_a_database(db: Db) -> None:
    """No schema yet: each round is skipped and says why; nothing is created or purged."""
    job = RetentionJob(db.settings, days=30, interval=0.05, now=lambda: NOW, first_delay=0)
    await job.start()
    try:
        await until(lambda: job.last_error is not None, 20, "a skipped round")
    finally:
        await job.stop()
    assert job.rounds == 0 and (
        "no record database" in job.last_error or "schema" in job.last_error
    )


def test_records_section(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = (REPO / "examples" / "lab.yaml").read_text()
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "x")
    c = parse_config(lab + "records:\n  retention_days: 90\n  short_abandon_s: 3\n", "d.yaml", REPO)
    assert (c.records.retention_days, c.records.short_abandon_s) == (90, 3.0)
    assert parse_config(lab, "d.yaml", REPO).records.retention_days == 400
    audit_days = "records:\n  audit_retention_days: 3650\n"
    assert parse_config(lab + audit_days, "d.yaml", REPO).records.audit_retention_days == 3650
    with pytest.raises(ConfigError) as info:
        parse_config(lab + "records:\n  retention_days: -1\n", "d.yaml", REPO)
    assert "records.retention_days" in str(info.value.problems[0])
    rollup = "records:\n  rollup_interval: 0\n  rollup_grace: 3600\n"
    r = parse_config(lab + rollup, "d.yaml", REPO).records
    assert (r.rollup_interval, r.rollup_grace) == (0.0, 3600.0)  # 0: no rollup job
    defaults = parse_config(lab, "d.yaml", REPO).records
    assert (defaults.rollup_interval, defaults.rollup_grace) == (900.0, 7200.0)
    for bad, says in (
        ("rollup_interval: -1", "records.rollup_interval: -1 is out of range 0..86400"),
        ("rollup_interval: soon", "records.rollup_interval: expected a number, got"),
        ("rollup_grace: 99999999", "records.rollup_grace: 99999999 is out of range"),
        ("rollup_grace: true", "records.rollup_grace: expected a number, got"),
        ("rollup_every: 60", "rollup_every"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config(lab + f"records:\n  {bad}\n", "d.yaml", REPO)
        assert says in str(info.value.problems[0]), (bad, info.value.problems)
