"""Calls whose end came while their site's AMI link was down: on the reconnect the site's
channel list ends them (RecordMachine.close_gone), marked, instead of holding them in
memory for 4 h (BENCHMARKS.md section 4: a reconnect storm held ~15,000 such calls)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ccbridge.records.machine import END_UNSEEN, RecordMachine
from tests.unit.records_streams import (
    Stream,
    call_id_of,
    decide,
    feed_all,
    lab_config,
    load,
    machine,
    rows,
)


def until_event(stream: Stream, name: str) -> Stream:
    """The stream up to and with its first ``name`` event (what came before the gap)."""
    i = next(i for i, (_, ev) in enumerate(stream) if ev.get("Event") == name)
    return stream[: i + 1]


def at_of(ev: dict[str, str], seconds: float) -> datetime:
    return datetime.fromtimestamp(float(ev["Timestamp"]), UTC) + timedelta(seconds=seconds)


def started(name: str, upto: str) -> tuple[RecordMachine, Stream, list[Any]]:
    config = lab_config()
    m = machine(config)
    stream = load(name)
    part = until_event(stream, upto)
    return m, part, decide(m, config, stream) + feed_all(m, part)


def linkedid(stream: Stream, site: str) -> str:
    return next(ev["Linkedid"] for s, ev in stream if s == site and "Linkedid" in ev)


def test_an_answered_call_whose_end_the_link_missed_is_ended_at_the_gaps_end() -> None:
    m, part, out = started("answered", "AgentConnect")
    gap_end = at_of(part[-1][1], 30)
    assert m.open_legs("bangalore") and not m.open_legs("dhaka")
    closed = m.close_gone("bangalore", {"bangalore-other.1"}, gap_end)
    tables = rows(out + closed)
    (row,) = tables["calls"].values()
    # answered is certain; how long it talked and who hung up are not
    assert row["outcome"] == "answered" and row["ended_at"] == gap_end
    assert "talk_s" not in row and "hold_s" not in row and "hung_up_by" not in row
    assert row["agent"] is not None and row["wait_s"] >= 0
    (leg,) = tables["legs"].values()
    assert leg["ended_at"] == gap_end
    names = [e["name"] for e in tables["call_events"].values()]
    assert names[-1] == END_UNSEEN
    assert not m.open_legs("bangalore")
    # it lingers like any ended call, then goes
    assert m.sweep(gap_end + timedelta(seconds=11)) == 1 and not m.calls


def test_a_call_whose_channel_is_still_up_or_that_was_seen_since_stays_open() -> None:
    m, part, _ = started("answered", "AgentConnect")
    gap_end = at_of(part[-1][1], 30)
    assert m.close_gone("bangalore", {linkedid(part, "bangalore")}, gap_end) == []
    # not listed, but an event of it came at or after the reconnect: younger than the list
    assert m.close_gone("bangalore", set(), at_of(part[-1][1], 0)) == []
    # another site's list says nothing of this site's legs
    assert m.close_gone("dhaka", set(), gap_end) == []
    (call,) = m.calls.values()
    assert call.ended is None
    # the rest of the call ends it as usual, with its talk
    rest = load("answered")[len(part) :]
    (row,) = rows(feed_all(m, rest))["calls"].values()
    assert row["outcome"] == "answered" and row["talk_s"] > 1


def test_an_unanswered_call_whose_end_was_missed_gets_no_guessed_outcome() -> None:
    m, part, out = started("abandoned", "QueueCallerJoin")
    gap_end = at_of(part[-1][1], 30)
    (row,) = rows(out + m.close_gone("bangalore", set(), gap_end))["calls"].values()
    assert row["ended_at"] == gap_end
    assert "outcome" not in row and "wait_s" not in row and "hung_up_by" not in row
    # an abandon seen before the gap is a fact: the outcome stays
    m, part, out = started("abandoned", "QueueCallerAbandon")
    gap_end = at_of(part[-1][1], 30)
    (row,) = rows(out + m.close_gone("bangalore", set(), gap_end))["calls"].values()
    assert row["outcome"] in ("abandoned", "short_abandon") and row["hung_up_by"] == "caller"
    assert row["wait_s"] < 30


def test_a_cross_site_call_ends_only_when_every_sites_leg_has() -> None:
    config = lab_config()
    m = machine(config)
    stream = load("cross_site")
    call_id = call_id_of(stream)
    answered = until_event(stream, "AgentConnect")
    out = decide(m, config, stream, "+8801712345678") + feed_all(m, answered)
    sites = {s for s, _ in answered}
    assert sites == {"bangalore", "dhaka"}
    gap_end = at_of(answered[-1][1], 30)
    out += m.close_gone("dhaka", set(), gap_end)
    assert m.calls[call_id].ended is None  # bangalore's leg is still up
    out += m.close_gone("bangalore", set(), gap_end + timedelta(seconds=5))
    assert m.calls[call_id].ended == gap_end + timedelta(seconds=5)
    tables = rows(out)
    (row,) = tables["calls"].values()
    assert row["ended_at"] == gap_end + timedelta(seconds=5) and row["outcome"] == "answered"
    assert {lg["site"]: lg["ended_at"] for lg in tables["legs"].values()} == {
        "dhaka": gap_end,
        "bangalore": gap_end + timedelta(seconds=5),
    }


def test_a_leg_that_ends_between_the_list_and_its_slice_is_left_alone() -> None:
    # The bridge ends gone legs a slice a loop turn: events may come in between.
    m, part, _ = started("answered", "AgentConnect")
    gap_end = at_of(part[-1][1], 30)
    legs = m.gone("bangalore", set(), gap_end)
    assert len(legs) == 1
    rest = load("answered")[len(part) :]
    feed_all(m, rest)  # its LINKEDID_END came after all
    (call,) = m.calls.values()
    ended = call.ended
    assert ended is not None and m.end_unseen("bangalore", legs, gap_end) == []
    assert call.ended == ended and not any(lg.end_lost for lg in call.legs.values())
