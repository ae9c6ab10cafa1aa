"""A share of each event-loop turn for one kind of work, split among all who do it.

Work that comes in many independent pieces at once (20 AMI links each with a read ready
in one turn) holds the loop for the sum of the pieces when each piece only bounds itself:
a route request that arrived meanwhile waits for all of them (BENCHMARKS §3). A
``TurnShare`` gives the whole kind ``seconds`` per turn: the first piece of a turn sets
the deadline, every other piece of that turn works against the same one, and what is
left waits for a later turn (``later``) in an order that lets each go first in its turn.

A "turn" here runs from the share's opening to a callback scheduled then (``call_soon``)
in the loop's next turn: close enough to the loop's own turn, and the same on asyncio's
loop and uvloop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TurnShare:
    """``seconds`` of one kind of work per event-loop turn, over all who do it."""

    __slots__ = ("_deadline", "_loop", "_waiting", "_worked", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._deadline = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the open share
        self._waiting: list[Callable[[], None]] = []  # did none of this turn's work
        self._worked: list[Callable[[], None]] = []  # did some: they go after the others

    def begin(self, seconds: float | None = None) -> tuple[float, bool]:
        """``(deadline, first)``: the ``time.perf_counter()`` instant this turn's share
        ends, and whether this call opened it (its caller then does at least one piece
        of work, whatever ``seconds``, so the work always moves on). ``seconds``
        overrides the share for the opener (tests and benches)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return self._deadline, False
        if self._loop is not None:
            # A share left open by a loop that closed first: its waiters are gone with it.
            self._waiting, self._worked = [], []
        self._loop = loop
        self._deadline = time.perf_counter() + (self.seconds if seconds is None else seconds)
        loop.call_soon(self._reopen)
        return self._deadline, True

    def later(self, callback: Callable[[], None], worked: bool) -> None:
        """Call ``callback`` next turn (after a ``begin`` of this turn). One that did some
        of this turn's work (``worked``) goes after those that did none, so a busy link
        cannot keep the share from the others. They run in one callback scheduled by the
        turn's first ``later``: after what the work done so far scheduled."""
        if not (self._waiting or self._worked):
            asyncio.get_running_loop().call_soon(self._go_on)
        (self._worked if worked else self._waiting).append(callback)

    def _reopen(self) -> None:
        self._loop = None

    def _go_on(self) -> None:
        queued = self._waiting + self._worked
        self._waiting, self._worked = [], []
        for callback in queued:
            try:
                callback()
            except Exception as exc:  # one link's fault is not the others'
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "TurnShare callback failed", "exception": exc}
                )
