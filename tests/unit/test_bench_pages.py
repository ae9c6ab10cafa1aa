"""tests/bench/pages.py: the distinct resident pages of a set of processes (frame
numbers: root, as make test runs)."""

from __future__ import annotations

import mmap
import os
import signal
from pathlib import Path

import pytest

from tests.bench.pages import PAGE, distinct_mb, distinct_mb_apart, frames

MB = 2**20


def _rss_pages(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 // PAGE
    raise AssertionError("no VmRSS")


def test_a_forked_child_shares_its_untouched_pages_and_not_the_ones_it_wrote() -> None:
    # 32 MB touched before the fork: shared by both until one writes. The child then
    # writes 8 MB of it: those pages become its own.
    buf = mmap.mmap(-1, 32 * MB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for off in range(0, 32 * MB, PAGE):
        buf[off] = 1
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write 8 MB, say so, wait to be killed
        for off in range(0, 8 * MB, PAGE):
            buf[off] = 2
        os.write(ready_w, b"x")
        signal.pause()
        os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        mine, theirs = frames(os.getpid()), frames(pid)
        # Each set is the process's resident pages (as RSS counts them, within the
        # pages that moved between the two reads).
        assert abs(len(mine) - _rss_pages(os.getpid())) < 2048
        shared = len(mine & theirs) * PAGE
        assert shared >= 24 * MB  # the 24 MB nobody wrote, and the code both run
        assert len(theirs - mine) * PAGE >= 8 * MB  # the child's copies
        # Read again (the two sets above took pages of their own meanwhile): the shared
        # 24 MB counted once, the child's 8 MB of copies counted.
        both = distinct_mb([os.getpid(), pid]) * MB
        assert both <= (len(mine) + len(theirs)) * PAGE - 24 * MB + 8 * MB
        assert both >= len(mine | theirs) * PAGE - 8 * MB
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(ready_w)
        buf.close()


def test_a_process_that_is_gone_is_an_error_not_zero() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(FileNotFoundError):
        distinct_mb([pid])


async def test_the_figure_read_in_a_process_of_its_own_is_this_process_s() -> None:
    here = distinct_mb([os.getpid()])
    apart = await distinct_mb_apart([os.getpid()])
    assert apart == pytest.approx(here, abs=4.0)  # within what moved between the reads
    with pytest.raises(RuntimeError, match=r"tests\.bench\.pages"):
        await distinct_mb_apart([2**22 + 1])  # no such process
