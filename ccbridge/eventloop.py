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
calls straight from libuv (``data_received``). The two protocols that do work there time
themselves (``loopdebug.io_timer``): the AMI protocol, and the FastAGI server's
connections, which run the ``route`` decision in ``data_received``
(tests/unit/test_agi_script.py checks the gate sees a slow one on uvloop).

The eighth session ran the lab suite's bridge tests on uvloop (``auto`` as the default in
a copy of the tree, the in-process bridges on uvloop too), on a machine shared with four
other helpers (load 4-7): 72 passed, 1 failed once and passed on a rerun
(test_held_routes' fresh held route), and 7 ended in the 50 ms gate at teardown, all on
callbacks outside FastAGI (held-route passes 52-70 ms, an AMI ping, the records journal,
a SQLAlchemy close), the kind asyncio's loop also showed on that machine. Not a clean pass,
so asyncio's loop stays the default; rerun the suite with ``bridge.event_loop: auto`` on a
quiet machine before changing it (BENCHMARKS §12).

The ninth session ran the lab files whose bridges are ``ccbridge run`` subprocesses
(several_bridges, failover, hung_bridge, log_privacy) with ``auto`` as the default, and
the same files on asyncio's loop right after (load 4-5): uvloop 13 passed, 3 errors;
asyncio 13 passed, 1 error, all the 50 ms gate. Two of uvloop's were its own: uvloop's
``SSLProtocol._do_read`` (the AMI link over TLS after the hung-bridge test's SIGSTOP)
decrypts everything the socket holds and hands it on in one callback, 65 ms; and the
PostgreSQL heartbeat's ``stopped()`` at stop, 60 ms. With the gate's run-queue bound
fixed (loopdebug), the uvloop batch again: 12 passed, no gate error, 1 failure of an
in-process bridge (on asyncio's loop) that passed alone. Still not a clean pass over all
the lab files with subprocess bridges: the default stays. (uvloop times ``call_soon``
handles and tasks in debug mode as asyncio does.)
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
