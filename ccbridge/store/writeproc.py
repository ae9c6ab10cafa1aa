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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import struct
import sys
from collections.abc import Sequence
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
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start(), name="records-writer-process")

    async def _start(self) -> None:
        try:
            await self.ready()
        except Exception as exc:  # the first write starts one again, or writes here
            log.warning("record writer process did not start: %s", exc)

    async def ready(self) -> None:
        """The child is running and has its engine; WriteProcessGone when it could not."""
        async with self._lock:
            await self._running()

    async def _running(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ccbridge.store.writeproc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=MAX_FRAME,
        )
        self._proc = proc
        self.starts += 1
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
        async with self._lock:
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


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="ccbridge writer process: %(message)s")
    with contextlib.suppress(OSError):
        os.nice(NICE)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(_serve())


if __name__ == "__main__":
    main()
