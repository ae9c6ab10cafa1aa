"""TurnShare: one deadline per loop turn over all its users; what is left goes on in a
later turn, those that did none of the work first; a loop closed with its share open
leaves nothing behind for the next loop."""

from __future__ import annotations

import asyncio
from typing import Any

from ccbridge.turns import TurnShare


async def _next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_users_of_one_turn_share_its_deadline_and_the_next_turn_opens_anew() -> None:
    share = TurnShare(0.5)
    first_deadline, first = share.begin()
    second_deadline, second = share.begin(seconds=10.0)  # only the opener sets it
    assert first and not second and second_deadline == first_deadline
    await _next_turn()
    third_deadline, third = share.begin()
    assert third and third_deadline > first_deadline


async def test_what_is_left_goes_on_next_turn_those_that_did_none_first() -> None:
    share = TurnShare(0.0)
    ran: list[str] = []
    share.begin()
    loop = asyncio.get_running_loop()
    loop.call_soon(ran.append, "scheduled before")
    share.later(lambda: ran.append("busy link"), worked=True)
    share.later(lambda: ran.append("starved link"), worked=False)
    share.later(lambda: ran.append("another starved"), worked=False)
    assert ran == []  # not in this turn
    await _next_turn()
    assert ran == ["scheduled before", "starved link", "another starved", "busy link"]


async def test_one_failing_callback_does_not_stop_the_others() -> None:
    share = TurnShare(0.0)
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    ran: list[str] = []

    def broken() -> None:
        raise ValueError("garbage")

    share.begin()
    share.later(broken, worked=False)
    share.later(lambda: ran.append("next"), worked=False)
    await _next_turn()
    assert ran == ["next"]
    assert [type(c["exception"]) for c in reported] == [ValueError]


def test_a_share_left_open_by_a_closed_loop_is_not_the_next_loops() -> None:
    share = TurnShare(60.0)
    ran: list[str] = []

    def leave_open() -> None:
        share.begin()
        share.later(lambda: ran.append("old loop's"), worked=False)

    loop = asyncio.new_event_loop()
    loop.call_soon(leave_open)
    loop.call_soon(loop.stop)  # the loop ends with this turn: the share's next never runs
    loop.run_forever()
    loop.close()

    async def next_loop() -> bool:
        _, first = share.begin()
        share.later(lambda: ran.append("new loop's"), worked=False)
        await _next_turn()
        return first

    assert asyncio.run(next_loop())
    assert ran == ["new loop's"]
