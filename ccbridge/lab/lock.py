"""The lab is one per machine: an exclusive flock that tests, benches and load tests share."""

from __future__ import annotations

import contextlib
import fcntl
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
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise LabBusy(f"the lab is busy ({path} held for {timeout:.0f}s)") from None
                    time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
