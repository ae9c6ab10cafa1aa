"""The lab is one per machine: an exclusive flock that tests, benches and load tests share."""

from __future__ import annotations

import contextlib
import fcntl
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_FILE = Path("/tmp/ccbridge-lab.lock")


class LabBusy(RuntimeError):
    """Another run held the lab for longer than we were willing to wait."""


@contextlib.contextmanager
def lab_lock(
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
    path: Path = LOCK_FILE,
) -> Iterator[None]:
    """Hold the lab's lock; wait for another run to finish (forever when timeout is None)."""
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            # Wait in flock itself, as the test runs do: the kernel wakes blocked waiters
            # when the lock is released, and a waiter that polls every half second (as
            # this one used to) almost never wins against them on a busy machine.
            if timeout is None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            elif threading.current_thread() is threading.main_thread():
                _flock_within(lock.fileno(), timeout, path)
            else:
                _poll(lock.fileno(), timeout, path)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _Expired(Exception):
    pass


def _flock_within(fd: int, timeout: float, path: Path) -> None:
    """A blocking flock that SIGALRM ends after ``timeout`` (main thread only)."""

    def expire(signum: int, frame: object) -> None:
        raise _Expired

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(timeout, 0.001))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except _Expired:
        raise LabBusy(f"the lab is busy ({path} held for {timeout:.0f}s)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _poll(fd: int, timeout: float, path: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LabBusy(f"the lab is busy ({path} held for {timeout:.0f}s)") from None
            time.sleep(0.5)
