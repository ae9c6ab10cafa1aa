"""The event loop's slow-callback report: every callback over a threshold becomes a log line.

asyncio's debug mode times each callback and logs ``Executing <Handle ...> took 0.061
seconds`` on the ``asyncio`` logger. This rewrites that record into one recognisable
line, ``slow callback: <what> took 61 ms (limit 50 ms)``, counts it, and leaves every
other asyncio record alone. The integration tests run the bridge with it (50 ms, the
team's limit) and fail on any such line (tests/integration/conftest.py).

On Linux it also says how much of that time the loop's thread spent runnable but not
running (the kernel's run-queue wait, ``/proc/<pid>/task/<tid>/schedstat``): ``waited
for a CPU 45 ms``. That time was other processes' (or other threads') CPU on a busy
machine, not the callback's: a callback blocked in I/O, in a lock or waiting for the GIL
sleeps, which is not run-queue wait. A line whose callback took less than the limit
without that wait is *preempted*, not slow: the filter keeps it apart and ``unexplained``
excuses it. The wait is a lower bound (a sampling thread reads the figure every 10 ms and
the readings taken inside the callback's span are compared), so a callback is never
excused by more wait than it had.

A host can also slow the CPU itself: on the 2-vCPU VM the project is tested on, both
vCPUs run 3-15 times slower for 50-200 ms every ~1.5 s (BENCHMARKS.md §12, sixteenth
session), and the guest counts that as the running thread's CPU time, not as a wait. So
the sampling thread also times a fixed unit of work (a SHA-256 of 16 KiB, ~15-50 us) on
its own thread's CPU clock at each reading. A unit that took ``SLOWED`` times the median
of the last two seconds' or more says the host ran the CPUs that much slower then; a
callback with such units inside its span gets ``~12 ms at the host's normal speed``: its
thread's time on a CPU inside it (a lower bound, from the same readings) scaled by the
speed its units measured (units under ``SLOWED`` count as full speed, so a CPU shared with
a busy sibling thread excuses nothing), and the rest of its own time (less any run-queue
wait) as it was: a spell slows work, not a sleep or a blocking call, so a callback that
blocked the loop is never excused by one. Under the limit at normal speed, the line is
excused like a preempted one: the host's doing, not the callback's.

A line also counts the process's major page faults meanwhile (``3 major page faults in
the process (pages read back from the disk)``): a thread that touches a page of code or
a mapped file that the host's memory reclaim dropped sleeps until the disk reads it
back. The lab's host runs such a reclaim (DAMON's pageout of memory idle for a minute),
and a lab bridge's first API request once slept 414 of its 423 ms, neither on a CPU nor
waiting for one (CI rehearsal, twenty-first session). Faults excuse nothing: they are
said, so a stall they explain is told from a blocking call in the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import linecache
import logging
import os
import re
import resource
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

MARK: Final = "slow callback:"
# What a test writes into a bridge's log after it SIGSTOPped the process for a while
# (ccbridge.lab.demo.BridgeProcess.stopped): a callback the stop landed in is reported
# as slow by the whole stop, which is the test's doing, not the bridge's.
STOPPED_MARK: Final = "bridge stopped by the test for"
_TOOK = re.compile(re.escape(MARK) + r".* took (\d+) ms \(limit (\d+(?:\.\d+)?) ms")
WAITED: Final = "waited for a CPU"
_WAITED = re.compile(re.escape(WAITED) + r" (\d+) ms")
_STOPPED = re.compile(re.escape(STOPPED_MARK) + r" (\d+(?:\.\d+)?) ms")
NORMAL_SPEED: Final = "at the host's normal speed"
MAJOR_FAULTS: Final = "pages read back from the disk"
_NORMAL = re.compile(r"~(\d+) ms " + re.escape(NORMAL_SPEED))
ENV: Final = "CCBRIDGE_LOOP_DEBUG_MS"  # e.g. 50: what ``ccbridge run`` reads by default

_ASYNCIO_MSG = "Executing %s took %.3f seconds"  # asyncio.base_events._run_once (uvloop's too)
_asyncio_log = logging.getLogger("asyncio")


def env_threshold_ms() -> float | None:
    """The threshold from CCBRIDGE_LOOP_DEBUG_MS, None when unset or empty."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{ENV} must be a positive number of milliseconds, not {raw!r}")
    return value


# Seconds between two readings of the loop thread's schedstat: at 5 ms, with the wait on
# a threading.Event, the sampler cost 4.5-7.5 % of a core in every process with the report
# on (45-75 ms of CPU a second, nearly all of it the wake-ups on this VM), CPU and GIL the
# loop then shares in every lab test: 2-4 readings inside a 50 ms callback are enough.
SAMPLE_EVERY = 0.010
# The host's speed: a unit of work timed on the sampling thread's CPU clock at each
# reading (a SHA-256 releases the GIL over 2 KiB), and how much slower than the median
# unit one must be to count (the host's spells are 3-15x; a unit after a sleep on a cold
# cache, or beside a busy sibling thread, is up to ~2.8x).
_UNIT = bytes(16384)
SLOWED = 3.0


def _time_unit() -> tuple[float, int]:
    """(perf_counter when it started, ns of this thread's CPU) of one unit of work."""
    started, cpu = time.perf_counter(), time.thread_time_ns()
    hashlib.sha256(_UNIT).digest()
    return started, time.thread_time_ns() - cpu


def host_speed(units: list[tuple[float, int]], began: float, ended: float) -> float | None:
    """The share of [began, ended] (perf_counter instants) the CPU ran at its normal
    speed, from the units (start, ns) of the two seconds around it: each unit inside
    stands for its stretch, at 1 / (its time over the median unit) when that is
    ``SLOWED`` or more, else at full speed; None with fewer than two units inside or
    none slowed (nothing to say)."""
    if len(units) < 3:
        return None
    median = sorted(ns for _, ns in units)[len(units) // 2]
    inside = [ns for t, ns in units if began <= t <= ended]
    if len(inside) < 2 or median <= 0:
        return None
    speeds = [median / ns if ns >= SLOWED * median else 1.0 for ns in inside]
    if min(speeds) == 1.0:
        return None
    return sum(speeds) / len(speeds)


def _schedstat_path(tid: int) -> str:
    return f"/proc/self/task/{tid}/schedstat"


def _parse_schedstat(text: bytes) -> tuple[int, int]:
    """(ns on a CPU, ns waiting for one) from a schedstat file's text; ValueError if it
    is not one."""
    on_cpu, waited = text.split()[:2]
    return int(on_cpu), int(waited)


def read_schedstat(path: str) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one) of a thread; None where Linux's
    schedstat is not there or not readable."""
    try:
        with open(path, "rb") as f:
            return _parse_schedstat(f.read())
    except (OSError, ValueError):
        return None


def _major_faults() -> int:
    """The process's major page faults so far (getrusage: one system call, no file)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


def _thread_ids() -> set[int] | None:
    """This process's threads' native ids; None when /proc cannot list them."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        return None


def _each(
    tids: set[int], read: Callable[[int], tuple[int, int] | None]
) -> dict[int, tuple[int, int]]:
    """``read(tid)`` of each thread that gave a figure, by native id."""
    found: dict[int, tuple[int, int]] = {}
    for tid in tids:
        figure = read(tid)
        if figure is not None:
            found[tid] = figure
    return found


def read_threads_cpu() -> dict[int, tuple[int, int]]:
    """(ns on a CPU, ns waiting for one) so far of every thread of this process, by
    native thread id."""
    tids = _thread_ids()
    if tids is None:
        return {}
    return _each(tids, lambda tid: read_schedstat(_schedstat_path(tid)))


class _KeptOpen:
    """Schedstat files opened once and read again with ``pread``, for the sampler's own
    thread. Opening a /proc file after each sleep cost ~150 us of CPU on this VM, pread on
    an open one ~40 us: with the wake-ups, 23-26 against 11 ms of CPU a second at 100
    readings a second. A thread gone gives an error or nothing: its file is closed."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}

    def read(self, tid: int) -> tuple[int, int] | None:
        try:
            fd = self._fds.get(tid)
            if fd is None:
                fd = self._fds[tid] = os.open(_schedstat_path(tid), os.O_RDONLY | os.O_CLOEXEC)
            return _parse_schedstat(os.pread(fd, 256, 0))
        except (OSError, ValueError):
            self._close(tid)
            return None

    def threads(self) -> tuple[float, dict[int, tuple[int, int]]]:
        """As ``read_threads_cpu``, the files kept open; with the perf_counter right after
        the threads were listed: a thread started after it is not in the reading (stamped
        before the listing, a thread born just after the stamp was taken for an old one)."""
        tids = _thread_ids()
        listed = time.perf_counter()
        if tids is None:
            return listed, {}
        for gone in set(self._fds) - tids:
            self._close(gone)
        return listed, _each(tids, self.read)

    def _close(self, tid: int) -> None:
        fd = self._fds.pop(tid, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        for tid in list(self._fds):
            self._close(tid)


def thread_name(tid: int) -> str:
    """A thread's Python name, or the kernel's for a thread Python did not start."""
    for thread in threading.enumerate():
        if thread.native_id == tid:
            return thread.name
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip() or str(tid)
    except OSError:
        return str(tid)


def _by_thread(ms: dict[int, float]) -> str:
    """``48 ms (ccbridge-worker_4 40 ms, ...)``: the total and its four largest shares."""
    busy = sorted(((v, tid) for tid, v in ms.items() if v >= 1), reverse=True)
    names = ", ".join(f"{thread_name(tid)} {v:.0f} ms" for v, tid in busy[:4])
    return f"{sum(ms.values()):.0f} ms" + (f" ({names})" if names else "")


class RunQueueSampler:
    """Reads the loop thread's schedstat every SAMPLE_EVERY seconds in a thread of its
    own and keeps the last two seconds, so a slow callback's run-queue wait can be told
    after it returned. ~1 % of a core (wake-ups and reads), only while the report is on.

    Every THREADS_EVERY readings it also reads every thread's CPU time, so a slow
    callback's report can say where the process's CPU went meanwhile: a loop thread that
    was neither on a CPU nor waiting for one slept, in a blocking call or waiting for
    the GIL that another thread held (whose CPU time then shows)."""

    # Every 40 ms: each reading opens every thread's schedstat, and a process with many
    # threads (a lab test's: SIPp wrappers, workers) spent 21 ms of 106 on it every 10 ms
    # (CI rehearsal, eleventh session), CPU and GIL the loop then waited for.
    THREADS_EVERY = 4

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self.path = _schedstat_path(tid)
        # (perf_counter before the read, after it, ns waited, ns on a CPU): the figures were
        # read between the two instants
        self.samples: deque[tuple[float, float, int, int]] = deque(maxlen=int(2 / SAMPLE_EVERY))
        # (perf_counter once the threads were listed, {tid: (ns on a CPU, ns waiting)})
        self.threads: deque[tuple[float, dict[int, tuple[int, int]]]] = deque(
            maxlen=int(2 / SAMPLE_EVERY / self.THREADS_EVERY)
        )
        # (perf_counter when it started, ns of CPU): the host's speed, one a reading
        self.units: deque[tuple[float, int]] = deque(maxlen=int(2 / SAMPLE_EVERY))
        # (perf_counter after it, the process's major page faults so far), one a reading
        self.faults: deque[tuple[float, int]] = deque(maxlen=int(2 / SAMPLE_EVERY))
        self._stop = threading.Event()
        # The schedstat files, opened by the first reading (start's, on the calling
        # thread) and kept for the sampling thread's.
        self._files = _KeptOpen()
        self._thread = threading.Thread(target=self._run, name="loopdebug-schedstat", daemon=True)

    def start(self) -> bool:
        """Take the first readings on the calling thread (the loop's), then start sampling.

        They are what a callback slow right after the start is measured from. The
        sampler's own first reading of this thread comes ``SAMPLE_EVERY`` later, and of
        every thread ``THREADS_EVERY`` readings later: a slow callback in those first 10
        and 40 ms had no wait for a CPU, or no threads' CPU, in its line (a lab test's
        fixture step right after its gate started, 64 ms, said "waited for a CPU 0 ms"
        and nothing of where the rest went)."""
        if not self._sample():
            self._files.close()
            return False
        self.threads.append(self._files.threads())
        self._thread.start()
        return True

    def _sample(self) -> bool:
        """One reading of the loop thread's schedstat into ``samples``; False when it
        cannot be read (the thread is gone, or the kernel has no schedstat)."""
        before = time.perf_counter()
        read = self._files.read(self.tid)
        if read is None:
            return False
        after = time.perf_counter()
        self.samples.append((before, after, read[1], read[0]))
        self.faults.append((after, _major_faults()))
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1)

    def _run(self) -> None:
        tick = 0
        try:
            # A plain sleep, the stop flag looked at after it: a timed wait on an Event
            # cost 2-3 times a sleep's CPU a wake-up here (120 against 45 us).
            while not self._stop.is_set():
                time.sleep(SAMPLE_EVERY)
                if self._stop.is_set() or not self._sample():
                    return
                self.units.append(_time_unit())
                tick += 1
                if tick % self.THREADS_EVERY == 0:
                    self.threads.append(self._files.threads())
        finally:
            self._files.close()

    def cpu_meanwhile(self, began: float) -> str:
        """Where the process's CPU went from the last all-threads reading before
        ``began`` until now (called right after the slow callback, on the loop's
        thread): ``this thread on a CPU 12 ms; others 48 ms (asyncio_1 40 ms, ...),
        waiting for a CPU 30 ms (asyncio_1 30 ms); threads started meanwhile: x in the
        70 ms around it`` (the last two parts only when there is something to say);
        empty when there is no reading before it."""
        # A copy first: the sampler's thread appends meanwhile (list() of a deque is one C call).
        before = [(t, cpu) for t, cpu in list(self.threads) if t <= began]
        if not before:
            return ""
        t0, then = before[-1]
        now = read_threads_cpu()
        span_ms = (time.perf_counter() - t0) * 1000
        ran: dict[int, float] = {}
        waited: dict[int, float] = {}
        for tid, (on_cpu, queued) in now.items():
            was = then.get(tid, (0, 0))
            ran[tid] = (on_cpu - was[0]) / 1e6
            waited[tid] = (queued - was[1]) / 1e6
        own = ran.pop(self.tid, 0.0)
        waited.pop(self.tid, None)
        text = f"this thread on a CPU {own:.0f} ms; others {_by_thread(ran)}"
        # Another thread that waited for a CPU while holding the GIL holds the loop too:
        # on an overloaded machine that is the loop thread's sleep (a GIL convoy).
        if sum(waited.values()) >= 1:
            text += f", waiting for a CPU {_by_thread(waited)}"
        born = sorted(tid for tid in now if tid not in then)
        if born:
            text += "; threads started meanwhile: " + ", ".join(thread_name(t) for t in born[:4])
        return text + f" in the {span_ms:.0f} ms around it"

    def faults_meanwhile(self, began: float) -> int | None:
        """The process's major page faults (pages its threads waited for the disk to read
        back: code or files the host had evicted) since the last reading before
        ``began``; None without one. A loop thread that slept through a callback, neither
        on a CPU nor waiting for one, may have been waiting for those."""
        before = [n for t, n in list(self.faults) if t <= began]
        return _major_faults() - before[-1] if before else None

    def waited_ms(
        self, began: float, ended: float, now: tuple[float, int, int] | None = None
    ) -> float | None:
        """A lower bound of the loop thread's run-queue wait in [began, ended]
        (perf_counter instants): between two readings taken inside it, or between the
        last reading before it and ``now`` (perf_counter after a reading taken on the
        loop thread after ``ended``, and its ns waited), less the time outside the span.
        None when neither pair is there.

        The second pair is the one a preemption leaves: this thread needs the GIL to take
        a reading, and a loop thread preempted while it holds the GIL gives it to nobody,
        so a callback that only waited for a CPU had no reading inside it (the 50 ms gate
        then failed lab tests on a loaded machine, BENCHMARKS §12 ninth session)."""
        return self._grown_ms(0, began, ended, now)

    def ran_ms(
        self, began: float, ended: float, now: tuple[float, int, int] | None = None
    ) -> float | None:
        """A lower bound of the loop thread's time on a CPU in [began, ended], from the
        same readings as ``waited_ms``; None when neither pair is there."""
        return self._grown_ms(1, began, ended, now)

    def _grown_ms(
        self, figure: int, began: float, ended: float, now: tuple[float, int, int] | None
    ) -> float | None:
        """How much one schedstat figure (0: ns waited, 1: ns on a CPU) at least grew in
        [began, ended]: ``waited_ms``'s two pairs of readings."""
        samples = list(self.samples)
        bounds = []
        inside = [s[2 + figure] for s in samples if s[0] >= began and s[1] <= ended]
        if len(inside) >= 2:
            bounds.append(inside[-1] - inside[0])
        before = [(s[0], s[2 + figure]) for s in samples if s[1] <= began]
        if now is not None and before:
            # The reading before was taken at or after t0; the one now at or before its
            # perf_counter: at most that much of the time between them is outside.
            t0, was = before[-1]
            outside = (began - t0) + max(0.0, now[0] - ended)
            bounds.append(now[1 + figure] - was - int(outside * 1e9))
        if not bounds:
            return None
        return max(0, *bounds) / 1e6

    def speed(self, began: float, ended: float) -> float | None:
        """``host_speed`` over this sampler's units (a copy: its thread appends)."""
        return host_speed(list(self.units), began, ended)

    def read_now(self) -> tuple[float, int, int] | None:
        """(perf_counter after it, ns waited, ns on a CPU): a reading taken by the calling
        thread."""
        read = read_schedstat(self.path)
        return None if read is None else (time.perf_counter(), read[1], read[0])


class SlowCallbackFilter(logging.Filter):
    """Rewrites asyncio's slow-callback records and counts them.

    It also times the garbage collector (``gc.callbacks``): a callback that was slow
    because a collection ran inside it says so (``gc 70 ms``), since the fix is then
    about what the process keeps alive, not about that callback's code. ``lines`` are
    the slow callbacks; ``preempted`` the ones under the limit once the time their
    thread waited for a CPU is taken out (module docstring).
    """

    def __init__(self, limit_ms: float, sampler: RunQueueSampler | None = None) -> None:
        super().__init__()
        self.limit_ms = limit_ms
        self.sampler = sampler
        self.count = 0
        self.lines: list[str] = []
        self.preempted: list[str] = []
        self._gc_started = 0.0
        self._gcs: deque[tuple[float, float]] = deque(maxlen=64)  # (ended, seconds)

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
        elif self._gc_started:
            self._gcs.append((now, now - self._gc_started))

    def _meanwhile(self, began: float) -> str:
        """The threads' CPU part of the line; a failure to read it costs only that part
        (this runs inside asyncio's loop step: an exception here would end the loop's run)."""
        assert self.sampler is not None
        try:
            meanwhile = self.sampler.cpu_meanwhile(began)
            faults = self.sampler.faults_meanwhile(began)
        except Exception as exc:  # never the loop's problem
            return f"; threads' CPU not read ({type(exc).__name__})"
        text = f"; {faults} major page faults in the process ({MAJOR_FAULTS})" if faults else ""
        return text + (f"; {meanwhile}" if meanwhile else "")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _ASYNCIO_MSG and isinstance(record.args, tuple) and len(record.args) == 2:
            handle, seconds = record.args
            ms = seconds * 1000 if isinstance(seconds, float) else float("nan")
            # asyncio logs right after the callback returned: collections that ended
            # within its duration ran inside it.
            # The callback ended where asyncio made this record (a few microseconds
            # after it timed it): in perf_counter's time, ``ended``.
            ended = time.perf_counter() - max(0.0, time.time() - record.created)
            since = ended - ms / 1000 - 0.001
            gc_ms = 1000 * sum(took for gc_end, took in self._gcs if gc_end >= since)
            waited = speed = ran = None
            if self.sampler is not None:
                # On the loop's thread, right after the callback (asyncio logs there).
                now = self.sampler.read_now()
                began = ended - ms / 1000
                waited = self.sampler.waited_ms(began, ended, now)
                speed = self.sampler.speed(began, ended)
                if speed is not None:
                    ran = self.sampler.ran_ms(began, ended, now)
            own = ms - (waited or 0.0)
            during = f"; {WAITED} {waited:.0f} ms" if waited is not None else ""
            normal = None
            if speed is not None:
                # Only the time on a CPU ran slow: the rest (asleep, blocked) counts whole.
                on_cpu = min(ran or 0.0, own)
                normal = own - on_cpu * (1.0 - speed)
                during += (
                    f"; the host ran the CPU at {speed:.0%} of its speed meanwhile: "
                    f"~{normal:.0f} ms {NORMAL_SPEED} (its {on_cpu:.0f} ms on a CPU scaled)"
                )
            during += f"; gc {gc_ms:.0f} ms during it" if gc_ms >= 1 else ""
            if self.sampler is not None:
                during += self._meanwhile(ended - ms / 1000)
            record.msg = MARK + " %s took %.0f ms (limit %.0f ms%s)"
            record.args = (handle, ms, self.limit_ms, during)
            excused = waited is not None and own < self.limit_ms
            if excused or (normal is not None and round(normal) < self.limit_ms):
                self.preempted.append(record.getMessage())
            else:
                self.count += 1
                self.lines.append(record.getMessage())
        return True


class _SourceLinesKept:
    """``linecache.checkcache`` without its per-file ``os.stat`` while a report is on.

    Debug mode records where each future, task and handle was made. The C ``Future``
    (``_asyncio``) does it with ``traceback.extract_stack()``: the whole stack, each
    frame's source line, and ``linecache.checkcache(file)`` for every file on it, an
    ``os.stat`` each. Every stat gives the GIL up, and while a worker thread computes (a
    /metrics text, a report's CSV) the loop thread waits up to a switch interval to get
    it back, every time. A lab test's /metrics request spent 5-15 ms of its step in
    ``wrap_future`` alone on a quiet machine (0.2-0.4 ms with the stats skipped), and 53
    ms in a CI rehearsal, failing the 50 ms gate: the report measuring its own cost, which
    a bridge not in debug mode never pays. A line read once stays the one shown; the code
    that runs is the code loaded then, so it is the right line anyway. A full check
    (``checkcache()``, no file) runs as linecache's own does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._own: Callable[..., None] = linecache.checkcache

    def _checkcache(self, filename: str | None = None) -> None:
        if filename is None:
            self._own()

    def keep(self) -> None:
        with self._lock:
            if self._users == 0:
                self._own = linecache.checkcache
                linecache.checkcache = self._checkcache
            self._users += 1

    def release(self) -> None:
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0 and linecache.checkcache == self._checkcache:
                linecache.checkcache = self._own


_lines_kept = _SourceLinesKept()


def report_slow_callbacks(loop: asyncio.AbstractEventLoop, limit_ms: float) -> SlowCallbackFilter:
    """Turn on ``loop``'s debug mode with ``slow_callback_duration = limit_ms``; return
    the filter that rewrites and counts the reports (remove it with ``stop_reporting``).
    Until then, debug mode's stack records stat no source file (``_SourceLinesKept``)."""
    _lines_kept.keep()
    loop.set_debug(True)
    loop.slow_callback_duration = limit_ms / 1000
    sampler = RunQueueSampler(threading.get_native_id())  # called on the loop's thread
    found = SlowCallbackFilter(limit_ms, sampler if sampler.start() else None)
    _asyncio_log.addFilter(found)
    gc.callbacks.append(found.on_gc)
    return found


def io_timer(loop: asyncio.AbstractEventLoop, what: str) -> Callable[[float], None] | None:
    """For a protocol's ``data_received``: a function to call with its start time
    (``time.perf_counter()``) when it returns, which reports it as the loop's debug mode
    reports a slow callback; None when the loop needs none.

    asyncio's loop calls ``data_received`` inside a handle it times; uvloop calls it
    straight from libuv, untimed, so a slow AMI chunk would pass the gate unseen there.
    Only a loop in debug mode that is not asyncio's own gets a timer.
    """
    if not loop.get_debug() or isinstance(loop, asyncio.BaseEventLoop):
        return None
    limit = loop.slow_callback_duration

    def done(started: float) -> None:
        took = time.perf_counter() - started
        if took >= limit:
            _asyncio_log.warning(_ASYNCIO_MSG, what, took)

    return done


def stop_reporting(loop: asyncio.AbstractEventLoop, found: SlowCallbackFilter) -> None:
    loop.set_debug(False)
    _lines_kept.release()
    _asyncio_log.removeFilter(found)
    if found.sampler is not None:
        found.sampler.stop()
    with contextlib.suppress(ValueError):
        gc.callbacks.remove(found.on_gc)


def stopped_line(seconds: float) -> str:
    """The log line that says the process was SIGSTOPped for ``seconds``."""
    return f"{STOPPED_MARK} {seconds * 1000:.0f} ms"


def unexplained(text: str) -> list[str]:
    """The slow-callback lines of a log that a test's SIGSTOP does not explain.

    A callback the process was stopped in is reported as taking the whole stop plus its
    own run time; it is excused only when that own run time (reported minus the stop)
    is within the limit, so a callback that was slow by itself still fails the test.
    The stop as the test timed it is a little longer than the kernel's (the test's own
    steps around the two signals), hence the 100 ms allowance below it. A callback that
    took less than the limit once its thread's wait for a CPU is taken out is excused
    too, and one under the limit at the host's normal speed (module docstring).
    """
    stops = [float(m.group(1)) for m in _STOPPED.finditer(text)]
    found = []
    for line in text.splitlines():
        if MARK not in line:
            continue
        took = _TOOK.search(line)
        if took is not None:
            ms, limit = float(took.group(1)), float(took.group(2))
            if any(stop - 100 <= ms <= stop + limit for stop in stops):
                continue
            waited = _WAITED.search(line)
            if waited is not None and ms - float(waited.group(1)) < limit:
                continue
            normal = _NORMAL.search(line)
            if normal is not None and float(normal.group(1)) < limit:
                continue
        found.append(line)
    return found
