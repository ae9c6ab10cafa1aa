"""Record the AMI events the call record reads, for a few real calls on the lab.

The streams under ``tests/unit/fixtures/records/`` that the record machine's unit tests
replay, made by the lab's Asterisk 22 with the shipped configs (cel.conf with only
LINKEDID_END over AMI, manager.conf channelvars=CCB_CALLID, timestampevents): what
Asterisk really sends, not what the docs say. Takes the lab lock; one recording AMI
session per site, unfiltered; keeps the events the record ingest subscribes to, masks
phone numbers, and prints the field facts the record relies on (the call ID's form,
QueueCallerAbandon's HoldTime unit, AgentComplete's Reason when the agent hangs up).

Scenarios: ``abandoned`` (no agent answers; the waiting caller is hung up after ~6 s),
``answered`` (a Hindi caller at bangalore, 2 s of talk), ``agent_hangup`` (the agent's
channel hangs up first), ``cross_site`` (a Bengali caller on bangalore's number is
answered at dhaka), ``fallback`` (the bridge is stopped and the held routes cleared: the
static route takes it).

    export CCBRIDGE_LAB_DIR=/work/main/.lab
    .venv/bin/python -m tests.bench.record_call_streams
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from ccbridge.ami.client import SiteLink
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sipp import Agent, place_calls, start_member_agents
from ccbridge.lab.sites import REPO_ROOT, Lab
from ccbridge.records.machine import BRIDGE_EVENTS, CEL, HOLD_EVENTS, QUEUE_EVENTS, USER_EVENTS
from tests.bench.record_cel_call import mask
from tests.polling import until

OUT = REPO_ROOT / "tests" / "unit" / "fixtures" / "records"
LOCK_FILE = Path("/tmp/ccbridge-lab.lock")
ORDERS_IN = "+918000000001"  # received at bangalore
HINDI = "+919812345678"
BENGALI = "+8801712345678"
WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # both sites open
WANTED = {*QUEUE_EVENTS, *HOLD_EVENTS, *BRIDGE_EVENTS}

Seen = list[tuple[str, Mapping[str, str]]]


def wanted(ev: Mapping[str, str]) -> bool:
    name = ev.get("Event", "")
    if name == CEL:
        return ev.get("EventName") == "LINKEDID_END"
    if name == "UserEvent":
        return ev.get("UserEvent") in USER_EVENTS
    return name in WANTED


class Recorder:
    def __init__(self, lab: Lab) -> None:
        self.seen: Seen = []
        self.links = [
            SiteLink(s.name, s.ami, lambda site, ev: self.seen.append((site, ev)))
            for s in lab.config.sites
        ]

    async def start(self) -> None:
        for link in self.links:
            await link.start()
        await until(lambda: all(li.connected for li in self.links), 15, "recording links")

    async def stop(self) -> None:
        for link in self.links:
            await link.stop()

    def mark(self) -> int:
        return len(self.seen)

    def since(self, mark: int) -> Seen:
        return self.seen[mark:]

    async def wait(self, mark: int, test: Callable[[Seen], bool], what: str) -> None:
        await until(lambda: test(self.since(mark)), 40, what)


def _ended(n: int) -> Callable[[Seen], bool]:
    """n LINKEDID_ENDs seen (a call's legs at n sites are over)."""

    def test(events: Seen) -> bool:
        ends = [e for _, e in events if e.get("EventName") == "LINKEDID_END"]
        return len(ends) >= n

    return test


def _named(name: str) -> Callable[[Seen], bool]:
    return lambda events: any(e.get("Event") == name for _, e in events)


async def _call(did: str, caller: str, duration_ms: int, port: int) -> None:
    result = await asyncio.to_thread(
        place_calls,
        "127.0.1.1:5060",
        did,
        caller=caller,
        calls=1,
        duration_ms=duration_ms,
        max_seconds=40,
        local_port=port,
    )
    if result.created != 1:
        raise SystemExit(f"the call was not placed:\n{result.output[-2000:]}")


async def record() -> dict[str, Seen]:
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    lab = Lab(config)
    lab.down()
    lab.up()
    streams: dict[str, Seen] = {}
    phones: dict[str, Agent] = {}
    rec = Recorder(lab)
    bridge = Bridge(config, Clock(WEDNESDAY_MORNING))
    try:
        await bridge.start()
        await until(lambda: bridge.state.synced, 20, "the bridge to sync")
        await rec.start()
        await asyncio.sleep(1.0)

        # abandoned: no phone answers; the caller is hung up after ~6 s in the queue
        mark = rec.mark()
        placed = asyncio.create_task(_call(ORDERS_IN, HINDI, 20000, 6391))
        await rec.wait(mark, _named("QueueCallerJoin"), "the caller queued")
        join = next(e for _, e in rec.since(mark) if e.get("Event") == "QueueCallerJoin")
        await asyncio.sleep(6.0)
        await bridge.links["bangalore"].action("Hangup", {"Channel": join["Channel"]})
        await rec.wait(mark, _ended(1), "abandoned: LINKEDID_END")
        placed.cancel()
        await asyncio.sleep(0.5)
        streams["abandoned"] = rec.since(mark)

        phones = start_member_agents(config, 600, lab.log_dir)
        await asyncio.sleep(2.0)

        mark = rec.mark()
        await _call(ORDERS_IN, HINDI, 2000, 6392)
        await rec.wait(mark, _ended(1), "answered: LINKEDID_END")
        await asyncio.sleep(0.5)
        streams["answered"] = rec.since(mark)

        # agent_hangup: the agent's channel is hung up 1.5 s into the talk
        mark = rec.mark()
        placed = asyncio.create_task(_call(ORDERS_IN, HINDI, 20000, 6393))
        await rec.wait(mark, _named("AgentConnect"), "agent_hangup: connected")
        conn = next(e for _, e in rec.since(mark) if e.get("Event") == "AgentConnect")
        await asyncio.sleep(1.5)
        await bridge.links["bangalore"].action("Hangup", {"Channel": conn["DestChannel"]})
        await rec.wait(mark, _ended(1), "agent_hangup: LINKEDID_END")
        await placed
        await asyncio.sleep(0.5)
        streams["agent_hangup"] = rec.since(mark)

        mark = rec.mark()
        await _call(ORDERS_IN, BENGALI, 2000, 6394)
        await rec.wait(mark, _ended(2), "cross_site: both sites' LINKEDID_END")
        await asyncio.sleep(1.0)
        streams["cross_site"] = rec.since(mark)

        await bridge.stop()
        # No held route either (a reload empties the globals): the static fallback takes it.
        for site in config.sites:
            await asyncio.to_thread(lab.cli, site, "dialplan reload")
        mark = rec.mark()
        await _call(ORDERS_IN, HINDI, 2000, 6395)
        await rec.wait(mark, _ended(1), "fallback: LINKEDID_END")
        await asyncio.sleep(0.5)
        streams["fallback"] = rec.since(mark)
    finally:
        await rec.stop()
        await bridge.stop()
        for phone in phones.values():
            phone.stop()
        lab.down()
    return streams


def facts(streams: dict[str, Seen]) -> None:
    for name, events in streams.items():
        ids = {
            v.split("=", 1)[1]
            for _, e in events
            for k, v in e.items()
            if k == "ChanVariable" and v.startswith("CCB_CALLID=")
        }
        print(f"{name}: {len(events)} events, call IDs {sorted(ids)}")
        for site, e in events:
            n = e.get("Event")
            if n == "UserEvent":
                n = f"UserEvent:{e.get('UserEvent')}"
            if n == CEL:
                n = f"CEL:{e.get('EventName')}"
            extra = {
                k: e[k]
                for k in ("Queue", "HoldTime", "TalkTime", "RingTime", "Reason", "Status")
                if k in e
            }
            print(f"   {site:10s} {e.get('Timestamp')} {n} {extra}")


def main() -> int:
    with open(LOCK_FILE, "w") as lock:
        print("waiting for the lab lock...", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
        streams = asyncio.run(record())
    facts(streams)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, events in streams.items():
        kept = [
            {"site": site, "event": {k: mask(k, v) for k, v in e.items()}}
            for site, e in events
            if wanted(e)
        ]
        (OUT / f"{name}.json").write_text(json.dumps(kept, indent=1) + "\n", encoding="utf-8")
        print(f"{len(kept)} events written to {OUT / name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
