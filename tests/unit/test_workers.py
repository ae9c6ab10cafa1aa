"""The loop's worker threads are all started before the bridge serves (ccbridge/workers.py)."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest

from ccbridge.workers import SWITCH_INTERVAL, start_workers


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ccbridge-worker")]


async def test_every_worker_runs_before_serving_and_a_later_burst_starts_no_thread() -> None:
    before = len(_workers())
    pool = await start_workers(4)
    try:
        assert len(_workers()) - before == 4
        # A burst of to_thread calls as wide as the pool: each finds a thread waiting,
        # so no submit starts one (a start holds the loop until the new thread runs).
        started = threading.active_count()
        gate = threading.Barrier(4)
        await asyncio.gather(*(asyncio.to_thread(gate.wait, 5.0) for _ in range(4)))
        assert threading.active_count() == started
        names = await asyncio.gather(
            *(asyncio.to_thread(lambda: threading.current_thread().name) for _ in range(8))
        )
        assert all(n.startswith("ccbridge-worker") for n in names)  # the pool is the default
    finally:
        pool.shutdown(wait=True)


async def test_the_pythons_own_pool_starts_threads_on_the_loop_for_contrast() -> None:
    # Without the start: a default pool creates its threads on submits from the loop.
    loop = asyncio.get_running_loop()
    started = threading.active_count()
    gate = threading.Barrier(3)
    await asyncio.gather(*(loop.run_in_executor(None, gate.wait, 5.0) for _ in range(3)))
    assert threading.active_count() >= started + 2


async def test_no_workers_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await start_workers(0)


async def test_the_start_shortens_the_gils_switch_interval_and_never_lengthens_it() -> None:
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)  # CPython's default
        pool = await start_workers(1)
        pool.shutdown(wait=True)
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
        sys.setswitchinterval(0.0002)  # a process that chose shorter keeps it
        pool = await start_workers(1)
        pool.shutdown(wait=True)
        assert sys.getswitchinterval() == pytest.approx(0.0002)
    finally:
        sys.setswitchinterval(before)
