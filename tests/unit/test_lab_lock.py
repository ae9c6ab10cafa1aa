"""The lab lock: waits in flock (fair against the test runs' blocking waits), bounded."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from ccbridge.lab.lock import LabBusy, lab_lock


def test_a_held_lock_times_out_with_lab_busy(tmp_path: Path) -> None:
    path = tmp_path / "lab.lock"
    with open(path, "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(LabBusy), lab_lock(timeout=0.3, path=path):
            pass
        assert 0.25 < time.monotonic() - t0 < 2.0


def test_the_waiter_gets_the_lock_as_soon_as_it_is_released(tmp_path: Path) -> None:
    path = tmp_path / "lab.lock"
    waited: list[str] = []
    with open(path, "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        threading.Timer(0.2, fcntl.flock, (other, fcntl.LOCK_UN)).start()
        t0 = time.monotonic()
        with lab_lock(timeout=5.0, on_wait=lambda: waited.append("waiting"), path=path):
            took = time.monotonic() - t0
        # In flock, not polling every half second: it has the lock at the release.
        assert waited == ["waiting"] and 0.15 < took < 0.45
