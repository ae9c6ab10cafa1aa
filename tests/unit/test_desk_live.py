"""The desk's call view keeps live calls whole and ended ones as an ID and an instant, the
last ``max_ended`` of them (the bridge's RSS with records on: BENCHMARKS.md §4)."""

from __future__ import annotations

from ccbridge.desk.live import ENDED_KEEP, CallState, LiveCalls
from ccbridge.events import EventBus


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ev(name: str, n: int, **fields: str) -> dict[str, str]:
    return {"Event": name, "ChanVariable": f"CCB_CALLID=dhaka:1795888704.1:{n}", **fields}


def cid(n: int) -> str:
    return f"dhaka:1795888704.1:{n}"


def test_ended_calls_leave_the_live_map_and_only_the_last_are_remembered() -> None:
    clock = Clock()
    desk = LiveCalls(clock, max_ended=2)
    bus = EventBus()
    desk.subscribe(bus)
    for n in range(4):
        bus.dispatch("dhaka", ev("QueueCallerJoin", n, Queue="orders-en", Channel="PJSIP/c-1"))
        bus.dispatch("dhaka", ev("AgentConnect", n, Queue="orders-en", MemberName="dac-agent1"))
    bus.dispatch("dhaka", ev("QueueCallerJoin", 9, Queue="orders-en", Channel="PJSIP/c-9"))
    for n in range(3):  # the agent or the caller hangs up
        clock.t += 1
        bus.dispatch("dhaka", ev("AgentComplete", n, Queue="orders-en", Reason="caller"))
    bus.dispatch("dhaka", ev("QueueCallerAbandon", 9, Queue="orders-en"))
    clock.t += 1
    bus.dispatch("dhaka", ev("AgentComplete", 3, Queue="orders-en", Reason="transfer"))

    assert list(desk.calls) == [cid(3)]  # the transferred call moves on, live
    live = desk.get(cid(3))
    assert live is not None and live.state is CallState.MOVING
    assert [desk.get(cid(n)) for n in (0, 1, 2, 9)] == [None] * 4
    # the last two to end, as ID and instant; the older ones forgotten
    assert list(desk.ended) == [cid(2), cid(9)]
    assert desk.ended_at(cid(2)) == 1003.0 and desk.ended_at(cid(0)) is None

    # a late event of an ended call makes it live again (and no longer ended)
    bus.dispatch("dhaka", ev("QueueCallerJoin", 2, Queue="orders-en", Channel="PJSIP/c-2"))
    back = desk.get(cid(2))
    assert back is not None and back.state is CallState.WAITING
    assert desk.ended_at(cid(2)) is None

    clock.t += ENDED_KEEP + 1  # an hour on: an ended call is no longer known as ended
    assert desk.ended_at(cid(9)) is None and cid(9) not in desk.ended


def test_calls_whose_end_a_link_outage_hid_end_when_the_site_lists_its_channels() -> None:
    clock = Clock()
    desk = LiveCalls(clock)
    bus = EventBus()
    desk.subscribe(bus)
    for n in range(3):
        bus.dispatch("dhaka", ev("QueueCallerJoin", n, Queue="orders-en", Channel=f"PJSIP/c-{n}"))
    bus.dispatch("manila", ev("QueueCallerJoin", 7, Queue="orders-en", Channel="PJSIP/c-7"))
    assert desk.has_calls("dhaka") and not desk.has_calls("bangalore")
    # dhaka's link was down while calls 0 and 2 hung up: only c-1 is still there
    assert desk.close_gone("dhaka", {"PJSIP/c-1", "PJSIP/other"}) == 2
    assert sorted(desk.calls) == [cid(1), cid(7)]  # another site's calls are its own
    assert desk.ended_at(cid(0)) == 1000.0 and desk.ended_at(cid(2)) == 1000.0
    assert desk.close_gone("dhaka", {"PJSIP/c-1"}) == 0
