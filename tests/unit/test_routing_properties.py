"""Property tests: whatever the state and time, a queued call goes to a site that can take it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ccbridge.config.model import queue_name
from ccbridge.routing.engine import CallRequest, Router
from ccbridge.routing.schedule import is_open
from ccbridge.routing.state import LiveState, QueueLoad, SiteState
from tests.unit.routing_factories import LAB_QUEUES as QUEUES
from tests.unit.routing_factories import lab

ROUTER = lab()

CFG = ROUTER.config
# The same engine asking the schedule every time (a fresh Router per call cost 3 s here).
UNMEMOISED = Router(CFG)
UNMEMOISED._minute_ok = False
SITES = [s.name for s in CFG.sites]
TRUNKS = [t.name for t in CFG.trunks]
HOLDOFF = CFG.routing.site_holdoff

loads = st.builds(
    lambda logged, avail, paused, waiting, talk: QueueLoad(
        logged_in=logged,
        available=min(avail, logged - min(paused, logged)),
        paused=min(paused, logged),
        waiting=waiting,
        member_count=logged,
        avg_talk=talk,
    ),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(0, 12),
    st.sampled_from([0.0, 30.0, 120.0, 600.0]),
)
instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@st.composite
def states(draw: st.DrawFn, now: datetime) -> LiveState:
    sites = {}
    for name in SITES:
        up = draw(st.booleans())
        sites[name] = SiteState(
            name,
            up=up,
            drained=draw(st.booleans()),
            up_since=now.timestamp() - draw(st.sampled_from([0, 5, 9.99, 10, 3600]))
            if up
            else None,
            synced=up and draw(st.booleans()),
            queues=draw(st.dictionaries(st.sampled_from(QUEUES), loads)),
        )
    sticky = draw(
        st.dictionaries(
            st.tuples(st.sampled_from(CFG.services), st.sampled_from(CFG.languages)),
            st.sampled_from(SITES),
        )
    )
    synced = all(s.synced for s in sites.values() if s.up)
    return LiveState(sites, synced, sticky, frozenset(draw(st.lists(st.sampled_from(TRUNKS)))))


calls = st.builds(
    CallRequest,
    did=st.sampled_from([n.did for n in CFG.numbers] + ["+10000000000"]),
    caller=st.sampled_from(
        [
            "+447700900123",
            "+919812345678",
            "+8801712345678",
            "+923001234567",
            "+639171234567",
            "anonymous",
            "0012025550123",
        ]
    ),
    receiving_site=st.sampled_from(SITES),
    ivr_language=st.sampled_from([None, "en", "hi", "bn", "tl", "ur", "fr"]),
    service=st.sampled_from([None, "orders", "returns"]),
)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), now=instants, call=calls)
def test_queued_calls_go_to_a_site_that_can_take_them(
    data: st.DataObject, now: datetime, call: CallRequest
) -> None:
    state = data.draw(states(now))
    d = ROUTER.decide(call, state, now)
    assert d.outcome in {"queue", "after_hours", "reject"}
    if d.outcome == "reject":
        assert d.reasons == ("unknown_did",) and CFG.number(call.did) is None
        return
    assert d.service is not None and d.language is not None
    if d.site is None:
        assert d.outcome == "after_hours" and d.queue is None and d.trunks == ()
        return
    s = state.sites[d.site]
    offer = CFG.site(d.site).offering(d.service)
    assert offer is not None and d.language in offer.languages
    assert d.queue == queue_name(d.service, d.language)
    assert s.up and not s.drained
    assert s.up_since is not None and now.timestamp() - s.up_since >= HOLDOFF
    configured = [t.name for t in CFG.trunks_between(call.receiving_site, d.site)]
    assert list(d.trunks) == [t for t in configured if t in d.trunks]
    assert (d.trunks == ()) == (d.site == call.receiving_site)
    if d.outcome == "after_hours":
        assert d.action == "site" and d.site == CFG.routing.after_hours.site
        return
    assert is_open(offer.schedule, CFG.site(d.site).timezone, now).open
    if s.synced:
        q = s.queues.get(d.queue)
        assert q is not None and q.logged_in > 0
    else:
        assert "schedule_only" in d.reasons


@settings(max_examples=150, deadline=None)
@given(data=st.data(), now=instants, call=calls, step=st.integers(0, 7200))
def test_memoised_router_agrees_with_a_fresh_one(
    data: st.DataObject, now: datetime, call: CallRequest, step: int
) -> None:
    # The schedule memo inside Router must never change an answer. It keeps two minutes a
    # site and service (a held-route pass asks for now and the next boundary in turn):
    # going back to the first, and on to a third, must answer as a fresh router does.
    state = data.draw(states(now))
    later = now + timedelta(seconds=step)
    third = later + timedelta(seconds=step + 60)
    ROUTER.decide(call, state, now)
    assert ROUTER.decide(call, state, later) == Router(CFG).decide(call, state, later)
    for at in (now, third, later):
        assert ROUTER.decide(call, state, at) == UNMEMOISED.decide(call, state, at)
