"""loopdebug.unexplained: a test's SIGSTOP excuses only the callbacks it explains."""

from __future__ import annotations

from ccbridge import loopdebug


def slow(ms: int) -> str:
    return f"WARNING asyncio {loopdebug.MARK} <Handle x> took {ms} ms (limit 50 ms)"


def test_without_a_stop_every_slow_line_counts() -> None:
    text = "\n".join([slow(61), "INFO other line", slow(2003)])
    assert loopdebug.unexplained(text) == [slow(61), slow(2003)]


def test_a_stop_excuses_a_callback_it_landed_in_and_nothing_else() -> None:
    text = "\n".join([slow(61), loopdebug.stopped_line(2.0), slow(2003), slow(2049)])
    # 2003 and 2049 ms: the 2 s stop plus a callback within the limit; 61 ms is its own.
    assert loopdebug.unexplained(text) == [slow(61)]


def test_a_callback_slow_by_itself_during_a_stop_still_counts() -> None:
    text = "\n".join([loopdebug.stopped_line(2.0), slow(2120), slow(700)])
    assert loopdebug.unexplained(text) == [slow(2120), slow(700)]


def test_the_test_side_timing_may_run_a_little_long() -> None:
    # The test times the stop from its side of the two signals: a little over the
    # kernel's stop, so a callback reported slightly shorter is still the stop's.
    text = "\n".join([loopdebug.stopped_line(30.05), slow(29990)])
    assert loopdebug.unexplained(text) == []
