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
import pickle
import struct
import sys
from collections.abc import Sequence
from typing import Any

from ccbridge.config.model import SecretValue
from ccbridge.config.store import StoreSettings
from ccbridge.store.records import Record

log = logging.getLogger("ccbridge.store")

_HEAD = struct.Struct("<I")
MAX_FRAME = 1 << 30  # a batch is ~1 KB a call as a pickle: 500 records are ~70 KB


class WriteProcessGone(Exception):
    """The child ended or answered nonsense: the batch is written another way."""


class WriteProcess:
    """The parent's end: ``write`` is ``write_batch`` done in the child."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self.starts = 0  # children started (a second one means the first one ended)

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def _start(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ccbridge.store.writeproc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=MAX_FRAME,
        )
        self.starts += 1
        password = self.settings.password.reveal() if self.settings.password else None
        assert proc.stdin is not None
        proc.stdin.write(_frame(("open", self.settings.url, password)))
        return proc

    async def write(self, records: Sequence[Record]) -> dict[str, int]:
        """Rows sent per table, as ``write.write_batch`` answers. DriverError when the
        driver refused the batch (the caller goes the SQLAlchemy way, as in-process),
        WriteProcessGone when the child ended (started again at the next write)."""
        from ccbridge.store.write import DriverError

        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                self._proc = await self._start()
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(_frame([(r.table, r.values) for r in records]))
                await proc.stdin.drain()
                kind, value = await _read_frame(proc.stdout)
            except BaseException as exc:
                # Cut mid-frame (a timeout, a cancel) or gone: the pipe is out of step,
                # so this child is done; the next write starts another.
                await self._kill()
                if isinstance(exc, Exception):
                    raise WriteProcessGone(f"{exc.__class__.__name__}: {exc}") from exc
                raise
            if kind == "ok" and isinstance(value, dict):
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


async def _serve() -> None:
    from ccbridge.store.engine import make_engine
    from ccbridge.store.write import DriverError, write_batch

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
    try:
        while True:
            try:
                pairs = await _read_frame(reader)
            except asyncio.IncompleteReadError:
                return  # the bridge closed the pipe, or is gone
            reply: tuple[str, Any]
            try:
                reply = ("ok", await write_batch(engine, [Record(t, v) for t, v in pairs]))
            except DriverError as exc:
                reply = ("driver", str(exc))
            except Exception as exc:  # the parent writes the batch its own way
                reply = ("error", f"{exc.__class__.__name__}: {exc}")
            out.write(_frame(reply))
            out.flush()
    finally:
        await engine.dispose()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="ccbridge writer process: %(message)s")
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(_serve())


if __name__ == "__main__":
    main()
