"""The event loop ``ccbridge run`` serves on: asyncio's own, or uvloop when asked.

uvloop (libuv under asyncio's API, from MagicStack, who keep asyncpg) runs the same
coroutines, transports and protocols with the loop itself in C: the FastAGI server alone
costs about a third less CPU a session on it. ``bridge.event_loop: uvloop`` (or ``auto``:
uvloop when it imports) turns it on; the default stays asyncio's loop because on the
whole bridge the gain was not yet shown out of a shared machine's noise, and the whole
lab suite has not run on uvloop. The hung-bridge lab test's slow-callback gate saw 57-70
ms AMI chunks after its 30 s SIGSTOP on uvloop; since the AMI protocol parses and hands
on a bounded piece of a read per loop turn (``ami/pano.py``) it passes there too
(BENCHMARKS §12).

One difference matters to the slow-callback gate (ccbridge/loopdebug.py): uvloop times
handles, tasks and timers in debug mode like asyncio, but not the protocol callbacks it
calls straight from libuv (``data_received``). The AMI protocol, the one that does work
there, times itself (``loopdebug.IoTimer``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ccbridge.config.model import EventLoop

log = logging.getLogger("ccbridge")

T = TypeVar("T")


def loop_factory(choice: EventLoop) -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """The factory for ``asyncio.Runner`` and the loop's name, for ``choice``."""
    if choice is not EventLoop.ASYNCIO:
        try:
            import uvloop
        except ImportError:
            if choice is EventLoop.UVLOOP:
                log.warning("bridge.event_loop: uvloop does not import: serving on asyncio's loop")
        else:
            version = getattr(uvloop, "__version__", "")
            return uvloop.new_event_loop, f"uvloop {version}".strip()
    return asyncio.new_event_loop, "asyncio"


def run(main: Coroutine[Any, Any, T], choice: EventLoop) -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names (asyncio.Runner: same shutdown)."""
    factory, name = loop_factory(choice)
    log.info("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
