"""Property tests of what a decision reads (engine.site_inputs, engine.reads_sticky): the
held-route publisher reuses a decision while these stay the same (ccbridge/heldroutes.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from ccbridge.routing.engine import CallRequest, reads_sticky, site_inputs
from ccbridge.routing.state import Caller, LiveState, QueueLoad, SiteState
from tests.unit.test_routing_properties import CFG, ROUTER, SITES, calls, instants, states


@settings(max_examples=50, deadline=None)
@given(data=st.data(), now=instants, call=calls)
def test_a_decision_that_reads_no_sticky_site_is_the_same_whatever_the_sticky_sites(
    data: st.DataObject, now: datetime, call: CallRequest
) -> None:
    state = data.draw(states(now))
    d = ROUTER.decide(call, state, now)
    other = data.draw(
        st.dictionaries(
            st.tuples(st.sampled_from(CFG.services), st.sampled_from(CFG.languages)),
            st.sampled_from(SITES),
        )
    )
    moved = ROUTER.decide(call, replace(state, sticky=other), now)
    if not reads_sticky(d):
        assert moved == d
    elif d.service is not None and d.language is not None:
        # It read its own pair's sticky site and no other.
        own = (d.service, d.language)
        kept = {p: site for p, site in other.items() if p != own}
        if own in state.sticky:
            kept[own] = state.sticky[own]
        assert ROUTER.decide(call, replace(state, sticky=kept), now) == d


def _unread(q: QueueLoad, talk: float, hold: float, count: int) -> QueueLoad:
    """``q`` with what the decision does not read of it changed (and with nobody logged
    in, everything but that)."""
    q = replace(
        q,
        avg_hold=hold,
        completed=count,
        abandoned=count,
        member_count=count,
        callers=(Caller("x", 1.0),) * min(count, 2),
        longest_wait_since=float(count),
    )
    if q.logged_in <= 0:
        return replace(q, available=count, paused=count, waiting=count, avg_talk=talk)
    if q.available > 0 and q.waiting == 0:
        return replace(q, avg_talk=talk)  # no wait to expect: the handle time is unread
    return q


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    now=instants,
    call=calls,
    talk=st.sampled_from([0.0, 45.0, 900.0]),
    hold=st.sampled_from([0.0, 12.0]),
    count=st.integers(0, 9),
)
def test_sites_with_equal_inputs_give_equal_decisions(
    data: st.DataObject, now: datetime, call: CallRequest, talk: float, hold: float, count: int
) -> None:
    state = data.draw(states(now))
    sites: dict[str, SiteState] = {}
    for name, s in state.sites.items():
        queues = {n: _unread(q, talk, hold, count) for n, q in s.queues.items()}
        sites[name] = replace(s, queues=queues, members={})
    other = LiveState(sites, state.synced, state.sticky, state.unhealthy_trunks)
    for name in SITES:
        assert site_inputs(other.sites[name]) == site_inputs(state.sites[name])
    assert ROUTER.decide(call, other, now) == ROUTER.decide(call, state, now)


def test_site_inputs_tell_apart_what_the_score_is_made_of() -> None:
    q = QueueLoad(logged_in=3, available=0, paused=0, waiting=2, avg_talk=60.0)
    s = SiteState("blr", up=True, up_since=0.0, synced=True, queues={"orders-en": q})
    base = site_inputs(s)
    assert site_inputs(None) is None
    for changed in (
        replace(q, avg_talk=90.0),  # the expected wait
        replace(q, waiting=3),
        replace(q, paused=1),
        replace(q, logged_in=0, available=0, paused=0),  # unstaffed: as absent
    ):
        assert site_inputs(replace(s, queues={"orders-en": changed})) != base
    for site_changed in (
        replace(s, up=False),
        replace(s, drained=True),
        replace(s, up_since=5.0),
        replace(s, synced=False),
    ):
        assert site_inputs(site_changed) != base
