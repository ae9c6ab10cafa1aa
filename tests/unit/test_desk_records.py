"""The call record of desk operations (recorded lab call + desk events): a transfer within
a site gives the next agent a leg segment of its own (each agent's own talk time, not the
first answer to the end), the desk's hold is taken out of talk, a transfer is an event."""

from __future__ import annotations

from typing import Any

import pytest

from ccbridge import variables as v
from tests.unit.records_streams import Stream, decide, feed_all, lab_config, load, machine, rows


def _like(ev: dict[str, str], name: str, at: float, **fields: str) -> dict[str, str]:
    out = {k: ev[k] for k in ("Channel", "Uniqueid", "Linkedid", "ChanVariable") if k in ev}
    return {**out, "Event": name, "Timestamp": f"{at:.6f}", **fields}


def _tables(stream: Stream) -> dict[str, Any]:
    config = lab_config()
    m = machine(config)
    return rows(decide(m, config, stream) + feed_all(m, stream))


def _answered() -> tuple[Stream, dict[str, str], dict[str, str]]:
    stream = load("answered")
    connect = next(ev for _, ev in stream if ev.get("Event") == "AgentConnect")
    complete = next(ev for _, ev in stream if ev.get("Event") == "AgentComplete")
    return stream, connect, complete


def test_a_transfer_within_the_site_gives_each_agent_its_own_talk_time() -> None:
    stream, connect, complete = _answered()
    t0, t_end = float(connect["Timestamp"]), float(complete["Timestamp"])
    i = stream.index(("bangalore", connect))
    moved = [
        ("bangalore", _like(connect, "UserEvent", t0 + 0.8, UserEvent=v.EVENT_TRANSFER,
                            Kind="queue", Target="returns-hi")),
        ("bangalore", _like(connect, "AgentComplete", t0 + 0.8, Reason="transfer",
                            Queue="orders-hi", MemberName="blr-agent2", TalkTime="1")),
        ("bangalore", _like(connect, "QueueCallerJoin", t0 + 0.9, Queue="returns-hi")),
        ("bangalore", _like(connect, "AgentConnect", t0 + 1.2, Queue="returns-hi",
                            MemberName="blr-agent1")),
    ]  # fmt: skip
    last = {**complete, "MemberName": "blr-agent1", "Queue": "returns-hi"}
    stream = [
        *stream[: i + 1],
        *moved,
        *[(s, last if e is complete else e) for s, e in stream[i + 1 :]],
    ]
    tables = _tables(stream)
    (row,) = tables["calls"].values()
    segments = sorted(tables["legs"].values(), key=lambda lg: lg["answered_at"])
    assert [(lg["agent"], lg["queue"]) for lg in segments] == [
        ("blr-agent2", "orders-hi"),
        ("blr-agent1", "returns-hi"),
    ]
    assert segments[1]["linkedid"] == segments[0]["linkedid"] + "/2"
    assert all(lg["ended_at"] is not None for lg in segments)
    # The call's talk is the first agent's: answer to the transfer, not to the end.
    assert row["agent"] == "blr-agent2"
    assert row["talk_s"] == pytest.approx(0.8, abs=1e-3)
    second = (segments[1]["ended_at"] - segments[1]["answered_at"]).total_seconds()
    assert second == pytest.approx(t_end - (t0 + 1.2) + 0.006, abs=0.05)
    events = [e for e in tables["call_events"].values() if e["name"] == v.EVENT_TRANSFER]
    assert [e["fields"] for e in events] == [{"Kind": "queue", "Target": "returns-hi"}]


def test_the_desk_hold_is_taken_out_of_talk() -> None:
    stream, connect, _ = _answered()
    t0 = float(connect["Timestamp"])
    i = stream.index(("bangalore", connect))
    held = [
        ("bangalore", _like(connect, "UserEvent", t0 + 0.5, UserEvent=v.EVENT_HOLD)),
        ("bangalore", _like(connect, "UserEvent", t0 + 1.1, UserEvent=v.EVENT_UNHOLD)),
    ]
    plain = _tables(stream)
    with_hold = _tables([*stream[: i + 1], *held, *stream[i + 1 :]])
    (p,) = plain["calls"].values()
    (h,) = with_hold["calls"].values()
    assert h["hold_s"] == pytest.approx(0.6, abs=1e-6)
    assert h["talk_s"] == pytest.approx(p["talk_s"] - 0.6, abs=1e-6)
