"""Agent activity from AMI events (ccbridge/records/activity.py) through the EventBus and
a RecordWriter into the store, read back by the agent report: login and pause time and
rings come out as the events say; garbage events are skipped and counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ccbridge.events import EventBus
from ccbridge.records.activity import ActivityRecorder
from ccbridge.reports.build import agent_report
from ccbridge.reports.intervals import Step
from ccbridge.reports.query import Period, ReportQuery
from ccbridge.store.writer import RecordWriter
from tests.polling import until
from tests.store.conftest import Db
from tests.store.report_world import report_config

T0 = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)  # 10:00 in Dhaka


def ev(name: str, minute: float, queue: str = "orders-en", **f: str) -> dict[str, str]:
    stamp = (T0 + timedelta(minutes=minute)).timestamp()
    return {
        "Event": name,
        "Queue": queue,
        "MemberName": "dac-agent2",
        "Interface": "PJSIP/dac-agent2",
        "Timestamp": f"{stamp:.6f}",
        **f,
    }


EVENTS: list[dict[str, Any]] = [
    # a static member seen in the resync, already paused: logged in and paused from 10:00
    ev("QueueMember", 0, Paused="1", PausedReason="lunch"),
    ev("QueueMember", 0.5, Paused="1"),  # the same state again: nothing new
    ev("QueueMemberPause", 10, Paused="0"),  # unpaused at 10:10
    ev("AgentCalled", 12),
    ev("AgentRingNoAnswer", 12.25, RingTime="15"),
    ev("AgentCalled", 13),
    ev("QueueMemberAdded", 20, queue="orders-bn", Paused="0"),
    ev("QueueMemberRemoved", 40),
    ev("QueueMemberRemoved", 50, queue="orders-bn"),  # logged out of everything at 10:50
    {"Event": "AgentCalled", "Queue": "orders-en"},  # no member: skipped
    {"Event": "QueueMemberPause", "MemberName": "x"},  # no queue: skipped
    ev("AgentCalled", 14, Timestamp="not-a-time"),  # dated by the bridge's clock instead
]


async def test_events_to_agent_report(migrated: Db) -> None:
    writer = RecordWriter(migrated.engine(), migrated.tmp / "a.journal")
    await writer.start()
    rec = ActivityRecorder(writer.put, lambda: T0 + timedelta(minutes=30))
    bus = EventBus()
    rec.subscribe(bus)
    for e in EVENTS:
        bus.dispatch("dhaka", e)
    try:
        await until(lambda: writer.status().written >= rec.recorded, 30, "activity written")
    finally:
        await writer.stop()
    assert rec.skipped == 2 and rec.recorded == 10  # 2 + 1 + 3 rings + 1 + 2 + 1 dated by the clock
    assert {"QueueMemberAdded", "AgentRingNoAnswer", "QueueMember"} <= bus.names()
    q = ReportQuery(Period(start=T0, end=T0 + timedelta(hours=1)), ("dhaka",), Step.M60)
    engine = migrated.engine()
    r = await agent_report(engine, report_config(), q, T0 + timedelta(days=1))
    (row,) = r.rows
    assert row["agent"] == "dac-agent2"
    assert (row["login_s"], row["pause_s"]) == (50 * 60, 10 * 60)
    assert (row["offered"], row["ring_no_answer"], row["answered"]) == (3, 1, 0)
    assert row["occupancy"] == 0.0
