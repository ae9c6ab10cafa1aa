"""The record machine on recorded lab calls: one row per call across sites, its legs and
events, the outcome and the durations; order of sites' events, duplicates and restarts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ccbridge import variables as v
from ccbridge.records import callid
from ccbridge.records.machine import Out
from tests.unit.records_streams import (
    CALLERS,
    STREAMS,
    T0,
    Stream,
    call_id_of,
    checked,
    decide,
    feed_all,
    lab_config,
    load,
    machine,
    replay,
    rows,
)


def only_call(tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]]) -> dict[str, Any]:
    (row,) = tables["calls"].values()
    return row


def event_names(tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]]) -> list[str]:
    return [e["name"] for e in sorted(tables["call_events"].values(), key=lambda e: e["at"])]


def shift(stream: Stream, name: str, seconds: float) -> Stream:
    """The stream with every event from the first ``name`` on moved by ``seconds``."""
    out: Stream = []
    moving = False
    for site, ev in stream:
        moving = moving or ev.get("Event") == name
        if moving:
            ev = {**ev, "Timestamp": f"{float(ev['Timestamp']) + seconds:.6f}"}
        out.append((site, ev))
    return out


@pytest.mark.parametrize("name", STREAMS)
def test_every_recorded_call_has_its_id_and_one_row(name: str) -> None:
    stream = load(name)
    cid = callid.parse(call_id_of(stream))
    assert cid is not None and cid.entry_site == "bangalore"
    # Asterisk's Timestamp and the ID's instant agree (the ID is set as the call enters).
    first = datetime.fromtimestamp(float(stream[0][1]["Timestamp"]), UTC)
    assert abs((first - cid.arrived_at).total_seconds()) < 2
    tables = replay(name)
    row = only_call(tables)
    assert row["call_id"] == cid.text and row["arrived_at"] == cid.arrived_at
    assert row["ended_at"] >= row["arrived_at"]
    assert all(leg["ended_at"] is not None for leg in tables["legs"].values())


def test_an_answered_call() -> None:
    tables = replay("answered")
    row = only_call(tables)
    assert row["outcome"] == "answered" and row["hung_up_by"] == "caller"
    assert row["did"] == "+918000000001" and row["number_kind"] == "tollfree"
    assert row["service"] == "orders" and row["language"] == "hi"
    assert row["target_site"] == "bangalore" and row["queue"] == "orders-hi"
    assert row["static_fallback"] is False and row["caller_country"] == "IN"
    assert row["arrived_at"] <= row["queued_at"] <= row["answered_at"] <= row["ended_at"]
    assert 0 <= row["wait_s"] < 2 and 1.5 < row["talk_s"] < 3.5
    assert row["hold_s"] == 0 and row["wrapup_s"] == 5.0  # queues.conf wrapuptime
    assert row["agent"].startswith("blr-")
    (leg,) = tables["legs"].values()
    assert leg["site"] == "bangalore" and leg["agent"] == row["agent"]
    assert leg["ring_no_answers"] == 0
    names = event_names(tables)
    assert names[0] == "QueueCallerJoin" and names[-1] == "CEL:LINKEDID_END"
    assert {"AgentCalled", "AgentConnect", "AgentComplete"} <= set(names)


def test_an_abandoned_call_measured_from_the_events_not_holdtime() -> None:
    stream = load("abandoned")
    row = only_call(replay("abandoned"))
    assert row["outcome"] == "abandoned" and row["hung_up_by"] == "caller"
    assert 5.5 < row["wait_s"] < 8 and "answered_at" not in row and "agent" not in row
    abandon = next(ev for _, ev in stream if ev.get("Event") == "QueueCallerAbandon")
    # Asterisk 22 (lab, measured): QueueCallerAbandon's HoldTime is whole seconds waited.
    assert int(abandon["HoldTime"]) == int(row["wait_s"])


def test_a_short_abandon_is_its_own_outcome() -> None:
    stream = load("abandoned")
    early = shift(stream, "QueueCallerAbandon", -4.5)  # gone after ~1.5 s in the queue
    config = lab_config()
    m = machine(config)
    row = only_call(rows(decide(m, config, early) + feed_all(m, early)))
    assert row["outcome"] == "short_abandon" and row["wait_s"] < 5


def test_a_queue_timeout_from_the_dialplans_queue_exit_event() -> None:
    stream = load("abandoned")
    abandon = next(ev for _, ev in stream if ev.get("Event") == "QueueCallerAbandon")
    timeout = {
        **abandon,
        "Event": "UserEvent",
        "UserEvent": v.EVENT_QUEUE_EXIT,
        "Status": "TIMEOUT",
    }
    changed = [(s, timeout if ev is abandon else ev) for s, ev in stream]
    config = lab_config()
    m = machine(config)
    row = only_call(rows(decide(m, config, changed) + feed_all(m, changed)))
    assert row["outcome"] == "timeout" and row["hung_up_by"] == "system"


def test_the_agent_hanging_up_first() -> None:
    row = only_call(replay("agent_hangup"))
    assert row["outcome"] == "answered" and row["hung_up_by"] == "agent"
    assert 1.0 < row["talk_s"] < 3


def test_a_call_answered_at_another_site_is_one_call_with_two_legs() -> None:
    tables = replay("cross_site")
    row = only_call(tables)
    assert row["entry_site"] == "bangalore" and row["target_site"] == "dhaka"
    assert row["outcome"] == "answered" and row["language"] == "bn"
    assert row["agent"].startswith("dac-") and row["queue"] == "orders-bn"
    sites = sorted(leg["site"] for leg in tables["legs"].values())
    assert sites == ["bangalore", "dhaka"]
    assert {leg["call_id"] for leg in tables["legs"].values()} == {row["call_id"]}


def test_the_static_fallback_is_recorded_without_the_bridges_decision() -> None:
    row = only_call(replay("fallback"))
    assert row["static_fallback"] is True and row["outcome"] == "answered"
    assert row["did"].startswith("+91")  # from CcbFallback's Did (masked in the fixture)
    assert row["queued_at"] <= row["answered_at"] and row["agent"].startswith("blr-")
    # No decision: where it went is read from the queue it joined.
    assert (row["target_site"], row["queue"]) == ("bangalore", "orders-hi")
    assert (row["service"], row["language"]) == ("orders", "hi")


@pytest.mark.parametrize("seed", range(8))
def test_the_sites_events_in_any_interleaving_give_the_same_row(seed: int) -> None:
    stream = load("cross_site")
    config = lab_config()
    reference = only_call(replay("cross_site", config))
    by_site: dict[str, Stream] = {}
    for site, ev in stream:
        by_site.setdefault(site, []).append((site, ev))
    rnd = random.Random(seed)
    mixed: Stream = []
    queues = list(by_site.values())
    while any(queues):
        q = rnd.choice([q for q in queues if q])
        mixed.append(q.pop(0))
    m = machine(config)
    out = decide(m, config, stream, CALLERS["cross_site"]) + feed_all(m, mixed)
    assert only_call(rows(out)) == reference


def test_events_delivered_twice_change_nothing() -> None:
    """Two bridges (or a replayed journal) see the same events: the same rows and keys."""
    stream = load("cross_site")
    config = lab_config()
    caller = CALLERS["cross_site"]
    m = machine(config)
    once = rows(decide(m, config, stream, caller) + feed_all(m, stream))
    m2 = machine(config)
    doubled = [x for pair in zip(stream, stream, strict=True) for x in pair]
    twice = rows(decide(m2, config, stream, caller) + feed_all(m2, doubled))
    assert twice["calls"] == once["calls"]
    assert twice["call_events"].keys() == once["call_events"].keys()
    assert twice["legs"] == once["legs"]


def test_a_survey_score_reaches_the_call() -> None:
    stream = load("answered")
    last = stream[-1][1]
    at = float(last["Timestamp"]) + 1
    survey: dict[str, str] = {
        "Event": "UserEvent",
        "UserEvent": v.EVENT_SURVEY,
        "Timestamp": f"{at:.6f}",
        "Uniqueid": stream[0][1]["Uniqueid"],
        "Linkedid": stream[0][1]["Linkedid"],
        "CallID": call_id_of(stream),
        "Score": "4",
        "Site": "bangalore",
    }
    config = lab_config()
    m = machine(config)
    out = decide(m, config, stream) + feed_all(m, [*stream, ("bangalore", survey)])
    assert only_call(rows(out))["satisfaction"] == 4
    bad = feed_all(m, [("bangalore", {**survey, "Score": "9"})])
    assert bad == [] and m.skipped[f"bad_{v.EVENT_SURVEY}"] == 1


def test_a_restart_mid_call_writes_no_wrong_summary() -> None:
    """Events of a call whose start this bridge never saw (it was restarted): what they
    teach is written; the outcome of a call it cannot see whole is left out."""
    stream = load("answered")
    cut = next(i for i, (_, ev) in enumerate(stream) if ev.get("Event") == "AgentConnect")
    m = machine()
    row = only_call(rows(feed_all(m, stream[cut + 1 :])))
    assert "outcome" not in row and "answered_at" not in row
    assert row["entry_site"] == "bangalore" and row["ended_at"] > row["arrived_at"]
    # Seen from the agent's answer on: answered is certain, the wait is not known.
    m = machine()
    row = only_call(rows(feed_all(m, stream[cut:])))
    assert row["outcome"] == "answered" and "wait_s" not in row and row["talk_s"] > 1


def test_ended_calls_are_forgotten_after_the_linger() -> None:
    m = machine(linger=60.0)  # the default is shorter
    stream = load("answered")
    feed_all(m, stream)
    assert len(m.calls) == 1
    end = datetime.fromtimestamp(float(stream[-1][1]["Timestamp"]), UTC)
    assert m.sweep(end + timedelta(seconds=30)) == 0
    assert m.sweep(end + timedelta(seconds=61)) == 1 and not m.calls
    assert m.dropped_calls == 0


def test_memory_is_bounded() -> None:
    m = machine(max_calls=3)
    base = load("answered")
    join = next(ev for _, ev in base if ev.get("Event") == "QueueCallerJoin")
    for i in range(10):
        cid = callid.make("bangalore", T0 + timedelta(seconds=i), i)
        m.feed("bangalore", {**join, "ChanVariable": f"CCB_CALLID={cid}", "Linkedid": f"l{i}"}, T0)
    assert len(m.calls) <= 3 and m.dropped_calls == 10 - len(m.calls)
    assert f"{callid.make('bangalore', T0 + timedelta(seconds=9), 9)}" in m.calls  # the newest


def test_every_record_passes_the_stores_checks() -> None:
    config = lab_config()
    for name in STREAMS:
        m = machine(config)
        stream = load(name)
        out: list[Out] = decide(m, config, stream) + feed_all(m, stream)
        assert checked(out)


@pytest.mark.parametrize(
    "text",
    ["", "bangalore", "bangalore:1795888704.136558", "Bangalore:1795888704.136558:0",
     "bangalore:1795888704.13655:0", "x" * 70, "bangalore:1795888704.136558:0\x00"],
)  # fmt: skip
def test_call_ids_the_dialplan_does_not_write_are_refused(text: str) -> None:
    assert callid.parse(text) is None


def test_call_id_round_trip() -> None:
    at = datetime(2026, 11, 28, 17, 58, 24, 136558, tzinfo=UTC)
    text = callid.make("dhaka", at, 42)
    assert text == "dhaka:1795888704.136558:42"
    cid = callid.parse(text)
    assert cid is not None and cid.entry_site == "dhaka" and cid.arrived_at == at


def _like(ev: dict[str, str], name: str, at: float, **fields: str) -> dict[str, str]:
    """A recorded event's channel snapshot (call ID, linkedid) as another event."""
    out = {k: ev[k] for k in ("Channel", "Uniqueid", "Linkedid", "ChanVariable") if k in ev}
    return {**out, "Event": name, "Timestamp": f"{at:.6f}", **fields}


def _with(stream: Stream, after: str, extra: list[dict[str, str]]) -> Stream:
    """The stream with ``extra`` events (bangalore's) right after the first ``after``."""
    i = next(i for i, (_, ev) in enumerate(stream) if ev.get("Event") == after)
    return [*stream[: i + 1], *(("bangalore", e) for e in extra), *stream[i + 1 :]]


def _replay(stream: Stream) -> dict[str, Any]:
    config = lab_config()
    m = machine(config)
    return only_call(rows(decide(m, config, stream) + feed_all(m, stream)))


def test_hold_is_taken_out_of_talk() -> None:
    stream = load("answered")
    connect = next(ev for _, ev in stream if ev.get("Event") == "AgentConnect")
    t = float(connect["Timestamp"])
    held = _with(
        stream,
        "AgentConnect",
        [_like(connect, "Hold", t + 0.5, MusicClass="default"), _like(connect, "Unhold", t + 1.2)],
    )
    plain, row = _replay(stream), _replay(held)
    assert row["hold_s"] == pytest.approx(0.7, abs=1e-6)
    assert row["talk_s"] == pytest.approx(plain["talk_s"] - 0.7, abs=1e-6)


def test_ring_no_answers_count_on_the_leg() -> None:
    stream = load("answered")
    called = next(ev for _, ev in stream if ev.get("Event") == "AgentCalled")
    t = float(called["Timestamp"])
    rna = [
        {
            **called,
            "Event": "AgentRingNoAnswer",
            "Timestamp": f"{t + 0.01 * i:.6f}",
            "RingTime": "15",
        }
        for i in (1, 2)
    ]
    config = lab_config()
    m = machine(config)
    tables = rows(decide(m, config, stream) + feed_all(m, _with(stream, "AgentCalled", rna)))
    (leg,) = tables["legs"].values()
    assert leg["ring_no_answers"] == 2
    assert event_names(tables).count("AgentRingNoAnswer") == 2


def test_trunk_failovers_and_the_ivr_path_reach_the_call() -> None:
    stream = load("answered")
    join = next(ev for _, ev in stream if ev.get("Event") == "QueueCallerJoin")
    t = float(join["Timestamp"]) - 0.5
    ue = {"Event": "UserEvent"}
    extra = [
        _like(join, "UserEvent", t, **ue, UserEvent=v.EVENT_IVR, Menu="main", Step="2"),
        _like(join, "UserEvent", t + 0.1, **ue, UserEvent=v.EVENT_IVR, Menu="main", Step="final"),
        _like(join, "UserEvent", t + 0.2, **ue, UserEvent=v.EVENT_TRUNK_RESULT,
              Trunk="blr-dac", DialStatus="CHANUNAVAIL"),
        _like(join, "UserEvent", t + 0.3, **ue, UserEvent=v.EVENT_TRUNK_RESULT,
              Trunk="blr-dac-2", DialStatus="ANSWER"),
    ]  # fmt: skip
    row = _replay([*(("bangalore", e) for e in extra), *stream])
    assert row["ivr_path"] == ["main:2", "main:final"]
    assert row["trunk_failovers"] == 1 and row["outcome"] == "answered"


@pytest.mark.parametrize(
    ("action", "outcome"),
    [("voicemail", "after_hours_voicemail"), ("callback", "after_hours_callback"),
     ("closed", "closed")],
)  # fmt: skip
def test_after_hours_actions(action: str, outcome: str) -> None:
    stream = load("abandoned")  # its channel: a call that reaches no agent
    join = next(ev for _, ev in stream if ev.get("Event") == "QueueCallerJoin")
    end = next(ev for _, ev in stream if ev.get("Event") == "CEL")
    t = float(join["Timestamp"])
    after_hours = _like(
        join, "UserEvent", t, UserEvent=v.EVENT_AFTER_HOURS, Action=action, Site="bangalore"
    )
    row = _replay([("bangalore", after_hours), ("bangalore", end)])
    assert row["outcome"] == outcome and row["after_hours_action"] == action
    assert "wait_s" not in row and "queued_at" not in row


def test_a_call_that_never_ends_is_dropped_after_idle_and_counted() -> None:
    m = machine(idle=600.0)
    stream = load("abandoned")
    feed_all(m, [x for x in stream if x[1].get("Event") != "CEL"])  # its end never came
    seen = datetime.fromtimestamp(float(stream[-1][1]["Timestamp"]), UTC)
    assert m.sweep(seen + timedelta(seconds=60)) == 0 and len(m.calls) == 1
    assert m.sweep(seen + timedelta(seconds=700)) == 1 and not m.calls
    assert m.dropped_calls == 1


class _Event(dict[str, str]):
    """An AMI event with repeated ChanVariable lines, as the codec gives them."""

    def __init__(self, fields: dict[str, str], chan_vars: list[str]) -> None:
        super().__init__(fields)
        self._vars = chan_vars

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key == "ChanVariable":
            return self._vars[0] if self._vars else default
        return super().get(key, default)

    def getall(self, key: str) -> list[str]:
        return list(self._vars) if key == "ChanVariable" else [self[key]]


def _marked(stream: Stream, held: str) -> list[tuple[str, Any]]:
    """The stream as manager.conf's channelvars now give it: CCB_CALLID and CCB_HELD."""
    out: list[tuple[str, Any]] = []
    for site, ev in stream:
        var = ev.get("ChanVariable")
        out.append((site, _Event(ev, [var, f"{v.HELD_SOURCE}={held}"] if var else [])))
    return out


def test_the_route_source_of_each_path() -> None:
    """calls.route_source: the bridge's decision, the static fallback, and what the
    dialplan's CCB_HELD says of a held route (taken without asking the bridge, or after
    it did not answer, which wins over a decision the PBX never received)."""
    assert only_call(replay("answered"))["route_source"] == "bridge"
    assert only_call(replay("fallback"))["route_source"] == "static"
    config = lab_config()
    stream = load("answered")
    m = machine(config)
    held = only_call(rows(feed_all(m, _marked(stream, v.HELD_FRESH))))
    assert held["route_source"] == "held" and held["outcome"] == "answered"
    assert "reasons" not in held  # no decision was made
    m = machine(config)
    out = decide(m, config, stream) + feed_all(m, _marked(stream, v.HELD_FALLBACK))
    assert only_call(rows(out))["route_source"] == "fallback"
    # ccb-inbound's fresh route sets no variable: a queue joined with no decision, no
    # fallback event and no CCB_HELD before it is the fresh held route.
    m = machine(config)
    fresh = only_call(rows(feed_all(m, stream)))
    assert fresh["route_source"] == "held" and fresh["outcome"] == "answered"
    # A value the dialplan does not write is no source: the decision's stays.
    m = machine(config)
    out = decide(m, config, stream) + feed_all(m, _marked(stream, "x" * 40))
    assert only_call(rows(out))["route_source"] == "bridge"
