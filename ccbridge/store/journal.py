"""The writer's append-only journal: records as JSON lines. Every method blocks: the writer
calls them with ``asyncio.to_thread``, never on the event loop.

Durability: ``append`` hands the bytes to the kernel before it returns (an unbuffered
``write``), so a record in the journal survives a SIGKILL of the process at once, and a
power loss once ``fsync`` ran (every ``fsync_interval`` seconds; 0 = every append).
A torn last line (the process killed inside ``write``) is cut off when the file is opened.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ccbridge.store.records import COLUMNS, Record, RecordError, from_json

_INSTANTS = {t: tuple(n for n, c in cols.items() if c.instant) for t, cols in COLUMNS.items()}


def _instant(v: object) -> str:
    # The only value a record holds that JSON has no form for (records.to_json's form).
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(f"{type(v).__name__} is not a record value")


# One C encoder for every line; instants through ``default``, so the line is the one
# records.to_json gives, without a copy of each record's values first.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_instant).encode


class Journal:
    def __init__(self, path: str | os.PathLike[str], fsync_interval: float = 1.0) -> None:
        self.path = Path(path)
        self.fsync_interval = fsync_interval
        self._fd: int | None = None
        self._last_sync = 0.0
        self._dirty = False

    def open(self) -> int:
        """Open (creating the folder and file), cut a torn tail; the size in bytes."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where a folder should be, here or above
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(self.path.parent)) from None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size:
                size = _complete_lines_end(fd, size)
                os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._last_sync = time.monotonic()
        return size

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def append(self, records: Sequence[Record]) -> int:
        """Write the records' lines; the file's new size. OSError when the disk refuses
        (full, read-only): nothing of this call counts as written then."""
        return self.append_batches([records])[-1]

    def append_batches(self, batches: Sequence[Sequence[Record]]) -> list[int]:
        """Write the batches' lines in one write; for each batch, the file's size after
        its last line (where the database's reading of it may stop). OSError when the disk
        refuses: nothing of this call counts as written then."""
        assert self._fd is not None, "journal not open"
        start = os.fstat(self._fd).st_size
        parts: list[bytes] = []
        ends: list[int] = []
        end = start
        for part in _lines(batches):
            parts.append(part)
            end += len(part)
            ends.append(end)
        data = b"".join(parts)
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            # A partial line would glue itself to the next record: cut it off.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise
        self._dirty = True
        self.sync_if_due()
        return ends

    @property
    def sync_due(self) -> bool:
        """Whether ``sync_if_due`` would fsync now: lines appended and none synced for
        ``fsync_interval``. No I/O: the writer asks it on the loop, and hops to a thread
        only for a sync (an idle writer woke every flush_interval to hop for nothing)."""
        return (
            self._fd is not None
            and self._dirty
            and time.monotonic() - self._last_sync >= self.fsync_interval
        )

    def sync_if_due(self) -> None:
        if self.sync_due:
            assert self._fd is not None
            now = time.monotonic()
            os.fsync(self._fd)
            self._last_sync = now
            self._dirty = False

    def read(
        self,
        offset: int,
        end: int,
        max_records: int = 500,
        max_bytes: int = 1 << 20,
        own: bool = False,
    ) -> tuple[list[Record], int, int]:
        """Records of the whole lines in [offset, end), at most ``max_records`` lines:
        (records, the offset after the last line read, lines that were not records).
        ``own``: this process wrote these lines from records it had checked (or built to
        the checks), so they are read back without checking each value again; a line
        from before the start (another process's, or a file anyone could edit) is
        checked like any input."""
        assert self._fd is not None, "journal not open"
        return read_lines(self._fd, offset, end, max_records, max_bytes, own)

    def truncate(self) -> None:
        """Empty the file: everything in it is in the database."""
        assert self._fd is not None, "journal not open"
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self._dirty = False

    def size(self) -> int:
        return os.fstat(self._fd).st_size if self._fd is not None else 0

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def read_lines(
    fd: int,
    offset: int,
    end: int,
    max_records: int = 500,
    max_bytes: int = 1 << 20,
    own: bool = False,
) -> tuple[list[Record], int, int]:
    """``Journal.read`` on a file descriptor of the journal: the writer process reads the
    bridge's journal through one of its own (``store.writer_process``)."""
    parse = _own_record if own else from_json
    want = min(end - offset, max_bytes)
    if want <= 0:
        return [], offset, 0
    data = os.pread(fd, want, offset)
    if data.rfind(b"\n") < 0:  # one line longer than max_bytes: read it whole
        data = os.pread(fd, end - offset, offset)
    records: list[Record] = []
    bad = 0
    pos = 0
    for _ in range(max_records):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        try:
            records.append(parse(json.loads(data[pos:nl])))
        except (ValueError, RecordError, KeyError, TypeError):  # json's: ValueErrors
            bad += 1
        pos = nl + 1
    return records, offset + pos, bad


def _lines(batches: Sequence[Sequence[Record]]) -> list[bytes]:
    return [
        "".join([_encode({"t": r.table, "v": r.values}) + "\n" for r in records]).encode()
        for records in batches
    ]


def line_bytes(batches: Sequence[Sequence[Record]]) -> list[int]:
    """Each batch's bytes as journal lines, for when the journal cannot take them: the
    writer's memory bound is counted in these."""
    return [len(part) for part in _lines(batches)]


def _own_record(obj: Any) -> Record:
    """A line this process wrote: only its instants turned back into datetimes (5x
    cheaper than records.from_json's check of every value; BENCHMARKS.md §9b)."""
    table = obj["t"]
    values = obj["v"]
    for name in _INSTANTS[table]:
        v = values.get(name)
        if v is not None:
            values[name] = datetime.fromisoformat(v)
    return Record(table, values)


def _complete_lines_end(fd: int, size: int) -> int:
    """The offset after the file's last newline (0 when it has none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0
