"""The screen pop's per-call facts (ccbridge/screenpop/tracker.py), from a call recorded on the
lab's Asterisk 22 (tests/unit/fixtures/records/answered.json) and from garbage."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccbridge.config import load_config
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.screenpop.publisher import tracker_settings
from ccbridge.screenpop.tracker import ANSWERED, RINGING, Pop, PopTracker, TrackerSettings

FIXTURES = Path(__file__).parent / "fixtures" / "records"
LAB = Path(__file__).resolve().parents[2] / "examples" / "lab.yaml"
T = datetime(2026, 11, 28, tzinfo=UTC)
CALL_ID = "bangalore:1795897449.390304:2"


def lab_tracker() -> PopTracker:
    ensure_lab_secrets()
    return PopTracker(tracker_settings(load_config(LAB)))


def replay(tracker: PopTracker, name: str) -> list[Pop]:
    pops = []
    for item in json.loads((FIXTURES / name).read_text()):
        pop = tracker.feed(item["site"], item["event"], T)
        if pop is not None:
            pops.append(pop)
    return pops


def user_event(name: str, **fields: str) -> dict[str, str]:
    return {
        "Event": "UserEvent",
        "UserEvent": name,
        "ChanVariable": f"CCB_CALLID={CALL_ID}",
        "Timestamp": "1795897449.300000",
        **fields,
    }


def test_a_queue_call_pops_when_the_agent_rings_and_when_it_answers() -> None:
    tracker = lab_tracker()
    tracker.decision(CALL_ID, "+918000000003", "+919812345678", "orders", "hi")
    tracker.feed("bangalore", user_event("CcbIvr", Menu="language", Step="2"), T)
    tracker.feed("bangalore", user_event("CcbLookup", Result="ok", Answer="shipped"), T)
    ringing, answered = replay(tracker, "answered.json")
    assert ringing.kind == RINGING and answered.kind == ANSWERED
    for pop in (ringing, answered):
        assert pop.call_id == CALL_ID
        assert (pop.site, pop.queue, pop.agent) == ("bangalore", "orders-hi", "blr-agent2")
        assert (pop.service, pop.language) == ("orders", "hi")
        assert (pop.did, pop.did_kind) == ("+918000000003", "tollfree")
        assert pop.caller == "+919812345678"  # the decision's, before the event's
        assert pop.ivr_path == ("language:2",)
        assert (pop.lookup_result, pop.lookup_answer) == ("ok", "shipped")
    # Ringing: since QueueCallerJoin (6.7 ms in the recording); answered: app_queue's HoldTime.
    assert ringing.waiting_s is not None and 0 <= ringing.waiting_s < 0.1
    assert answered.waiting_s == 0.0
    assert ringing.at == datetime.fromtimestamp(1795897449.405006, UTC)


def test_without_a_decision_the_queue_and_the_event_tell_what_they_can() -> None:
    """A held or static route: no decision reached the bridge."""
    tracker = lab_tracker()
    ringing, _ = replay(tracker, "answered.json")
    assert (ringing.service, ringing.language) == ("orders", "hi")
    assert ringing.caller == "+91XXXXXXXXXX"  # the recording's (masked) caller ID
    assert ringing.did is None and ringing.ivr_path == () and ringing.lookup_answer is None


def garbage_events() -> list[dict[str, Any]]:
    good = json.loads((FIXTURES / "answered.json").read_text())[1]["event"]
    return [
        {},
        {"Event": "AgentCalled"},
        {**good, "ChanVariable": "CCB_CALLID=not-a-call-id"},
        {**good, "ChanVariable": "CCB_CALLID=" + "x" * 5000},
        {**good, "ChanVariable": None},
        {**good, "Queue": ""},
        {**good, "MemberName": "a\x00b"},
        {**good, "MemberName": "é" * 10},
        {**good, "Queue": "q" * 65},
        {"Event": "UserEvent", "UserEvent": "CcbIvr", "ChanVariable": "CCB_CALLID=x"},
    ]


def test_garbage_events_make_no_pop_and_raise_nothing() -> None:
    tracker = lab_tracker()
    for event in garbage_events():
        assert tracker.feed("bangalore", event, T) is None
    assert tracker.skipped == len(garbage_events())


def test_garbage_fields_are_left_out_of_a_pop() -> None:
    tracker = lab_tracker()
    tracker.decision(CALL_ID, "\x1b[31m", "+91" + "9" * 200, "orders\n", None)
    bad_ts = user_event("CcbIvr", Menu="m" * 100, Step="1", Timestamp="nan")
    tracker.feed("bangalore", bad_ts, T)
    ringing, _ = replay(tracker, "answered.json")
    assert ringing.did is None and ringing.did_kind is None
    assert ringing.caller == "+91XXXXXXXXXX"  # the over-long one was refused
    assert ringing.ivr_path == ()


def test_memory_is_bounded_the_oldest_call_goes_first() -> None:
    tracker = PopTracker(TrackerSettings({}, {}, max_calls=3))
    ids = [f"bangalore:1795897449.{i:06d}:{i}" for i in range(5)]
    for cid in ids:
        tracker.decision(cid, "+918000000001", "+919812345678", "orders", "hi")
    assert list(tracker.calls) == ids[2:]
    tracker.decision(ids[2], "+918000000001", "", None, None)  # touched: now the newest
    tracker.decision("bangalore:1795897450.000000:9", "+918000000001", "", None, None)
    assert ids[2] in tracker.calls and ids[3] not in tracker.calls


def test_a_call_is_forgotten_when_it_ends_and_kept_through_a_transfer() -> None:
    """The tracker holds calls in progress only (the bridge's RSS: BENCHMARKS.md §4)."""
    tracker = lab_tracker()
    tracker.decision(CALL_ID, "+918000000003", "+919812345678", "orders", "hi")
    tracker.feed("bangalore", user_event("CcbIvr", Menu="language", Step="2"), T)
    transfer = {
        "Event": "AgentComplete",
        "ChanVariable": f"CCB_CALLID={CALL_ID}",
        "Queue": "orders-hi",
        "MemberName": "blr-agent2",
        "Reason": "transfer",
    }
    assert tracker.feed("bangalore", transfer, T) is None
    assert CALL_ID in tracker.calls  # moving on: its next agent's pop needs the facts
    ringing, answered = replay(tracker, "answered.json")  # ends with AgentComplete caller
    assert answered.ivr_path == ("language:2",) and ringing.did == "+918000000003"
    assert CALL_ID not in tracker.calls and len(tracker.calls) == 0
    for name in ("abandoned.json", "agent_hangup.json", "cross_site.json"):
        replay(tracker, name)
        assert len(tracker.calls) == 0, name
