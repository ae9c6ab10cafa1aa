"""The event loop ``ccbridge run`` serves on: uvloop when it imports, else asyncio's own.

uvloop (libuv under asyncio's API, maintained by the asyncio core developers' circle, MIT
/Apache) runs the same coroutines, transports and protocols with the loop itself in C:
on the ceiling bench the bridge's own CPU a call falls (BENCHMARKS §12), mostly in
accepting, reading, writing and closing the FastAGI connections, which is per call.
Nothing in ccbridge depends on it: ``bridge.event_loop: asyncio`` (or uvloop missing)
serves on asyncio's loop, which every unit test uses.

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
