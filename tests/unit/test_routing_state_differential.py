"""The live-state reducer against its previous version (tests/unit/state_oracle.py).

The same event streams go through both, and the states must be equal after every event:
the recorded sequences of the fixture file, a generated contact-centre stream parsed from
bytes by the AMI codec (as the link delivers it), and random streams from hypothesis
(members joining, changing, leaving, callers joining and leaving in any order, resyncs,
malformed numbers). The oracle copies dicts; the reducer under test uses persistent maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ccbridge.ami.codec import AmiParser
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config, load_config
from ccbridge.routing import state as new
from tests.bench.bench_ami_parse import generate_stream
from tests.unit import state_oracle as old
from tests.unit.test_routing_state import FIXTURES, T0, events


def norm(state: Any) -> Any:
    """A state as plain values, whichever mapping types hold it."""

    def values(m: Mapping[Any, Any]) -> dict[Any, Any]:
        # The two modules have their own QueueLoad and Member classes: compare as tuples.
        return {k: tuple(v) if isinstance(v, tuple) else astuple(v) for k, v in m.items()}

    def site(s: Any) -> Any:
        pending = None
        if s.pending is not None:
            pending = (values(s.pending.queues), values(s.pending.members))
        return (
            s.name,
            s.up,
            s.drained,
            s.up_since,
            s.synced,
            values(s.queues),
            values(s.members),
            pending,
        )

    return (
        {name: site(s) for name, s in state.sites.items()},
        state.synced,
        dict(state.sticky),
        state.unhealthy_trunks,
    )


def replay(stream: Sequence[tuple[str, Any]], sites: Sequence[str] = ("blr", "dac")) -> int:
    """Run ``stream`` of (op, arg) through both reducers, comparing after every step."""
    a: Any = old.initial_state(sites)
    b: Any = new.initial_state(sites)
    now = T0
    for op, arg in stream:
        now += 1.0
        if op == "event":
            site, ev = arg
            a, b = old.apply_event(a, site, ev, now), new.apply_event(b, site, ev, now)
        elif op == "up":
            site, up = arg
            a, b = old.set_site_up(a, site, up, now), new.set_site_up(b, site, up, now)
        elif op == "begin":
            a, b = old.begin_sync(a, arg), new.begin_sync(b, arg)
        elif op == "complete":
            a, b = old.complete_sync(a, arg), new.complete_sync(b, arg)
        assert norm(b) == norm(a), (op, arg)
    return len(stream)


def test_recorded_sequences_give_equal_states() -> None:
    stream: list[tuple[str, Any]] = [("up", ("blr", True)), ("begin", "blr")]
    stream += [("event", ("blr", ev)) for ev in events("queuestatus_reply")]
    for name in FIXTURES:
        if name != "queuestatus_reply":
            stream += [("event", ("blr", ev)) for ev in events(name)]
    assert replay(stream) >= 30


def test_a_generated_stream_parsed_from_bytes_gives_equal_states() -> None:
    data, count = generate_stream(calls=400, agents=30, queues=12)
    parsed = AmiParser().feed(data)
    assert len(parsed) == count
    stream: list[tuple[str, Any]] = [("up", ("blr", True))]
    stream += [("event", ("blr", ev)) for ev in parsed]
    assert replay(stream) == count + 1


QUEUES = ("q1", "q2", "q3")
IFACES = ("PJSIP/a1", "PJSIP/a2", "PJSIP/a3", "PJSIP/a4")
NUMBER = st.one_of(st.integers(0, 9).map(str), st.sampled_from(["", "x", " 1", "-1"]))
FLAG = st.sampled_from(["0", "1", "true", "no", " Yes", ""])


def _event(name: str, **fields: st.SearchStrategy[str]) -> st.SearchStrategy[Mapping[str, str]]:
    base = {"Event": st.just(name), "Queue": st.sampled_from(QUEUES)}
    return st.fixed_dictionaries(base, optional={**fields})  # type: ignore[arg-type]


member = {
    "MemberName": st.sampled_from(["Ann", "Bo"]),
    "Interface": st.sampled_from(IFACES),
    "Status": NUMBER,
    "Paused": FLAG,
    "InCall": FLAG,
    "Penalty": NUMBER,
}
status_item = {
    "Name": st.sampled_from(["Ann", "Bo"]),
    "Location": st.sampled_from(IFACES),
    "Status": NUMBER,
    "Paused": FLAG,
}
caller = {
    "Uniqueid": st.sampled_from(["1.1", "1.2", "1.3"]),
    "Position": NUMBER,
    "Count": NUMBER,
}
EVENTS = st.one_of(
    *[
        _event(n, **member)
        for n in (
            "QueueMemberAdded",
            "QueueMemberStatus",
            "QueueMemberPause",
            "QueueMemberPenalty",
            "QueueMemberRinginuse",
            "QueueMemberRemoved",
        )
    ],
    _event("QueueMember", **status_item),
    _event("QueueParams", Calls=NUMBER, Holdtime=NUMBER, TalkTime=NUMBER, Completed=NUMBER),
    _event("QueueEntry", Uniqueid=st.sampled_from(["1.1", "1.2"]), Wait=NUMBER),
    _event("QueueCallerJoin", **caller),
    _event("QueueCallerLeave", **caller),
    _event("QueueCallerAbandon", **caller),
    _event("AgentConnect", HoldTime=NUMBER),
    _event("AgentComplete", TalkTime=NUMBER),
    _event(
        "QueueSummary",
        Callers=NUMBER,
        LoggedIn=NUMBER,
        Available=NUMBER,
        HoldTime=NUMBER,
        LongestHoldTime=NUMBER,
    ),
    st.just({"Event": "QueueStatusComplete"}),
    st.just({"Event": "Newexten"}),
)
SITE = st.sampled_from(["blr", "dac", "mnl"])  # mnl is not configured: created on the fly
STEP = st.one_of(
    st.tuples(st.just("event"), st.tuples(SITE, EVENTS)),
    st.tuples(st.just("up"), st.tuples(SITE, st.booleans())),
    st.tuples(st.just("begin"), SITE),
    st.tuples(st.just("complete"), SITE),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=60))
def test_random_streams_give_equal_states(stream: list[tuple[str, Any]]) -> None:
    replay(stream)


def test_the_oracle_is_the_dict_version() -> None:
    """Guards against the oracle being edited into the new reducer by mistake."""
    state = old.apply_event(old.initial_state(["blr"]), "blr", events("answered_call")[0], T0)
    assert type(state.sites["blr"].members) is dict
    state = new.apply_event(new.initial_state(["blr"]), "blr", events("answered_call")[0], T0)
    assert type(state.sites["blr"].members) is not dict


class _SetClock(Clock):
    """The bridge's clock, set by the test: the oracle gets the same ``now``."""

    def __init__(self) -> None:
        super().__init__()
        self.now_s = T0

    def time(self) -> float:
        return self.now_s


@lru_cache(maxsize=1)
def _lab_config() -> Config:
    return load_config(
        Path(__file__).resolve().parents[2] / "examples" / "lab.yaml", resolve_secrets=False
    )


BRIDGE_SITE = st.sampled_from(["bangalore", "dhaka", "mnl"])  # mnl: not configured
BRIDGE_STEP = st.one_of(
    st.tuples(st.just("event"), st.tuples(BRIDGE_SITE, EVENTS)),
    st.tuples(st.just("event"), st.tuples(BRIDGE_SITE, EVENTS)),
    st.tuples(st.just("read"), st.none()),
    st.tuples(st.just("up"), st.tuples(BRIDGE_SITE, st.booleans())),
    st.tuples(st.just("begin"), BRIDGE_SITE),
    st.tuples(st.just("complete"), BRIDGE_SITE),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(BRIDGE_STEP, max_size=60))
def test_the_bridges_event_path_matches_and_never_changes_a_snapshot_read(
    stream: list[tuple[str, Any]],
) -> None:
    """The bridge applies events to each site's open copies of its maps between reads
    (app.Bridge._state_handler), resyncs and link changes in between: the states stay
    equal to the oracle's, and every snapshot a reader took is as it was when read,
    whatever came after."""
    clock = _SetClock()
    bridge = Bridge(_lab_config(), clock)
    a: Any = old.initial_state(s.name for s in _lab_config().sites)
    seen: list[tuple[Any, Any]] = []
    for op, arg in stream:
        clock.now_s += 1.0
        if op == "event":
            site, ev = arg
            if ev["Event"] in new.HANDLED_EVENTS:  # the bus carries live events only
                a = old.apply_event(a, site, ev, clock.now_s)
            bridge.bus.dispatch(site, ev)
        elif op == "up":
            site, up = arg
            a = old.set_site_up(a, site, up, clock.now_s)
            bridge.state = new.set_site_up(bridge.state, site, up, clock.now_s)
        elif op == "begin":  # a resync starting, while events keep coming
            a = old.begin_sync(a, arg)
            bridge.state = new.begin_sync(bridge.state, arg)
        elif op == "complete":
            a = old.complete_sync(a, arg)
            bridge.state = new.complete_sync(bridge.state, arg)
        else:
            snapshot = bridge.state
            assert norm(snapshot) == norm(a)
            seen.append((snapshot, norm(snapshot)))
    assert norm(bridge.state) == norm(a)
    for snapshot, as_read in seen:
        assert norm(snapshot) == as_read


def test_the_bridge_makes_no_snapshot_per_event_only_per_read() -> None:
    """Between two reads the events change the site's open maps, not a new LiveState
    each (the cost that grew with the site's members); a read makes one snapshot, and
    the next events leave it as it was."""
    clock = _SetClock()
    bridge = Bridge(_lab_config(), clock)
    stream, _ = generate_stream(40, agents=20, queues=4)
    parsed = [dict(m) for m in AmiParser().feed(stream)]
    before = bridge._state
    for ev in parsed:
        bridge.bus.dispatch("bangalore", ev)
    assert bridge._state is before  # nothing built per event
    first = bridge.state
    assert first is not before
    assert first.sites["bangalore"].members  # the events' members are in it
    as_read = norm(first)
    oracle: Any = old.initial_state(s.name for s in _lab_config().sites)
    for ev in parsed:
        oracle = old.apply_event(oracle, "bangalore", ev, clock.now_s)
    assert as_read == norm(oracle)
    for ev in parsed:
        bridge.bus.dispatch("bangalore", ev)
    assert norm(first) == as_read  # the snapshot read never changes
    assert bridge.state is not first
    assert bridge.state is bridge.state  # a read with nothing new makes nothing new
