"""The slow-callback report: asyncio's debug timing, rewritten into one recognisable line."""

from __future__ import annotations

import asyncio
import gc
import logging
import mmap
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ccbridge import loopdebug
from ccbridge.cli import build_parser
from tests.polling import until, until_sync
from tests.unit.test_bridge_lifecycle import REPO, free_port


async def test_a_callback_over_the_limit_is_reported_once_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    found = loopdebug.report_slow_callbacks(loop, 20)
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            loop.call_soon(lambda: None)  # fast: not reported
            # Deliberately blocking the loop for 60 ms is the thing under test here.
            loop.call_soon(time.sleep, 0.06)
            await until(lambda: found.count >= 1, 5, "the slow callback's report")
            await asyncio.sleep(0)
    finally:
        loopdebug.stop_reporting(loop, found)
    # Exactly the sleeping callback (on a busy machine another may be slow too).
    (line,) = [x for x in found.lines if "sleep" in x]
    assert line.startswith(loopdebug.MARK) and "(limit 20 ms" in line
    assert found.count == len(found.lines)
    assert [r.getMessage() for r in caplog.records if loopdebug.MARK in r.getMessage()] == (
        found.lines
    )
    assert not loop.get_debug()


def test_the_threshold_comes_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(loopdebug.ENV, raising=False)
    assert loopdebug.env_threshold_ms() is None
    monkeypatch.setenv(loopdebug.ENV, "50")
    assert loopdebug.env_threshold_ms() == 50.0
    for bad in ("0", "-3", "fast"):
        monkeypatch.setenv(loopdebug.ENV, bad)
        with pytest.raises(ValueError, match=loopdebug.ENV):
            loopdebug.env_threshold_ms()
    args = build_parser().parse_args(["run", "x.yaml", "--slow-callback-ms", "50"])
    assert args.slow_callback_ms == 50.0
    for bad in ("0", "nan", "abc"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["run", "x.yaml", "--slow-callback-ms", bad])


async def test_ccbridge_run_logs_slow_callbacks_and_still_stops_cleanly(tmp_path: Path) -> None:
    # A 0.01 ms limit: every callback is "slow", so the bridge's own start-up reports some.
    cfg = tmp_path / "lab.yaml"
    text = (REPO / "examples" / "lab.yaml").read_text()
    for old in ("127.0.0.1:8080", "127.0.0.1:4573"):
        text = text.replace(old, f"127.0.0.1:{free_port()}")
    cfg.write_text(text.replace("  port: 5038\n", f"  port: {free_port()}\n"))
    err = tmp_path / "stderr"
    proc = _run_bridge(cfg, err, "--slow-callback-ms", "0.01")
    try:
        await until(lambda: loopdebug.MARK in err.read_text(), 30, "a slow-callback line")
        await until(lambda: "bridge started" in err.read_text(), 30, "the bridge started")
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(proc.wait, 30)
    assert returncode == 0, err.read_text()[-2000:]
    line = next(x for x in err.read_text().splitlines() if loopdebug.MARK in x)
    assert "logger=asyncio" in line and "(limit 0 ms" in line  # and its wait for a CPU


def _run_bridge(cfg: Path, err: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CCBRIDGE_AMI_SECRET": "x", "CCBRIDGE_API_TOKEN": "t"}
    with open(err, "wb") as out:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "ccbridge.cli", "run", str(cfg), *args],
            stdout=out,
            stderr=out,
            env=env,
        )


async def test_a_collection_inside_a_slow_callback_is_named() -> None:
    loop = asyncio.get_running_loop()
    found = loopdebug.report_slow_callbacks(loop, 1)
    garbage = [[i] for i in range(300_000)]  # tracked containers: a full collection walks them

    def collect() -> None:
        gc.collect()
        time.sleep(0.002)  # over the 1 ms limit even if the collection alone is not

    try:
        loop.call_soon(collect)
        await until(lambda: found.count >= 1, 5, "the slow callback's report")
    finally:
        loopdebug.stop_reporting(loop, found)
    del garbage
    assert any("collect" in line and "ms during it" in line for line in found.lines), found.lines
    assert found.on_gc not in gc.callbacks


def test_a_line_over_the_limit_only_by_its_wait_for_a_cpu_is_excused() -> None:
    line = "{} <Handle x> took {} ms (limit 50 ms; {} {} ms)"
    slow_by_itself = line.format(loopdebug.MARK, 90, loopdebug.WAITED, 40)  # 50 of its own
    preempted = line.format(loopdebug.MARK, 90, loopdebug.WAITED, 41)  # 49 of its own
    no_figure = f"{loopdebug.MARK} <Handle y> took 61 ms (limit 50 ms)"
    text = "\n".join((slow_by_itself, preempted, no_figure))
    assert loopdebug.unexplained(text) == [slow_by_itself, no_figure]


def test_a_wait_with_no_reading_inside_is_bounded_by_the_readings_around_it() -> None:
    """The sampler's thread needs the GIL: a loop thread preempted while holding it
    leaves no reading inside its callback. The last reading before it and one taken
    after it on the loop's thread bound the wait, less the time outside the callback."""
    sampler = loopdebug.RunQueueSampler(threading.get_native_id())  # its thread not run
    sampler.samples.append((1.000, 1.0001, 5_000_000, 0))  # 5 ms waited so far
    began, ended = 1.002, 1.102  # a 100 ms callback, no reading inside
    assert sampler.waited_ms(began, ended) is None
    # 85 ms waited by 1.1025: 80 ms between the readings, of which at most 2.5 ms outside
    assert sampler.waited_ms(began, ended, (1.1025, 85_000_000, 0)) == pytest.approx(77.5)
    # A reading long before the callback bounds nothing: 0, not an excuse.
    far = loopdebug.RunQueueSampler(threading.get_native_id())
    far.samples.append((0.0, 0.0001, 5_000_000, 0))
    assert far.waited_ms(began, ended, (1.1025, 85_000_000, 0)) == 0.0
    # Readings inside still count, and the larger lower bound wins.
    sampler.samples.extend([(1.010, 1.0101, 10_000_000, 0), (1.090, 1.0901, 60_000_000, 0)])
    assert sampler.waited_ms(began, ended) == pytest.approx(50.0)
    assert sampler.waited_ms(began, ended, (1.1025, 85_000_000, 0)) == pytest.approx(77.5)


def test_the_time_on_a_cpu_is_bounded_below_as_the_wait_is() -> None:
    sampler = loopdebug.RunQueueSampler(threading.get_native_id())  # its thread not run
    sampler.samples.append((1.000, 1.0001, 0, 40_000_000))  # 40 ms on a CPU so far
    began, ended = 1.002, 1.102
    assert sampler.ran_ms(began, ended) is None
    # 130 ms by 1.1025: 90 ms between the readings, at most 2.5 ms of it outside
    assert sampler.ran_ms(began, ended, (1.1025, 0, 130_000_000)) == pytest.approx(87.5)
    sampler.samples.extend([(1.010, 1.0101, 0, 45_000_000), (1.090, 1.0901, 0, 120_000_000)])
    assert sampler.ran_ms(began, ended) == pytest.approx(75.0)
    # The figures are apart: the wait between those readings was none.
    assert sampler.waited_ms(began, ended) == 0.0


def _hog(cpu: int) -> subprocess.Popen[bytes]:
    code = f"import os; os.sched_setaffinity(0, {{{cpu}}}); print(flush=True)\nwhile True: pass"
    hog = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert hog.stdout is not None and hog.stdout.readline() == b"\n"  # pinned and spinning
    return hog


async def test_a_callback_slow_only_because_its_thread_waited_for_a_cpu_is_kept_apart() -> None:
    """Three spinning processes pinned to the loop thread's CPU leave it about a quarter
    of that CPU: a callback that spins 150 ms of wall time runs ~40 ms of it and waits
    ~110 (the readings every 5 ms see all but the edges), so against a 100 ms limit it is
    preempted, not slow; a callback that sleeps 150 ms stays slow (sleep is not run-queue
    wait)."""
    if loopdebug.read_schedstat(f"/proc/self/task/{threading.get_native_id()}/schedstat") is None:
        pytest.fail("this test needs Linux's schedstat, which the bridge's hosts have")
    loop = asyncio.get_running_loop()
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    hogs = [_hog(cpu) for _ in range(3)]
    os.sched_setaffinity(0, {cpu})  # this (the loop's) thread only
    found = loopdebug.report_slow_callbacks(loop, 100)
    try:
        # Spinning and sleeping on the loop's thread are the things under test here.
        loop.call_soon(_spin, 0.15)
        await until(lambda: any("_spin" in x for x in found.preempted + found.lines), 10, "spin")
        loop.call_soon(time.sleep, 0.15)
        await until(lambda: any("sleep" in x for x in found.lines), 10, "the sleep's report")
    finally:
        loopdebug.stop_reporting(loop, found)
        os.sched_setaffinity(0, before)
        for hog in hogs:
            hog.kill()
            hog.wait()
            if hog.stdout is not None:
                hog.stdout.close()
    spins = [x for x in found.preempted if "_spin" in x]
    assert len(spins) == 1, (found.lines, found.preempted)
    spun = spins[0]
    assert loopdebug.WAITED in spun and loopdebug.unexplained(spun) == []
    (slept,) = [x for x in found.lines if "sleep" in x]
    assert loopdebug.unexplained(slept) == [slept]
    assert found.count == len(found.lines)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_a_slow_callback_says_which_threads_had_the_cpu_meanwhile() -> None:
    """A loop thread that sleeps (here in a blocking call; in CI, waiting for the GIL a
    thread held) is neither on a CPU nor waiting for one: the report names the thread
    that ran instead, so the fix goes where the time went."""
    loop = asyncio.get_running_loop()
    found = loopdebug.report_slow_callbacks(loop, 20)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(2_000))

    def sleep_a_while() -> None:
        time.sleep(0.08)

    burner = threading.Thread(target=spin, name="test-burner")
    try:
        await asyncio.sleep(0.12)  # an all-threads reading before the callback
        burner.start()
        loop.call_soon(sleep_a_while)
        # Its own line, not just any: on a loaded machine another step may pass 20 ms first.
        await until(
            lambda: any("sleep_a_while" in x for x in found.lines), 5, "the callback's report"
        )
    finally:
        stop.set()
        loopdebug.stop_reporting(loop, found)
        if burner.is_alive():
            burner.join(5)
    (line,) = [x for x in found.lines if "sleep_a_while" in x]
    assert re.search(r"this thread on a CPU \d+ ms; others \d+ ms \(.*test-burner \d+ ms", line)
    assert re.search(r"in the \d+ ms around it\)$", line)


async def test_a_failure_to_read_the_threads_cpu_costs_only_that_part_of_the_line() -> None:
    loop = asyncio.get_running_loop()
    found = loopdebug.report_slow_callbacks(loop, 20)
    assert found.sampler is not None

    def broken(began: float) -> str:
        raise RuntimeError("deque mutated during iteration")

    found.sampler.cpu_meanwhile = broken  # type: ignore[method-assign]
    try:
        loop.call_soon(time.sleep, 0.06)
        await until(lambda: found.count >= 1, 5, "the slow callback's report")
    finally:
        loopdebug.stop_reporting(loop, found)
    (line,) = [x for x in found.lines if "sleep" in x]
    assert line.endswith("; threads' CPU not read (RuntimeError))")


async def test_a_slow_callback_names_the_threads_started_meanwhile() -> None:
    """``Thread.start`` waits until the new thread runs: on a loaded machine the loop
    sleeps there (the reason ccbridge/workers.py starts every worker at start). The
    report names a thread born in the span, so that wait is found, not guessed."""
    loop = asyncio.get_running_loop()
    found = loopdebug.report_slow_callbacks(loop, 20)
    done = threading.Event()

    def start_and_sleep() -> None:
        threading.Thread(target=done.wait, args=(5,), name="test-newborn").start()
        time.sleep(0.08)

    try:
        await asyncio.sleep(0.12)  # an all-threads reading before the callback
        loop.call_soon(start_and_sleep)
        # Its own line, not just any: on a loaded machine another step may pass 20 ms first.
        await until(
            lambda: any("start_and_sleep" in x for x in found.lines), 5, "the callback's report"
        )
    finally:
        done.set()
        loopdebug.stop_reporting(loop, found)
    (line,) = [x for x in found.lines if "start_and_sleep" in x]
    assert "threads started meanwhile: test-newborn" in line, line


async def test_debug_mode_stack_records_stat_no_source_file_while_reporting(
    tmp_path: Path,
) -> None:
    """Debug mode's stack record (a C Future's ``traceback.extract_stack``) checks every
    file on the stack with an ``os.stat`` that gives the GIL up; while a report is on a
    line read once is kept, and after it linecache checks files again."""
    import linecache

    own = linecache.checkcache
    source = tmp_path / "edited.py"
    source.write_text("first = 1\n")
    assert linecache.getline(str(source), 1) == "first = 1\n"
    source.write_text("second = 2\n")
    os.utime(source, (1, 1))  # another mtime, as an edit would leave
    loop = asyncio.get_running_loop()
    outer = loopdebug.report_slow_callbacks(loop, 50)
    inner = loopdebug.report_slow_callbacks(loop, 50)
    try:
        assert linecache.checkcache is not own
        linecache.checkcache(str(source))
        assert linecache.getline(str(source), 1) == "first = 1\n"  # not stat'ed: kept
        made = loop.create_future()  # debug mode: where it was made, lines looked up
        assert made._source_traceback and made._source_traceback[-1].line  # type: ignore[attr-defined]
        loopdebug.stop_reporting(loop, inner)
        assert linecache.checkcache is not own  # the other report is still on
    finally:
        loopdebug.stop_reporting(loop, outer)
    assert linecache.checkcache is own
    loopdebug.stop_reporting(loop, outer)  # once more: nothing to give back
    assert linecache.checkcache is own
    linecache.checkcache(str(source))  # its own check again: the edit is seen
    assert linecache.getline(str(source), 1) == "second = 2\n"


def test_the_samplers_kept_open_files_read_fresh_figures_and_close_for_gone_threads() -> None:
    files = loopdebug._KeptOpen()
    me = threading.get_native_id()
    try:
        first = files.read(me)
        assert first is not None
        spin_until = time.thread_time() + 0.02
        while time.thread_time() < spin_until:  # 20 ms on a CPU: the figure must move
            pass
        again = files.read(me)
        assert again is not None and again[0] - first[0] >= 15_000_000  # ns
        opened = loopdebug.read_schedstat(f"/proc/self/task/{me}/schedstat")
        assert opened is not None and again[0] <= opened[0]  # the same figure, read later
        release = threading.Event()
        other = threading.Thread(target=release.wait, args=(5,))
        other.start()
        assert other.native_id is not None
        tid = other.native_id
        listed, found = files.threads()
        assert tid in found and me in found and listed <= time.perf_counter()
        release.set()
        other.join(5)
        # join returns once Python is done with the thread; the kernel's task can stay
        # listed a moment longer (seen: 1 run in ~20 beside a unit suite).
        until_sync(lambda: not Path(f"/proc/self/task/{tid}").exists(), 5, "the task gone")
        assert tid not in files.threads()[1]  # its file closed, not read again
        assert tid not in files._fds
        assert files.read(tid) is None
    finally:
        files.close()
    assert not files._fds


def test_the_host_speed_counts_only_units_slowed_past_the_mark() -> None:
    base = [(0.01 * i, 20_000) for i in range(100)]  # the median unit: 20 us
    inside = [(1.01, 20_000), (1.02, 100_000), (1.03, 80_000), (1.04, 20_000)]  # 5x, 4x
    assert loopdebug.host_speed(base + inside, 1.005, 1.045) == pytest.approx(
        (1 + 0.2 + 0.25 + 1) / 4
    )
    # a unit 2.5 times the median is a cold cache or a busy sibling, not the host: no figure
    mild = [(1.01, 50_000), (1.02, 50_000)]
    assert loopdebug.host_speed(base + mild, 1.005, 1.045) is None
    # one unit inside says too little
    assert loopdebug.host_speed([*base, (1.01, 200_000)], 1.005, 1.045) is None
    assert loopdebug.host_speed([], 0.0, 1.0) is None


def test_a_line_under_the_limit_at_the_hosts_normal_speed_is_excused() -> None:
    line = "{} <Handle x> took 120 ms (limit 50 ms; the host ran the CPU at {}% of its speed "
    line += "meanwhile: ~{} ms {})"
    slowed = line.format(loopdebug.MARK, 25, 30, loopdebug.NORMAL_SPEED)
    slow_anyway = line.format(loopdebug.MARK, 42, 50, loopdebug.NORMAL_SPEED)
    assert loopdebug.unexplained("\n".join((slowed, slow_anyway))) == [slow_anyway]


def _asyncio_record(handle: str, seconds: float) -> logging.LogRecord:
    """The record asyncio's debug mode logs for a slow callback, made just now."""
    return logging.LogRecord(
        "asyncio", logging.WARNING, __file__, 1, loopdebug._ASYNCIO_MSG, (handle, seconds), None
    )


@pytest.mark.parametrize(
    ("factor", "on_cpu_ms", "normal_ms"),
    [(5, 90, 28), (5, 60, 52), (5, 2, 98), (2, 90, None), (1, 90, None)],
)
def test_a_callback_the_host_slowed_is_excused_by_its_time_at_normal_speed(
    factor: int, on_cpu_ms: int, normal_ms: int | None
) -> None:
    """A 100 ms callback whose units ran ``factor`` times dearer: its time on a CPU
    (``on_cpu_ms`` between the readings inside it) at the host's normal speed, the rest as
    it was: ``normal_ms`` by hand (100 - on_cpu_ms x 0.8 at 20 %), None where no unit
    was slowed past the mark. Working through a 5x spell it is excused (~28 ms); half
    asleep it is not (~52 ms); asleep, blocking the loop, a spell excuses nothing (~98 ms)."""
    sampler = loopdebug.RunQueueSampler(threading.get_native_id())  # its thread not run
    found = loopdebug.SlowCallbackFilter(50, sampler)
    # The record first, so that the span the filter reads from it ends at ``now`` however
    # long the readings take to make (a collection in between moved it past the first).
    now = time.perf_counter()
    record = _asyncio_record("<Handle slowed>", 0.100)
    sampler.units.extend((now - 1.9 + 0.01 * i, 20_000) for i in range(150))
    # a 100 ms callback ending now, three readings inside it, each unit ``factor`` times dearer
    sampler.units.extend((now - t, 20_000 * factor) for t in (0.08, 0.05, 0.02))
    sampler.samples.append((now - 0.095, now - 0.0949, 0, 10_000_000))
    sampler.samples.append((now - 0.005, now - 0.0049, 0, (10 + on_cpu_ms) * 1_000_000))
    assert found.filter(record)
    text = record.getMessage()
    assert text.startswith(loopdebug.MARK) and "took 100 ms" in text
    if normal_ms is not None:
        assert f"~{normal_ms} ms {loopdebug.NORMAL_SPEED}" in text and "at 20% of" in text
        assert f"(its {on_cpu_ms} ms on a CPU scaled)" in text
    else:
        assert loopdebug.NORMAL_SPEED not in text
    if normal_ms is not None and normal_ms < 50:
        assert found.preempted == [text] and found.lines == [] and found.count == 0
        assert loopdebug.unexplained(text) == []
    else:
        assert found.lines == [text] and found.count == 1
        assert loopdebug.unexplained(text) == [text]


def test_the_sampler_times_a_unit_at_each_reading() -> None:
    sampler = loopdebug.RunQueueSampler(threading.get_native_id())
    assert sampler.start()
    try:
        deadline = time.monotonic() + 5
        while len(sampler.units) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sampler.stop()
    units = list(sampler.units)
    assert len(units) >= 5
    assert all(ns > 0 for _, ns in units)
    assert [t for t, _ in units] == sorted(t for t, _ in units)


async def test_a_callback_slow_right_after_the_start_has_the_readings_before_it() -> None:
    """The sampler takes its first readings as the report starts: a callback slow at once
    says how long its thread waited for a CPU and where the process's CPU went, as one
    later does (the sampler's own readings of every thread come 40 ms in)."""
    loop = asyncio.get_running_loop()
    found = loopdebug.report_slow_callbacks(loop, 20)
    assert found.sampler is not None
    assert len(found.sampler.samples) >= 1 and len(found.sampler.threads) >= 1
    try:
        loop.call_soon(time.sleep, 0.06)  # blocking the loop at once is the thing under test
        await until(lambda: any("sleep" in x for x in found.lines), 5, "the callback's report")
    finally:
        loopdebug.stop_reporting(loop, found)
    (line,) = [x for x in found.lines if "sleep" in x]
    assert re.search(rf"{loopdebug.WAITED} \d+ ms", line), line
    assert re.search(r"this thread on a CPU \d+ ms; others .* in the \d+ ms around it\)$", line)


async def test_a_callback_that_waited_for_the_disk_to_page_code_back_in_says_so(
    tmp_path: Path,
) -> None:
    """A callback that touches pages the host dropped (here: a mapped file's, dropped
    from the page cache with POSIX_FADV_DONTNEED) sleeps until the disk reads them back:
    its line counts the process's major page faults, and is not excused for them."""
    data = tmp_path / "cold.bin"
    size = 64 * mmap.PAGESIZE
    data.write_bytes(os.urandom(size))
    with data.open("rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        mapped = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
    try:

        def touch_cold_pages() -> None:
            sum(mapped[i] for i in range(0, size, mmap.PAGESIZE))  # one read a page
            time.sleep(0.06)  # and over the limit whatever the disk's speed

        loop = asyncio.get_running_loop()
        found = loopdebug.report_slow_callbacks(loop, 20)
        try:
            await asyncio.sleep(0.03)  # a reading of the faults before the callback
            loop.call_soon(touch_cold_pages)
            await until(lambda: any("touch_cold" in x for x in found.lines), 5, "the report")
        finally:
            loopdebug.stop_reporting(loop, found)
    finally:
        mapped.close()
    (line,) = [x for x in found.lines if "touch_cold" in x]
    faults = re.search(
        rf"; (\d+) major page faults in the process \({loopdebug.MAJOR_FAULTS}\)", line
    )
    assert faults is not None, line
    assert int(faults.group(1)) >= 1
    assert re.search(r"this thread on a CPU \d+ ms; others .* in the \d+ ms around it\)$", line)
