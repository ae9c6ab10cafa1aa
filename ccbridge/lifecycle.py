"""Start parts in order and stop them in reverse: a failed start undoes the rest, a stop runs all.

The aiohttp ``cleanup_ctx`` idea over an ``AsyncExitStack``: every part that started
pushes its own stop, so when a later part fails to start, exactly the parts already
running are stopped, and nothing (task, socket) is left behind. ``stop`` runs every
cleanup even when one raises and then reports all of them in one ExceptionGroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger("ccbridge.lifecycle")

T = TypeVar("T")

# A part whose start kept the loop thread on a CPU this long is logged at INFO.
SLOW_START_CPU_MS = 20.0

# How a failed bind reads in the one line ``ccbridge run`` prints.
_ERRNO_WORDS = {
    errno.EADDRINUSE: "address in use",
    errno.EADDRNOTAVAIL: "address not available on this machine",
    errno.EACCES: "permission denied",
}


class StartError(Exception):
    """A part could not start: ``cannot start the HTTP API on 127.0.0.1:8080: address in use``."""

    def __init__(self, part: str, address: str | None, reason: str) -> None:
        where = f" on {address}" if address else ""
        super().__init__(f"cannot start the {part}{where}: {reason}")
        self.part = part
        self.address = address


class StopError(ExceptionGroup[Exception]):
    """One or more parts failed to stop; every other part was still stopped."""


def describe(exc: BaseException) -> str:
    """The reason of a start failure in a few words (no errno numbers, no repr)."""
    if isinstance(exc, OSError):
        if exc.errno in _ERRNO_WORDS:
            return _ERRNO_WORDS[exc.errno]
        if exc.strerror:
            return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class Parts:
    """The running parts of one process, newest last."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._failures: list[Exception] = []
        self.started: list[str] = []

    async def start(
        self,
        part: str,
        address: str | None,
        start: Callable[[], Awaitable[T]],
        stop: Callable[[], Awaitable[object]] | None = None,
    ) -> T:
        """Run ``start``; on success remember ``stop`` (if any) to run at ``aclose``.

        A failure raises StartError naming the part and address; the parts already
        started are not stopped here: the caller's ``aclose`` does that, in reverse.
        """
        began, cpu = time.perf_counter(), time.thread_time()
        try:
            result = await start()
        except Exception as exc:
            raise StartError(part, address, describe(exc)) from exc
        if stop is not None:
            self._stack.push_async_callback(self._stop_one, part, stop)
        self.started.append(part)
        took_ms = (time.perf_counter() - began) * 1000
        # The loop thread's CPU while this part started (its own work and whatever else
        # ran on the loop meanwhile): the figure a slow start step is traced to.
        cpu_ms = (time.thread_time() - cpu) * 1000
        level = logging.INFO if cpu_ms >= SLOW_START_CPU_MS else logging.DEBUG
        log.log(level, "started the %s in %.1f ms (loop thread CPU %.1f ms)", part, took_ms, cpu_ms)
        # No loop turn is added between parts: what a part's start set going (an AMI
        # link's first connect, a task) runs at the next part's first wait, as the
        # records' coverage gaps at start expect (tests/store/test_record_bridge.py).
        return result

    def on_stop(self, part: str, stop: Callable[[], Awaitable[object]]) -> None:
        """Run ``stop`` at ``aclose`` (for a part that needs no start, or half a part)."""
        self._stack.push_async_callback(self._stop_one, part, stop)

    async def _stop_one(self, part: str, stop: Callable[[], Awaitable[object]]) -> None:
        try:
            await stop()
        except Exception as exc:
            # Keep going: the other parts must still stop; all failures are raised at the end.
            exc.add_note(f"while stopping the {part}")
            log.error("stopping the %s failed: %s", part, describe(exc))
            self._failures.append(exc)

    async def aclose(self) -> None:
        """Stop every started part, newest first; raise StopError listing every failure."""
        try:
            await self._stack.aclose()
        finally:
            failures, self._failures = self._failures, []
            self.started.clear()
        if failures:
            parts = len(failures)
            raise StopError(f"{parts} part{'s' if parts > 1 else ''} failed to stop", failures)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a part's background task (if any) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Rounds:
    """A background job's rounds, one every ``interval`` seconds after ``first_delay``:
    a failed round is logged once per distinct reason (kept in ``last_error`` until a
    round succeeds) and the next round tries again."""

    def __init__(self, what: str, log: logging.Logger) -> None:
        self.what = what  # the log line's words: "retention purge skipped"
        self.log = log
        self.last_error: str | None = None

    async def run(
        self,
        round_: Callable[[], Awaitable[object]],
        first_delay: float,
        interval: float,
        quiet: tuple[type[Exception], ...] = (),
    ) -> None:
        """Until cancelled; a failure of a ``quiet`` type is logged at INFO (a normal
        state, such as no database yet), any other at WARNING."""
        await asyncio.sleep(first_delay)
        while True:
            try:
                await round_()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                why = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if why != self.last_error:
                    level = logging.INFO if isinstance(exc, quiet) else logging.WARNING
                    self.log.log(level, "%s (next in %gs): %s", self.what, interval, why)
                self.last_error = why
            await asyncio.sleep(interval)
