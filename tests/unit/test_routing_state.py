"""The live-state reducer, driven by recorded AMI event sequences."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from ccbridge.routing.state import (
    DEFAULT_HANDLE_TIME,
    Caller,
    LiveState,
    Member,
    QueueLoad,
    apply_event,
    apply_events,
    begin_sync,
    complete_sync,
    ewt,
    initial_state,
    set_drained,
    set_site_up,
    set_sticky,
    set_trunk_health,
)

FIXTURES = yaml.safe_load(
    (Path(__file__).parent / "fixtures" / "ami_queue_events.yaml").read_text(encoding="utf-8")
)
T0 = 1_736_150_000.0


def events(name: str) -> list[Mapping[str, str]]:
    return [{k: str(v) for k, v in ev.items()} for ev in FIXTURES[name]]


def up(*names: str) -> LiveState:
    state = initial_state(names)
    for n in names:
        state = set_site_up(state, n, True, T0)
    return state


def synced_blr() -> LiveState:
    state = begin_sync(up("blr", "dac"), "blr")
    return apply_events(state, "blr", events("queuestatus_reply"), T0 + 100)


def test_full_sync_builds_queue_loads() -> None:
    state = synced_blr()
    blr = state.sites["blr"]
    assert blr.synced and blr.pending is None
    q = blr.queues["orders-en"]
    # agent3 is UNAVAILABLE (not logged in), agent2 paused, agent4 INUSE, agent1 free.
    assert (q.member_count, q.logged_in, q.paused, q.available) == (4, 3, 1, 1)
    assert q.waiting == 2
    assert q.callers == (Caller("1736150400.17", T0 + 60), Caller("1736150420.18", T0 + 80))
    assert q.longest_wait_since == T0 + 60
    assert (q.avg_hold, q.avg_talk, q.completed, q.abandoned) == (25.0, 140.0, 31, 4)
    assert blr.queues["orders-hi"] == QueueLoad()
    assert blr.members[("orders-en", "PJSIP/blr-agent2")] == Member(
        "blr-agent2", "PJSIP/blr-agent2", status=1, paused=True
    )
    # dac is up but has not synced yet, so the whole picture is not synced.
    assert not state.synced
    assert not state.sites["dac"].synced


def test_sync_data_is_invisible_until_complete() -> None:
    state = begin_sync(up("blr"), "blr")
    reply = events("queuestatus_reply")
    state = apply_events(state, "blr", reply[:-1], T0)
    assert dict(state.sites["blr"].queues) == {}
    assert not state.synced
    state = apply_event(state, "blr", reply[-1], T0)
    assert set(state.sites["blr"].queues) == {"orders-en", "orders-hi"}
    assert state.synced


def test_resync_replaces_old_queue_data() -> None:
    state = apply_events(synced_blr(), "blr", events("answered_call"), T0)
    assert "orders-hi" in state.sites["blr"].queues
    assert ("orders-hi", "PJSIP/blr-agent1") in state.sites["blr"].members
    reply = [ev for ev in events("queuestatus_reply") if ev.get("Queue") != "orders-hi"]
    state = apply_events(begin_sync(state, "blr"), "blr", reply, T0 + 500)
    assert set(state.sites["blr"].queues) == {"orders-en"}
    assert ("orders-hi", "PJSIP/blr-agent1") not in state.sites["blr"].members


def test_list_items_without_begin_sync_merge_into_live_data() -> None:
    state = apply_events(up("blr"), "blr", events("queuestatus_reply"), T0)
    assert state.sites["blr"].queues["orders-en"].logged_in == 3
    assert not state.sites["blr"].synced  # only begin/complete_sync make a site synced


def test_answered_call_sequence() -> None:
    state = up("blr")
    seen: list[tuple[int, int, int]] = []
    for i, ev in enumerate(events("answered_call")):
        state = apply_event(state, "blr", ev, T0 + i)
        q = state.sites["blr"].queues["orders-hi"]
        seen.append((q.logged_in, q.available, q.waiting))
    assert seen == [
        (1, 1, 0),  # added, free
        (1, 1, 1),  # caller joins
        (1, 1, 1),  # AgentCalled: ignored
        (1, 0, 1),  # RINGING
        (1, 0, 1),  # connect
        (1, 0, 0),  # caller leaves the queue
        (1, 0, 0),  # INUSE
        (1, 0, 0),  # complete
        (1, 1, 0),  # NOT_INUSE again
    ]
    q = state.sites["blr"].queues["orders-hi"]
    assert (q.avg_hold, q.avg_talk, q.completed) == (12.0, 200.0, 1)
    assert q.callers == () and q.longest_wait_since is None


def test_ewma_updates_seeded_averages() -> None:
    state = synced_blr()
    state = apply_event(
        state, "blr", {"Event": "AgentComplete", "Queue": "orders-en", "TalkTime": "200"}, T0
    )
    state = apply_event(
        state, "blr", {"Event": "AgentConnect", "Queue": "orders-en", "HoldTime": "5"}, T0
    )
    q = state.sites["blr"].queues["orders-en"]
    assert q.avg_talk == pytest.approx(140 + 0.25 * (200 - 140))
    assert q.avg_hold == pytest.approx(25 + 0.25 * (5 - 25))


def test_abandoned_call_sequence() -> None:
    state = up("blr")
    for i, ev in enumerate(events("abandoned_call")):
        state = apply_event(state, "blr", ev, T0 + 10 * i)
    q = state.sites["blr"].queues["orders-en"]
    assert (q.waiting, q.abandoned) == (1, 1)
    assert q.callers == (Caller("1736150605.31", T0 + 10),)
    assert q.longest_wait_since == T0 + 10


def test_pause_and_remove_sequence() -> None:
    state = up("blr")
    counts = []
    for ev in events("pause_and_remove"):
        state = apply_event(state, "blr", ev, T0)
        q = state.sites["blr"].queues["returns-en"]
        counts.append((q.member_count, q.logged_in, q.available, q.paused))
    assert counts == [(1, 1, 1, 0), (1, 1, 0, 1), (1, 1, 1, 0), (0, 0, 0, 0)]
    assert dict(state.sites["blr"].members) == {}


def test_queue_summary_without_member_detail() -> None:
    state = apply_events(up("blr"), "blr", events("queue_summary"), T0)
    q = state.sites["blr"].queues["returns-hi"]
    assert (q.logged_in, q.available, q.waiting) == (3, 1, 2)
    assert q.longest_wait_since == T0 - 45
    assert (q.avg_hold, q.avg_talk) == (30.0, 150.0)


def test_queue_summary_does_not_override_member_counts() -> None:
    state = synced_blr()
    summary = {"Event": "QueueSummary", "Queue": "orders-en", "LoggedIn": "9", "Available": "9"}
    summary |= {"Callers": "0", "HoldTime": "0", "TalkTime": "0", "LongestHoldTime": "0"}
    q = apply_event(state, "blr", summary, T0).sites["blr"].queues["orders-en"]
    assert (q.logged_in, q.available, q.waiting) == (3, 1, 0)


def test_updates_share_unchanged_parts() -> None:
    before = synced_blr()
    after = apply_event(before, "blr", events("answered_call")[1], T0)
    assert after is not before
    assert after.sites["dac"] is before.sites["dac"]
    assert after.sites["blr"].members is before.sites["blr"].members
    assert after.sites["blr"].queues["orders-en"] is before.sites["blr"].queues["orders-en"]
    assert before.sites["blr"].queues["orders-hi"].waiting == 0  # the old snapshot is intact


@pytest.mark.parametrize(
    "event",
    [
        {"Event": "FullyBooted"},
        {"Event": "QueueSummaryComplete"},
        {"Event": "QueueMemberStatus", "Queue": "orders-en"},  # no interface
        {"Event": "AgentComplete", "Queue": "orders-en", "TalkTime": "n/a"},
        {"Event": "QueueStatusComplete"},  # no sync in progress
    ],
)
def test_ignored_events_return_the_same_state(event: Mapping[str, str]) -> None:
    state = synced_blr()
    assert apply_event(state, "blr", event, T0) is state


def test_malformed_numbers_fall_back() -> None:
    ev = {"Event": "QueueCallerJoin", "Queue": "q", "Position": "x", "Count": ""}
    q = apply_event(up("blr"), "blr", ev, T0).sites["blr"].queues["q"]
    assert q.waiting == 1


def test_site_transitions() -> None:
    state = synced_blr()
    state = apply_events(begin_sync(state, "dac"), "dac", [{"Event": "QueueStatusComplete"}], T0)
    assert state.synced
    down = set_site_up(state, "blr", False, T0 + 1)
    assert not down.sites["blr"].up and down.sites["blr"].up_since is None
    assert down.synced  # only dac is up, and it is synced
    back = set_site_up(down, "blr", True, T0 + 2)
    assert back.sites["blr"].up_since == T0 + 2
    assert not back.synced and not back.sites["blr"].synced
    assert set_site_up(back, "blr", True, T0 + 3) is back
    drained = set_drained(back, "blr", True)
    assert drained.sites["blr"].drained and set_drained(drained, "blr", True) is drained
    assert complete_sync(back, "blr") is back  # nothing pending


def test_trunk_health_and_sticky() -> None:
    state = up("blr")
    bad = set_trunk_health(state, "blr-dac", False)
    assert bad.unhealthy_trunks == frozenset({"blr-dac"})
    assert set_trunk_health(bad, "blr-dac", False) is bad
    assert set_trunk_health(bad, "blr-dac", True).unhealthy_trunks == frozenset()
    st = set_sticky(state, "orders", "en", "blr")
    assert st.sticky == {("orders", "en"): "blr"}
    assert set_sticky(st, "orders", "en", "blr") is st
    assert state.sticky == {}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (None, math.inf),
        (QueueLoad(), math.inf),
        (QueueLoad(logged_in=2, available=1, waiting=0, avg_talk=100), 0.0),
        (QueueLoad(logged_in=2, available=1, waiting=2, avg_talk=100), 150.0),
        (QueueLoad(logged_in=2, available=0, waiting=0, avg_talk=100), 50.0),
        (QueueLoad(logged_in=1, available=0, waiting=1), 2 * DEFAULT_HANDLE_TIME),
        # Everyone paused: still finite (someone will come back), but long.
        (QueueLoad(logged_in=2, paused=2, waiting=1, avg_talk=100), 200.0),
    ],
)
def test_ewt(q: QueueLoad | None, expected: float) -> None:
    assert ewt(q) == expected
