"""A call that ends while its site's AMI link is down is closed when the link comes back:
the bridge asks the site for its channels (CoreShowChannels, a fake AMI server here) and
ends the calls whose channels are gone, in the record (at the gap's end, marked) and in
the desk's view; a call still up stays."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config
from ccbridge.records.machine import END_UNSEEN
from ccbridge.routing.engine import CallRequest
from ccbridge.store.schema import call_events, calls, coverage_gaps, legs
from tests.amifake import FakeAmi
from tests.polling import until
from tests.store.conftest import Db
from tests.store.test_record_bridge import lab_config, rows, stream, with_store

__all__ = ["lab_config"]  # the fixture, from the record bridge's tests

T0 = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)


def start_of(bridge: Bridge, name: str, upto: str) -> tuple[str, str, str]:
    """The recorded call's decision and its events up to its first ``upto`` event, as the
    bridge would have them before the link drops; (call ID, entry linkedid, the caller's
    channel)."""
    events = stream(name)
    call_id = next(e for _, e in events if "ChanVariable" in e)["ChanVariable"].split("=", 1)[1]
    linkedid = next(e["Linkedid"] for s, e in events if s == "bangalore" and "Linkedid" in e)
    channel = next(e["Channel"] for _, e in events if e.get("Event") == "QueueCallerJoin")
    call = CallRequest(
        "+918000000001", "+919812345678", "bangalore", call_id=call_id, uniqueid=linkedid
    )
    bridge._on_decision(call, bridge.decide(call))
    for site, ev in events:
        bridge.bus.dispatch(site, ev)
        if ev.get("Event") == upto:
            break
    return call_id, linkedid, channel


async def test_a_call_ended_during_an_ami_outage_is_closed_on_reconnect(
    lab_config: Config, migrated: Db
) -> None:
    fake = FakeAmi("ccbridge", "x")
    fake.script_list("QueueStatus", "QueueStatusComplete", [])
    await fake.start()
    sites = tuple(
        replace(s, ami=replace(s.ami, port=fake.port, reconnect_min=0.05, reconnect_max=0.2))
        if s.name == "bangalore"
        else s
        for s in lab_config.sites
    )
    bridge = Bridge(with_store(replace(lab_config, sites=sites), migrated), Clock(T0))
    await bridge.start()
    rec = bridge.records
    assert rec is not None
    try:
        link = bridge.links["bangalore"]
        await until(lambda: link.ready, 10, "bangalore synced")
        gone, _, _ = start_of(bridge, "answered", "AgentConnect")  # talking when the link drops
        talking, up, name = start_of(bridge, "abandoned", "QueueCallerJoin")  # queued after
        channel = {
            "Event": "CoreShowChannel",
            "Channel": name,
            "Uniqueid": up,
            "Linkedid": up,
        }
        fake.script_list("CoreShowChannels", "CoreShowChannelsComplete", [channel])
        machine = rec.ingest.machine
        await fake.cut()  # the link drops; the answered call hangs up meanwhile
        await until(lambda: machine.calls[gone].ended is not None, 10, "the unseen end closed")
        assert machine.calls[talking].ended is None
        # the desk's view too: the gone call ended, the queued one still live
        assert bridge.desk.get(gone) is None and bridge.desk.ended_at(gone) is not None
        assert bridge.desk.get(talking) is not None
        assert fake.actions_named("CoreShowChannels")
        await until(lambda: rec.writer.status().caught_up, 10, "records written")
    finally:
        await bridge.stop()
        await fake.close()
    by_id = {r["call_id"]: r for r in await rows(migrated, calls)}
    gap = next(
        g
        for g in await rows(migrated, coverage_gaps)
        if g["site"] == "bangalore" and g["ended_at"] is not None
    )
    row = by_id[gone]
    assert row["ended_at"] == gap["ended_at"] and row["outcome"] == "answered"
    assert row["talk_s"] is None and row["hung_up_by"] is None
    assert by_id[talking]["ended_at"] is None and by_id[talking]["outcome"] is None
    (leg,) = [lg for lg in await rows(migrated, legs) if lg["call_id"] == gone]
    assert leg["ended_at"] == gap["ended_at"]
    names = [e["name"] for e in await rows(migrated, call_events) if e["call_id"] == gone]
    assert END_UNSEEN in names
