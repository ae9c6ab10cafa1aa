"""Recorded AMI events mutated by hypothesis: the record machine skips and counts what it
cannot use, never raises, and never emits a record the store would refuse."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccbridge.records.machine import RecordMachine
from tests.unit.records_streams import STREAMS, T0, checked, lab_config, load, machine

CONFIG = lab_config()
ALL = [(name, i) for name in STREAMS for i in range(len(load(name)))]
EVENTS = {name: load(name) for name in STREAMS}
KEYS = sorted({k for name in STREAMS for _, ev in EVENTS[name] for k in ev})

garbage = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(
        ["", "\x00", "-1", "nan", "inf", "1e309", "99999999999999", "CCB_CALLID=",
         "CCB_CALLID=x:1:2", "CCB_CALLID=bangalore:1795888704.136558:0\x00", "\ud800",
         "caller", "agent", "6", "0"]
    ),
)  # fmt: skip

mutation = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("set"), st.sampled_from(KEYS), garbage),
    st.tuples(st.just("add"), st.text(min_size=1, max_size=12), garbage),
)


def mutate(ev: dict[str, str], changes: list[tuple[str, str, Any]]) -> dict[str, str]:
    out = dict(ev)
    for op, key, value in changes:
        if op == "drop":
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _whole_stream(m: RecordMachine, name: str) -> list[Any]:
    out: list[Any] = []
    for site, ev in EVENTS[name]:
        out += m.feed(site, ev, T0)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(
        st.tuples(st.sampled_from(ALL), st.lists(mutation, min_size=1, max_size=4)),
        min_size=1,
        max_size=12,
    ),
    name=st.sampled_from(STREAMS),
)
def test_mutated_events_are_skipped_or_recorded_never_corrupt(
    picks: list[tuple[tuple[str, int], list[tuple[str, str, Any]]]], name: str
) -> None:
    m = machine(CONFIG)
    out = _whole_stream(m, name)  # a real call in flight, then garbage among its events
    before = sum(m.skipped.values()) + m.events
    for (stream, i), changes in picks:
        site, ev = EVENTS[stream][i]
        out += m.feed(site, mutate(ev, changes), T0)
    # Every event was either used or skipped with a reason, and counted.
    assert sum(m.skipped.values()) + m.events == before + len(picks)
    checked(out)  # RecordError here would be a corrupt record
    for why in m.skipped:
        assert why.replace("_", "").isalnum()  # bounded metric label values


@settings(max_examples=100, deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from(KEYS), garbage, max_size=20),
    event=st.sampled_from(
        ["QueueCallerJoin", "AgentConnect", "AgentComplete", "QueueCallerAbandon", "CEL",
         "UserEvent", "Hold", "Unhold", "AgentRingNoAnswer"]
    ),
)  # fmt: skip
def test_events_of_pure_garbage(fields: dict[str, str], event: str) -> None:
    m = machine(CONFIG)
    out = m.feed("bangalore", {**fields, "Event": event}, T0)
    checked(out)
    assert m.events + sum(m.skipped.values()) == 1
