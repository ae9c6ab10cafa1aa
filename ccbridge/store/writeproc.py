"""The record writer's database work in a process of its own (``store.writer_process``).

Why: the bridge's event loop, the journal's thread and the database driver share one GIL.
At 2,000 calls/s the writer's rows and the driver's work took a third of the bridge
process's CPU a call (BENCHMARKS.md §9b); in a child they run on the other core. What
stays in the bridge: the records in memory, the journal (the crash guarantee is the
journal's, as before: a record is in the file before it is handed over, and the journal
is truncated only once the child said the batch is committed), the byte bound, the
counts, retries and the SQLAlchemy way for a batch the driver refused. The child does
one thing: ``write_batch`` of each batch it is sent, in order, and answers.

The pipe: frames of a 4-byte length and a pickle, parent to child then child to parent,
one batch at a time. Pickle is safe here: both ends are this program, over a pipe that
nothing else holds. The first frame carries the database URL and its password (never on
the command line, where ``ps`` shows it). The child ends when its input closes: when the
bridge stops, or is killed (even by SIGKILL), the child goes too.

The same child runs the report worker's jobs (reports, staffing plans, the rollup's
rounds: ccbridge/reports/worker.py) over a second channel, a socket pair whose child end
it inherits (``--jobs FD``): one interpreter beside the bridge instead of three (the
writer's child, a ``spawn`` process pool's worker and multiprocessing's resource tracker:
~65 MB of RSS, BENCHMARKS.md §4). In the child the jobs run one at a time on a thread of
their own, each on its own event loop, while the writes go on on the main thread's: a
report of a month (~1 s of Python) does not hold the batches behind it, they share the
GIL with it (a switch every 5 ms), not wait for its end. Slicing a report into bounded
steps between batches would have meant cutting SQLAlchemy's row processing and the
assembly into pieces; a thread costs nothing of the kind. Jobs carry a number and their
answers name it, so a job whose caller gave up (a cancelled request) leaves nothing out
of step: its answer is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import pickle
import socket
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ccbridge.config.model import SecretValue
from ccbridge.config.store import StoreSettings
from ccbridge.store.journal import read_lines
from ccbridge.store.records import Record
from ccbridge.store.write import DriverError, write_batch

log = logging.getLogger("ccbridge.store")

_HEAD = struct.Struct("<I")
MAX_FRAME = 1 << 30  # a batch is ~1 KB a call as a pickle: 500 records are ~70 KB


class WriteProcessGone(Exception):
    """The child ended or answered nonsense: the batch is written another way."""


# What the child answers a journal range with: rows sent per table, the offset after the
# last line it read, the records in those lines, the lines that were not records.
RangeWritten = tuple[dict[str, int], int, int, int]


class WriteProcess:
    """The parent's end: ``write`` is ``write_batch`` done in the child, ``write_range``
    the same for records the child reads from the bridge's journal itself."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._starting: asyncio.Task[None] | None = None
        self.starts = 0  # children started (a second one means the first one ended)
        self._jobs: _Jobs | None = None  # the current child's job channel
        self._closed = False  # close() was called: jobs refused until started again

    @property
    def closed(self) -> bool:
        """close() ended the child and nothing started it again: jobs are refused (a
        report arriving while the bridge stops does not start a child nobody ends)."""
        return self._closed

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def start_soon(self) -> None:
        """Start the child now, in the background: its imports take ~0.5 s of CPU, which
        at 2,000 calls/s is 8,000 records behind when the first batch waits for them
        (BENCHMARKS.md §9b). The bridge's start does not wait (FastAGI listens after it);
        the first write does."""
        self._closed = False
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start(), name="records-writer-process")

    async def _start(self) -> None:
        try:
            await self.ready()
        except Exception as exc:  # the first write starts one again, or writes here
            log.warning("record writer process did not start: %s", exc)

    async def ready(self) -> None:
        """The child is running and has its engine; WriteProcessGone when it could not."""
        self._closed = False
        async with self._lock:
            await self._running()

    async def _running(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None:
            if self._jobs is not None and not self._jobs.gone:
                return self._proc
            await self._kill()  # its job channel broke: a new child for both
        if self._jobs is not None:  # the last child's channel: its jobs are failed
            self._jobs.close()
            self._jobs = None
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ccbridge.store.writeproc",
                "--jobs",
                str(theirs.fileno()),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=MAX_FRAME,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._proc = proc
        self.starts += 1
        reader, writer = await asyncio.open_connection(sock=ours, limit=MAX_FRAME)
        self._jobs = _Jobs(reader, writer)
        password = self.settings.password.reveal() if self.settings.password else None
        assert proc.stdin is not None
        await self._ask(proc, ("open", self.settings.url, password), "ready")
        return proc

    async def write(self, records: Sequence[Record]) -> dict[str, int]:
        """Rows sent per table, as ``write.write_batch`` answers. DriverError when the
        driver refused the batch (the caller goes the SQLAlchemy way, as in-process),
        WriteProcessGone when the child ended (started again at the next write)."""
        async with self._lock:
            proc = await self._running()
            sent = await self._ask(proc, ("batch", [(r.table, r.values) for r in records]))
        if not isinstance(sent, dict):
            raise DriverError(f"in the writer process: an answer of {type(sent).__name__}")
        return sent

    async def write_range(
        self, path: str, offset: int, end: int, max_records: int, own: bool
    ) -> RangeWritten:
        """The records of the journal's lines in [offset, end), at most ``max_records``,
        read and written by the child (``journal.read_lines`` then ``write_batch``): the
        bridge neither holds them nor reads them back. Errors as ``write``."""
        async with self._lock:
            proc = await self._running()
            got = await self._ask(proc, ("range", path, offset, end, max_records, own))
        if not (
            isinstance(got, tuple)
            and len(got) == 4
            and isinstance(got[0], dict)
            and all(isinstance(v, int) for v in got[1:])
        ):
            raise DriverError(f"in the writer process: an answer of {got!r:.80}")
        return got

    async def job(self, name: str, args: tuple[Any, ...]) -> Any:
        """Run the job ``name`` of the child's table (``_job_table``) with ``args`` and
        return what it returned; the child is started when it is not running.
        WriteProcessGone when the child ended before answering (or close() was called),
        JobFailed when the job raised."""
        if self._closed:
            raise WriteProcessGone("the writer process was closed")
        jobs = self._jobs
        if jobs is None or self.pid is None or jobs.gone:
            async with self._lock:  # starting it: not beside a write's start
                await self._running()
                jobs = self._jobs
        assert jobs is not None
        return await jobs.ask(name, args)

    async def _ask(self, proc: asyncio.subprocess.Process, request: Any, want: str = "ok") -> Any:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(_frame(request))
            await proc.stdin.drain()
            kind, value = await _read_frame(proc.stdout)
        except BaseException as exc:
            # Cut mid-frame (a timeout, a cancel) or gone: the pipe is out of step,
            # so this child is done; the next write starts another.
            await self._kill()
            if isinstance(exc, Exception):
                raise WriteProcessGone(f"{exc.__class__.__name__}: {exc}") from exc
            raise
        if kind == want:
            return value
        if kind == "driver":
            raise DriverError(str(value))
        raise DriverError(f"in the writer process: {value}")

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if self._jobs is not None:
            self._jobs.close()
            self._jobs = None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def close(self) -> None:
        """End the child: its input closed, it finishes its batch and exits."""
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting  # a child half started is ended below, not left
            self._starting = None
        self._closed = True
        async with self._lock:
            if self._jobs is not None:
                self._jobs.close()
                self._jobs = None
            proc, self._proc = self._proc, None
            if proc is None or proc.returncode is not None:
                return
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                async with asyncio.timeout(5.0):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


class JobFailed(Exception):
    """A job raised in the child (a bug, not a fault it answers as a value): its type
    and message."""


# Frames larger than this are pickled and unpickled on a thread, not on the loop (a
# staffing plan's rows, a month's CSV); the loop then gets the GIL every 5 ms meanwhile.
_LOOP_PICKLE = 64 * 1024


class _Jobs:
    """The parent's end of one child's job channel: numbered requests written as they
    come, answers read by one task and handed to their askers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._numbers = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[str, Any]]] = {}
        self._why = "the writer process ended"
        self._broken = False  # a write failed: the channel is done, its reader or not
        self._task = asyncio.create_task(self._answers(), name="records-writer-jobs")

    @property
    def gone(self) -> bool:
        """No job may be sent: the answers' reader ended, or a write failed. A write that
        failed makes it gone at once: the reader sees the end a loop step or more later,
        and a job sent meanwhile (the report worker's second try) would be lost too."""
        return self._broken or self._task.done()

    async def ask(self, name: str, args: tuple[Any, ...]) -> Any:
        if self.gone:
            raise WriteProcessGone(self._why)
        number = next(self._numbers)
        answer: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = answer
        try:
            # Pickled on a thread (a config of 1,000 agents is ~80 KB, ~11 ms of pickling:
            # the loop gets the GIL every 5 ms meanwhile), then written whole: nothing else
            # writes between its bytes.
            frame = await asyncio.to_thread(_frame, (number, name, args))
            if self.gone:
                raise WriteProcessGone(self._why)
            self._writer.write(frame)
            await self._writer.drain()
            kind, value = await answer
        except (OSError, RuntimeError) as exc:  # the socket closed under the write
            self._why = f"the writer process ended ({exc.__class__.__name__}: {exc})"
            self._broken = True
            raise WriteProcessGone(self._why) from exc
        finally:
            self._waiting.pop(number, None)
        if kind == "ok":
            return value
        raise JobFailed(str(value))

    async def _answers(self) -> None:
        try:
            while True:
                (size,) = _HEAD.unpack(await self._reader.readexactly(_HEAD.size))
                if size > MAX_FRAME:
                    raise ValueError(f"a frame of {size} bytes")
                data = await self._reader.readexactly(size)
                if size > _LOOP_PICKLE:
                    got = await asyncio.to_thread(pickle.loads, data)
                else:
                    got = pickle.loads(data)
                number, kind, value = got
                answer = self._waiting.get(number)
                if answer is not None and not answer.done():  # else its asker gave up
                    answer.set_result((kind, value))
        except asyncio.CancelledError:
            self._why = "the writer process was stopped"
        except Exception as exc:  # the child ended (EOF) or sent nonsense
            self._why = f"the writer process ended ({exc.__class__.__name__}: {exc})"
        finally:
            self._fail_waiting()
            self._writer.close()

    def _fail_waiting(self) -> None:
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(WriteProcessGone(self._why))

    def close(self) -> None:
        self._task.cancel()
        self._fail_waiting()
        self._writer.close()


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEAD.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's object (either end); IncompleteReadError when the pipe ended."""
    (size,) = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes")
    return pickle.loads(await reader.readexactly(size))


# -- the child ---------------------------------------------------------------------------


def _job_table() -> dict[str, Callable[..., Any]]:
    """The jobs the child runs, by name; the report worker's module is imported with the
    first job, not before (a bridge that never asks for a report never loads it)."""
    from ccbridge.reports import worker

    return {"report": worker._job, "plan": worker._plan_job, "roll": worker._roll_job}


def _give_back() -> None:
    """After a job: its garbage collected and the free pages of malloc's heaps handed back
    to the system (``malloc_trim``). A month's report leaves tens of MB of freed blocks
    that the fixed trim threshold does not give back (they are not at the heap's top);
    the walk holds an arena's lock for milliseconds, which here delays the writer's
    batch, not the bridge's loop."""
    gc.collect()
    from ccbridge import malloc

    malloc.trim()


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    parts: list[bytes] = []
    while n:
        part = sock.recv(min(n, 1 << 20))
        if not part:
            return None
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def serve_jobs(sock: socket.socket) -> None:
    """The child's job thread: each request in turn, its answer (or the exception's type
    and message) written back with its number; returns when the bridge's end closes."""
    table: dict[str, Callable[..., Any]] | None = None
    with sock:
        while True:
            head = _recv_exactly(sock, _HEAD.size)
            if head is None:
                return
            (size,) = _HEAD.unpack(head)
            data = _recv_exactly(sock, size) if size <= MAX_FRAME else None
            if data is None:
                return
            number = 0
            try:
                number, name, args = pickle.loads(data)
                if table is None:
                    table = _job_table()
                reply = _frame((number, "ok", table[name](*args)))
            except Exception as exc:
                reply = _frame((number, "error", f"{exc.__class__.__name__}: {exc}"))
            del data
            _give_back()
            try:
                sock.sendall(reply)
            except OSError:
                return


class _JournalReader:
    """The child's own read-only descriptor of the bridge's journal, opened again when
    the path names another file (the bridge made a new one)."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._fd: int | None = None
        self._ino = -1

    def read(
        self, path: str, offset: int, end: int, max_records: int, own: bool
    ) -> tuple[list[Record], int, int]:
        ino = os.stat(path).st_ino
        if self._fd is None or path != self._path or ino != self._ino:
            self.close()
            self._fd, self._path, self._ino = os.open(path, os.O_RDONLY), path, ino
        return read_lines(self._fd, offset, end, max_records, own=own)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


async def _handle(engine: Any, journal: _JournalReader, request: Any) -> tuple[str, Any]:
    match request:
        case ("batch", list() as pairs):
            return "ok", await write_batch(engine, [Record(t, v) for t, v in pairs])
        case ("range", str() as path, int() as offset, int() as end, int() as most, bool() as own):
            records, nxt, bad = await asyncio.to_thread(journal.read, path, offset, end, most, own)
            sent = await write_batch(engine, records) if records else {}
            return "ok", (sent, nxt, len(records), bad)
    return "error", f"not a request: {request!r:.80}"


async def _serve() -> None:
    from ccbridge.store.engine import make_engine

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_FRAME)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer

    try:
        _, url, password = await _read_frame(reader)
    except asyncio.IncompleteReadError:
        return
    settings = StoreSettings(
        enabled=True,
        url=url,
        password=SecretValue(password, "store.password") if password else None,
    )
    engine = make_engine(settings)
    journal = _JournalReader()
    out.write(_frame(("ready", None)))
    out.flush()
    try:
        while True:
            try:
                request = await _read_frame(reader)
            except asyncio.IncompleteReadError:
                return  # the bridge closed the pipe, or is gone
            reply: tuple[str, Any]
            try:
                reply = await _handle(engine, journal, request)
            except DriverError as exc:
                reply = ("driver", str(exc))
            except Exception as exc:  # the parent writes the batch its own way
                reply = ("error", f"{exc.__class__.__name__}: {exc}")
            out.write(_frame(reply))
            out.flush()
    finally:
        journal.close()
        await engine.dispose()


# The child's CPU priority under the bridge's: on a busy machine the database's writes
# wait (the journal holds them, at no memory), not the bridge's loop and journal, which
# drop records only when the journal falls behind (BENCHMARKS.md §9b).
NICE = 5


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="ccbridge writer process: %(message)s")
    # glibc's malloc as in the bridge (ccbridge/malloc.py), before any thread starts: the
    # job thread, the SQLite connections' threads and the to_thread helpers share one
    # arena instead of one each.
    from ccbridge import malloc

    malloc.tune()
    with contextlib.suppress(OSError):
        os.nice(NICE)
    if args[:1] == ["--jobs"] and len(args) == 2:
        sock = socket.socket(fileno=int(args[1]))
        # a daemon: the process ends with the write loop (its input closed), a job or not
        threading.Thread(target=serve_jobs, args=(sock,), name="jobs", daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(_serve())


if __name__ == "__main__":
    main()
