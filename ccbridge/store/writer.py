"""RecordWriter: takes records on the event loop without waiting, journals them, and
writes them to the database in batches, retrying while the database is slow or down.

Path of a record: ``put`` (checks it, appends it to a list in memory; never blocks, never
raises) -> the journal task, every ``flush_interval`` or each ``batch_size`` records,
appends the batch to the journal in a thread -> the database task writes it in one
transaction -> once the database holds everything the journal holds, the journal is
truncated.

What survives what (stated for the issue): a record ``put`` more than ``flush_interval``
(50 ms by default) plus one journal write ago is in the journal file, so a SIGKILL loses
nothing older than that; a power loss loses nothing older than ``fsync_interval`` (1 s)
more. On start the journal is replayed into the database (writes are idempotent, so
records already written are harmless), then truncated.

When the database falls behind by more than half of ``queue_size`` records or
``queue_bytes`` of memory (estimated from the records' journal lines), the writer stops
keeping them in memory and later reads them back from the journal ("spilled"); records
arriving after that are kept in memory again while there is room, and written once the
journal's part is. Records beyond either bound are dropped, counted as unwritten and logged,
only when the journal cannot take them either: it cannot be written (disk full or
read-only), or records arrive faster than it is written for longer than ``queue_size``
lasts (the journal takes several batches per write so that 2,000 calls/s on a busy loop
do not; BENCHMARKS.md §9b).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.exc import DataError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.config.store import DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_SIZE, StoreSettings
from ccbridge.store.journal import Journal, line_bytes
from ccbridge.store.records import Record, RecordError, check_record
from ccbridge.store.schema import TABLES
from ccbridge.store.write import DriverError, write_batch, write_records
from ccbridge.store.writeproc import WriteProcess, WriteProcessGone

log = logging.getLogger("ccbridge.store")

WRITE_TIMEOUT = 10.0  # seconds: a hung connection fails the batch, which is retried
RETRY_FIRST = 0.1  # seconds of backoff after the first failed write, doubling
RETRY_MAX = 5.0
JOURNAL_BATCHES = 8  # batches appended to the journal per thread call (see _journal_batch)
BATCHES_WHEN_BEHIND = 4  # batches the database takes in one transaction when behind
DROP_LOG_EVERY = 10.0  # seconds between two log lines about dropped records
# Bytes of memory a record holds per byte of its journal line (its values dict, the
# strings and instants in it): up to 2.2 for the ingest's records of the recorded lab
# calls with every string its own object, as the AMI parser gives them, measured with
# tracemalloc by tests/unit/test_records_memory.py, which checks that this stays above it.
MEMORY_PER_JSON_BYTE = 2.4
FIRST_LINE_GUESS = 400  # bytes of a journal line, until the first lines are written
_TABLE_LABELS = (*TABLES, "unknown", "journal")


def _is_bad_data(exc: BaseException) -> bool:
    """True for a batch the database refuses for what is in it (retrying cannot help),
    False for a database that is down, slow or locked (retrying will)."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    # A value the driver could not convert raises StatementError without a DBAPI error.
    return isinstance(exc, StatementError) and exc.orig is None


@dataclass(frozen=True, slots=True)
class WriterStatus:
    """What /readyz detail shows: is the database there, and how much waits for it."""

    db_reachable: bool | None  # None: no write tried yet
    db_error: str | None  # the last failure while the database is unreachable
    # records not yet in the database: in memory, or with the writer process in the
    # journal waiting for the child
    queue_depth: int
    queue_bytes: int  # their memory, estimated from their journal lines
    journal_bytes: int  # size of the journal file
    journal_backlog_bytes: int  # journal bytes not yet in the database
    journal_error: str | None  # set while the journal cannot be written
    # records the database accepted since start; a batch that was in flight when the
    # backlog spilled to the journal is read back and written (and counted) again
    written: int
    rejected: int  # records refused (bad fields, or the database refused them)
    unwritten: int  # records dropped: memory full and the journal unwritable
    caught_up: bool  # everything put so far is in the database
    # The database fell behind: records are kept in the journal only and read back
    spilled: bool = False


class WriterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "ccbridge_records_written_total",
            "Records written to the database",
            ["table"],
            registry=registry,
        )
        self.rejected = Counter(
            "ccbridge_records_rejected_total",
            "Records refused for their content (bad fields, or the database refused them)",
            ["table"],
            registry=registry,
        )
        self.unwritten = Counter(
            "ccbridge_records_unwritten_total",
            "Records dropped: the memory queue was full and the journal unwritable",
            registry=registry,
        )
        self.db_errors = Counter(
            "ccbridge_records_db_errors_total",
            "Batch writes that failed because the database was down, slow or locked",
            registry=registry,
        )
        self.journal_errors = Counter(
            "ccbridge_records_journal_errors_total",
            "Journal operations that failed (disk full, read-only, missing folder)",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "ccbridge_records_queue_depth",
            "Records not yet in the database (in memory, or in the journal for the writer process)",
            registry=registry,
        )
        self.queue_bytes = Gauge(
            "ccbridge_records_queue_bytes",
            "Memory of the records in memory, estimated from their journal lines",
            registry=registry,
        )
        self.journal_bytes = Gauge(
            "ccbridge_records_journal_bytes", "Size of the record journal", registry=registry
        )
        self.db_up = Gauge(
            "ccbridge_records_db_up",
            "1 when the last write to the record database succeeded",
            registry=registry,
        )
        for t in _TABLE_LABELS:  # every series exists from the start at 0
            self.written.labels(t)
            self.rejected.labels(t)


class RecordWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        journal: str | Path,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        batch_size: int = 500,
        flush_interval: float = 0.05,
        fsync_interval: float = 1.0,
        registry: CollectorRegistry | None = None,
        process: WriteProcess | None = None,
    ) -> None:
        self.engine = engine
        # The database work goes to this child process when set (store.writer_process):
        # journaled records as byte ranges of the journal, which the child reads itself,
        # so the bridge neither holds them in memory nor reads a spill back; batches the
        # journal could not take as pickles.
        self.process = process
        self.journal = Journal(journal, fsync_interval)
        # The child opens the journal by name: an absolute one, whatever its folder.
        self._journal_for_child = str(self.journal.path.absolute())
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.metrics = WriterMetrics(registry if registry is not None else CollectorRegistry())
        self._buffer: list[Record] = []
        # Batches handed to the database task: (records, journal offset after them, or
        # None when the journal could not take them, their journal lines' bytes).
        self._backlog: deque[tuple[list[Record], int | None, int]] = deque()
        self._backlog_records = 0
        self._backlog_bytes = 0
        # Bytes of journal line per record lately: the estimate for records not yet
        # journaled (the buffer, a batch in flight) and for batches the journal refused.
        self._line_bytes = float(FIRST_LINE_GUESS)
        self._spilled = False  # journaled records are read back from the file
        self._read_offset = 0  # next journal byte to replay while spilled
        # While spilled, journal bytes before this are in the file only; batches after it
        # are kept in memory again as they arrive (while memory has room), and written
        # once the file's part is: a spill costs a read-back of what was behind then,
        # not of everything until the database is ahead again (BENCHMARKS.md §9b).
        self._spill_end = 0
        self._committed = 0  # the database holds every journal byte before this
        self._journal_end = 0
        # Journal bytes from here on were written by this process (journal.read's own):
        # what a file held when it was opened is checked as it is read back.
        self._own_from = 0
        self._journal_error: str | None = None
        self._db_reachable: bool | None = None
        self._db_error: str | None = None
        self._in_flight = 0
        # Records on their way into the journal (in the journal thread): counted too, or
        # status() said "caught up" while a batch was neither in memory nor written.
        self._journaling = 0
        self._written = self._rejected = self._unwritten = 0
        self._journaled = 0  # records appended to the journal since start
        # With the writer process: records handed over as journal bytes, not yet written
        # (not in memory; counted in the queue's depth, not in its memory).
        self._file_records = 0
        self._spill_logged = False  # the spill's warning was logged: log the catch-up
        self._last_reject_log = -1e9
        self._last_drop_log = -1e9
        self._journal_wake = asyncio.Event()
        self._db_wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(
        cls,
        settings: StoreSettings,
        engine: AsyncEngine,
        registry: CollectorRegistry | None = None,
    ) -> RecordWriter:
        return cls(
            engine,
            settings.journal,
            queue_size=settings.queue_size,
            queue_bytes=settings.queue_bytes,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
            fsync_interval=settings.fsync_interval,
            registry=registry,
            process=WriteProcess(settings) if settings.writer_process else None,
        )

    # -- the caller's side: the event loop, never waiting --------------------
    def put(self, table: str, values: Mapping[str, Any]) -> bool:
        """Queue a record; False when it was refused (bad fields: counted as rejected) or
        dropped (memory full and no journal: counted as unwritten). Never raises."""
        try:
            record = check_record(table, values)
        except Exception as exc:  # RecordError; anything else is a bug in a check, and
            # the caller (the AMI event path) must still never see it
            label = table if isinstance(table, str) and table in TABLES else "unknown"
            why = str(exc) if isinstance(exc, RecordError) else f"check failed: {exc!r}"
            self._reject(label, 1, why)
            return False
        if self._full():
            self._drop(1)
            return False
        self._buffer.append(record)
        if len(self._buffer) >= self.batch_size:
            self._journal_wake.set()
        return True

    def put_built(self, table: str, values: dict[str, Any]) -> bool:
        """Queue a record its producer built to the store's checks by construction (the
        record ingest: tests/unit/test_records_fuzz.py runs everything it emits, garbage
        events included, through check_record). Skipping the check per record is what
        lets the ingest keep up with 2,000 calls/s (BENCHMARKS.md §9); anything else goes
        through ``put``. False when dropped (memory full and no journal)."""
        if self._full():
            self._drop(1)
            return False
        self._buffer.append(Record(table, values))
        if len(self._buffer) >= self.batch_size:
            self._journal_wake.set()
        return True

    def _held(self) -> int:
        """Records in memory."""
        return len(self._buffer) + self._journaling + self._backlog_records + self._in_flight

    def _depth(self) -> int:
        """Records not yet in the database."""
        return self._held() + self._file_records

    def _full(self) -> bool:
        if self._held() < self.queue_size and self.memory_bytes() < self.queue_bytes:
            return False
        # Records arriving faster than the journal takes them: the database's backlog in
        # memory is in the journal already, so it gives up its room first.
        if any(end is not None for _, end, _ in self._backlog):
            self._spill()
            return self._held() >= self.queue_size or self.memory_bytes() >= self.queue_bytes
        return True

    def memory_bytes(self) -> int:
        """The records in memory, in bytes (estimated from their journal lines)."""
        unjournaled = len(self._buffer) + self._journaling + self._in_flight
        return int((unjournaled * self._line_bytes + self._backlog_bytes) * MEMORY_PER_JSON_BYTE)

    def status(self) -> WriterStatus:
        depth = self._depth()
        backlog = max(0, self._journal_end - self._committed)
        spilled = self._spilled
        if self.process is not None and spilled and not self._spill_logged:
            # The child reads every journaled record from the file: "spilled" is where
            # the in-memory writer would have spilled, behind by half the memory bound.
            spilled = (
                self._file_records > self.queue_size // 2
                or backlog * MEMORY_PER_JSON_BYTE > self.queue_bytes // 2
            )
        return WriterStatus(
            db_reachable=self._db_reachable,
            db_error=self._db_error,
            queue_depth=depth,
            queue_bytes=self.memory_bytes(),
            journal_bytes=self._journal_end,
            journal_backlog_bytes=backlog,
            journal_error=self._journal_error,
            written=self._written,
            rejected=self._rejected,
            unwritten=self._unwritten,
            caught_up=depth == 0 and backlog == 0 and not self._spilled,
            spilled=spilled,
        )

    @property
    def journaled(self) -> int:
        """Records appended to the journal since start (they survive a SIGKILL)."""
        return self._journaled

    # -- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        """Open the journal and start writing; a journal left by the last run is
        replayed first. Neither an unreachable database nor an unwritable journal
        stops the start: both are reported in status() and retried."""
        await self._open_journal()
        if self.process is not None:
            self.process.start_soon()
        self._tasks = [
            asyncio.create_task(self._journal_loop(), name="records-journal"),
            asyncio.create_task(self._db_loop(), name="records-db"),
        ]

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Journal what is in memory, give the database ``drain_timeout`` seconds to take
        the rest (what it does not take stays in the journal for the next start)."""
        self._stopping = True
        self._journal_wake.set()
        self._db_wake.set()
        journal_task, db_task = self._tasks
        await journal_task
        try:
            async with asyncio.timeout(drain_timeout):
                await db_task
        except TimeoutError:
            pass  # cancelled by the timeout: its batch is in the journal
        await self._maybe_truncate()
        if self.journal.is_open:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.journal.close)
        if self.process is not None:
            await self.process.close()

    # -- journal task ---------------------------------------------------------
    async def _open_journal(self) -> None:
        try:
            size = await asyncio.to_thread(self.journal.open)
        except OSError as exc:
            self._journal_failed(exc)
            return
        self._journal_end = self._own_from = self._spill_end = size
        if size:
            log.info("replaying record journal %s (%d bytes)", self.journal.path, size)
            self._spilled = True
            self._read_offset = self._committed = 0
        self.metrics.journal_bytes.set(size)

    async def _journal_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._journal_wake.wait()
            self._journal_wake.clear()
            if self._buffer:
                await self._journal_batch()
            else:
                await self._maybe_truncate()
                if self.journal.is_open:
                    if self.journal.sync_due:  # idle: no thread hop unless there is a sync
                        try:
                            await asyncio.to_thread(self.journal.sync_if_due)
                        except OSError as exc:
                            self._journal_failed(exc)
                elif self._journal_error is not None:
                    await self._open_journal()  # the disk may be back
            self._gauges()
            if self._stopping and not self._buffer:
                return

    async def _journal_batch(self) -> None:
        # Up to JOURNAL_BATCHES batches go to the journal in one thread call. One batch a
        # call journaled ``batch_size`` records per two or three loop turns: with turns of
        # 50-100 ms beside the database's writes, 2,000 calls/s (16,000 records/s) outran
        # it, memory filled and records were dropped (BENCHMARKS.md §9b).
        size = self.batch_size
        take = size * JOURNAL_BATCHES
        chunk, self._buffer = self._buffer[:take], self._buffer[take:]
        if self._buffer:
            self._journal_wake.set()
        batches = [chunk[i : i + size] for i in range(0, len(chunk), size)]
        ends: list[int | None] = [None] * len(batches)
        start = self._journal_end
        self._journaling = len(chunk)
        if self.journal.is_open:
            try:
                written = await asyncio.to_thread(self.journal.append_batches, batches)
            except OSError as exc:
                self._journal_failed(exc)
            else:
                ends = list(written)
                self._journal_end = written[-1]
                # Lines written since the last known end (a truncate in between only
                # makes the guess smaller for a batch): the memory estimate's unit.
                if written[-1] > start:
                    self._line_bytes = (written[-1] - start) / len(chunk)
                self._journaled += len(chunk)
                if self._journal_error is not None:
                    log.info("record journal %s writable again", self.journal.path)
                    self._journal_error = None
        sizes: list[int] = []
        if ends[-1] is None:
            # Held in memory only: what they hold is measured all the same (the bound is
            # in bytes), at the cost of encoding them, while the journal is unwritable.
            sizes = await asyncio.to_thread(line_bytes, batches)
            self._line_bytes = sum(sizes) / len(chunk)
        else:
            prev = start
            for end in ends:
                assert end is not None
                sizes.append(end - prev)
                prev = end
        self._journaling = 0  # handed over in the same step: never counted twice or not at all
        for batch, end, nbytes in zip(batches, ends, sizes, strict=True):
            self._hand_over(batch, end, nbytes)

    def _hand_over(self, batch: list[Record], end: int | None, nbytes: int) -> None:
        if self.process is not None and end is not None and not self._backlog:
            # The child reads them from the journal (after any file part before them):
            # nothing of them stays in memory, and falling behind costs no read-back here.
            if not self._spilled:
                self._spilled = True
                self._read_offset = self._committed
            self._spill_end = end
            self._file_records += len(batch)
            self._db_wake.set()
            return
        self._backlog.append((batch, end, nbytes))
        self._backlog_records += len(batch)
        self._backlog_bytes += nbytes
        # Half the memory for the database's backlog, half for records arriving.
        if (
            self._backlog_records > self.queue_size // 2
            or self._backlog_bytes * MEMORY_PER_JSON_BYTE > self.queue_bytes // 2
        ):
            self._spill()
        self._db_wake.set()

    def _spill(self) -> None:
        """The database is behind: keep the journaled records in the file only."""
        kept: deque[tuple[list[Record], int | None, int]] = deque()
        journaled = 0
        last_end = -1
        for batch, end, nbytes in self._backlog:
            if end is None:
                kept.append((batch, end, nbytes))
            else:
                journaled += len(batch)
                last_end = max(last_end, end)
        if journaled:
            if not self._spilled:
                self._spilled = True
                # A batch in flight now is read back and written again (idempotent).
                self._read_offset = self._committed
            if not self._spill_logged:
                self._spill_logged = True
                log.warning(
                    "record database behind by %d records: keeping them in the journal only",
                    self._backlog_records,
                )
            self._spill_end = max(self._spill_end, last_end)
        self._backlog = kept
        self._backlog_records = sum(len(b) for b, _, _ in kept)
        self._backlog_bytes = sum(n for _, _, n in kept)
        # Records no journal holds and memory cannot: the oldest go.
        while self._backlog and (
            self._backlog_records > self.queue_size
            or self._backlog_bytes * MEMORY_PER_JSON_BYTE > self.queue_bytes
        ):
            batch, _, nbytes = self._backlog.popleft()
            self._backlog_records -= len(batch)
            self._backlog_bytes -= nbytes
            self._drop(len(batch))

    async def _maybe_truncate(self) -> None:
        if (
            self.journal.is_open
            and self._journal_end > 0
            and not self._spilled
            and not self._buffer
            and self._committed >= self._journal_end
        ):
            try:
                await asyncio.to_thread(self.journal.truncate)
            except OSError as exc:
                self._journal_failed(exc)
                return
            self._journal_end = self._committed = self._read_offset = 0
            self._own_from = self._spill_end = 0

    def _journal_failed(self, exc: OSError) -> None:
        self.metrics.journal_errors.inc()
        why = f"{self.journal.path}: {exc.strerror or exc}"
        if self._journal_error != why:
            log.error("record journal unwritable: %s (records kept in memory)", why)
        self._journal_error = why

    # -- database task --------------------------------------------------------
    async def _db_loop(self) -> None:
        backoff = RETRY_FIRST
        while True:
            got = await self._next_batch()
            if got is None:
                return
            got_records, end, from_file = got
            if got_records is None:
                assert end is not None
                read = await self._write_range(end)
                if read is None:
                    continue  # written by the child, or to be tried again
                records, end, release = read
                fast = False  # the child could not: the SQLAlchemy way, here
            else:
                records, fast, release = got_records, True, 0
            self._in_flight = 0 if from_file else len(records)
            while True:
                try:
                    async with asyncio.timeout(WRITE_TIMEOUT):
                        if fast:
                            sent = await self._write_fast(records)
                        else:
                            async with self.engine.begin() as conn:
                                sent = await write_records(conn, records)
                except asyncio.CancelledError:
                    raise
                except DriverError:
                    # The driver's own exception says little in common terms: the batch
                    # goes again at once through SQLAlchemy, whose errors tell a bad
                    # record (written one by one) from a database that is down (retried).
                    fast = False
                    continue
                except Exception as exc:
                    fast = False
                    if _is_bad_data(exc):
                        await self._write_each(records)
                        break
                    self._db_failed(exc)
                    if self._stopping:
                        # Journaled records wait in the file for the next start.
                        if end is None and not from_file:
                            self._drop(len(records))
                        self._in_flight = 0
                        return
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_MAX)
                else:
                    self._db_ok()
                    for table, n in sent.items():
                        self.metrics.written.labels(table).inc(n)
                    self._written += len(records)
                    self._file_records = max(0, self._file_records - release)
                    backoff = RETRY_FIRST
                    break
            self._in_flight = 0
            if end is not None:
                self._committed = max(self._committed, end)

    async def _write_range(self, end: int) -> tuple[list[Record], int, int] | None:
        """The writer process reads the journal from ``_read_offset`` (up to ``end``) and
        writes what it read. None when it did (or when the journal could not be read
        here: tried again later); else the records it could not write, read here, the
        offset after them and how many of them the queue's depth counts, for the
        SQLAlchemy way in this process."""
        assert self.process is not None
        offset = self._read_offset
        own = offset >= self._own_from
        if not own:  # another run's lines, checked as they are read: not mixed with ours
            end = min(end, self._own_from)
        most = self.batch_size * BATCHES_WHEN_BEHIND
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                sent, nxt, n, bad = await self.process.write_range(
                    self._journal_for_child, offset, end, most, own
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, WriteProcessGone):
                log.warning("record writer process ended (%s): started again", exc)
            try:
                records, nxt, bad = await asyncio.to_thread(
                    self.journal.read, offset, end, most, own=own
                )
            except OSError as err:
                self._journal_failed(err)
                await asyncio.sleep(RETRY_MAX)
                return None
            self._read_offset = nxt
            if bad:
                self._reject("journal", bad, "journal lines that are not records")
            if own:  # the bad ones; the others leave the count once written
                self._file_records = max(0, self._file_records - bad)
            return records, nxt, len(records) if own else 0
        self._db_ok()
        for table, k in sent.items():
            self.metrics.written.labels(table).inc(k)
        self._written += n
        if bad:
            self._reject("journal", bad, "journal lines that are not records")
        if own:
            self._file_records = max(0, self._file_records - n - bad)
        self._read_offset = nxt
        self._committed = max(self._committed, nxt)
        return None

    async def _write_fast(self, records: list[Record]) -> dict[str, int]:
        if self.process is None:
            return await write_batch(self.engine, records)
        try:
            return await self.process.write(records)
        except WriteProcessGone as exc:
            # This batch goes the SQLAlchemy way here; the next one to a new child.
            log.warning("record writer process ended (%s): started again", exc)
            raise DriverError(str(exc)) from exc

    async def _next_batch(self) -> tuple[list[Record] | None, int | None, bool] | None:
        """The next records for the database, the journal offset after them and whether
        they were read back from the journal; None when stopping with nothing left.
        Records None: the writer process is to read them, from ``_read_offset`` up to
        the offset given."""
        while True:
            # Behind by more than a batch: bigger transactions, fewer commits (each is a
            # WAL fsync on SQLite, a round trip on PostgreSQL). The loop's share of a
            # batch is a few thread hops now (write.write_batch), not its size.
            limit = self.batch_size * (
                BATCHES_WHEN_BEHIND if self._backlog_records > self.batch_size else 1
            )
            if self._spilled:  # the file's part first: those records came earlier
                if self._read_offset >= self._spill_end:
                    self._spilled = False
                    self._file_records = 0
                    if self._spill_logged:
                        self._spill_logged = False
                        log.info("record database caught up with the journal")
                    continue
                if self.process is not None:
                    return None, self._spill_end, True  # the child reads it: _write_range
                try:
                    records, nxt, bad = await asyncio.to_thread(
                        self.journal.read,
                        self._read_offset,
                        self._spill_end,
                        self.batch_size * BATCHES_WHEN_BEHIND,
                        own=self._read_offset >= self._own_from,
                    )
                except OSError as exc:
                    self._journal_failed(exc)
                    await asyncio.sleep(RETRY_MAX)
                    continue
                if bad:
                    self._reject("journal", bad, "journal lines that are not records")
                self._read_offset = nxt
                return records, nxt, True
            if self._backlog:
                records = []
                end: int | None = None
                while self._backlog and len(records) < limit:
                    batch, off, nbytes = self._backlog.popleft()
                    self._backlog_records -= len(batch)
                    self._backlog_bytes -= nbytes
                    records += batch
                    end = off if off is not None else end
                return records, end, False
            if self._stopping:
                return None
            await self._db_wake.wait()
            self._db_wake.clear()

    async def _write_each(self, records: list[Record]) -> None:
        """A batch the database refused for its content: find the bad records by writing
        each alone, so one bad record never costs the good ones."""
        for rec in records:
            try:
                async with asyncio.timeout(WRITE_TIMEOUT), self.engine.begin() as conn:
                    await write_records(conn, [rec])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not _is_bad_data(exc):
                    raise
                self._reject(rec.table, 1, f"the database refused it: {exc.__class__.__name__}")
            else:
                self.metrics.written.labels(rec.table).inc()
                self._written += 1

    def _db_failed(self, exc: Exception) -> None:
        self.metrics.db_errors.inc()
        why = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if self._db_reachable is not False:
            log.warning("record database unreachable, retrying: %s", why)
        self._db_reachable = False
        self._db_error = why
        self.metrics.db_up.set(0)

    def _db_ok(self) -> None:
        if self._db_reachable is False:
            log.info("record database reachable again")
        self._db_reachable = True
        self._db_error = None
        self.metrics.db_up.set(1)

    # -- counting -------------------------------------------------------------
    def _reject(self, table: str, n: int, why: str) -> None:
        self._rejected += n
        self.metrics.rejected.labels(table).inc(n)
        # A stream of garbage must not become a stream of log lines: one per 10 s.
        now = time.monotonic()
        if now - self._last_reject_log >= 10.0:
            self._last_reject_log = now
            log.warning("record refused (%s): %s (%d refused so far)", table, why, self._rejected)

    def _drop(self, n: int) -> None:
        self._unwritten += n
        self.metrics.unwritten.inc(n)
        # A lost record is never silent; a flood of them is one line per 10 s.
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_EVERY:
            self._last_drop_log = now
            log.error(
                "record memory full (%d records) and %s: %d records dropped so far",
                self.queue_size,
                f"journal unwritable ({self._journal_error})"
                if self._journal_error
                else "the journal behind",
                self._unwritten,
            )

    def _gauges(self) -> None:
        st = self.status()
        self.metrics.queue_depth.set(st.queue_depth)
        self.metrics.queue_bytes.set(st.queue_bytes)
        self.metrics.journal_bytes.set(st.journal_bytes)
