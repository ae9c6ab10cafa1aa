"""Moves finished recordings from the sites' folders to central storage, encrypted, indexed.

A site keeps its file until it is stored and indexed: each round (every
``scan_interval``, at start, and soon after a MixMonitorStop) lists every site's folder,
and for each finished file (recording/naming.py) hashes it, encrypts it in chunks
(recording/crypto.py) under a key named from the call ID, recording ID and the content's
hash, stores it, checks the stored size, writes the index row, and only then deletes the
site's copy. A crash anywhere in between leaves the site's file, and the next round
finds the same key already stored: never lost, never stored twice. A file that fails
(storage full or unwritable, the index down) is marked failed on its call's record,
counted, and tried again with a growing wait (``retry_max`` at most). Files finished
while the bridge was down are found by the first round. All file and crypto work runs in
a worker thread; the event loop only awaits it and the index's async writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge import variables as v
from ccbridge.config.recording import RecordingSettings
from ccbridge.lifecycle import cancel_and_wait
from ccbridge.recording import crypto, index
from ccbridge.recording.naming import RecordingName, parse_file_name
from ccbridge.recording.storage import Storage

log = logging.getLogger("ccbridge.recording")

WAV_HEADER = 44  # a PCM WAV's header: what is left of a file without audio
# A recorded channel hung up this long ago and its site's folder holds no file of it:
# MixMonitor could not write (the site's disk full or the folder unwritable). The call
# went on; the recording is marked failed on the call's record.
SITE_FILE_GRACE = 60.0
STRAYS_KEPT = 1000  # stray file names already warned about, per bridge


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The configured keys by ID, and the one new recordings are encrypted with."""

    keys: Mapping[str, bytes]
    current: str

    @property
    def current_key(self) -> bytes:
        return self.keys[self.current]


@dataclass(frozen=True, slots=True)
class Shipped:
    name: RecordingName
    size: int
    sha256: str
    duration_s: float
    key_id: str
    storage_key: str
    already: bool  # the same bytes were stored by an earlier round


@dataclass
class _Retry:
    wait: float
    not_before: float


@dataclass
class ShipperMetrics:
    registry: CollectorRegistry
    stored: Counter = field(init=False)
    failed: Counter = field(init=False)
    pending: Gauge = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.stored = Counter(
            "ccbridge_recordings_stored_total",
            "Recordings encrypted into central storage and indexed, by the site that made them",
            ["site"],
            registry=r,
        )
        self.failed = Counter(
            "ccbridge_recordings_failed_total",
            "Tries to store a recording that failed (storage = central storage full or "
            "unwritable, index = the record database, source = the site's file unreadable, "
            "site = the site wrote no file)",
            ["site", "reason"],
            registry=r,
        )
        self.pending = Gauge(
            "ccbridge_recordings_pending",
            "Finished recordings waiting in a site's folder at the last scan",
            ["site"],
            registry=r,
        )


def wav_duration(path: Path, size: int) -> float:
    """Seconds of audio in a WAV file (its header; 8 kHz 16-bit when the header is odd)."""
    try:
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            if rate > 0:
                return w.getnframes() / rate
    except (wave.Error, EOFError, OSError):
        pass
    return max(0, size - WAV_HEADER) / 16000.0


def _hash(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def ship_file(
    path: Path,
    name: RecordingName,
    storage: Storage,
    keys: KeyRing,
    chunk_size: int,
    work_dir: Path,
) -> Shipped:
    """Encrypt and store one finished file (blocking: run it in a thread). The site's file
    is left in place: the caller deletes it once the index has the row."""
    size, sha = _hash(path)
    duration = wav_duration(path, size)
    key = name.storage_key(sha)
    if storage.size(key) is not None:
        # Stored by an earlier round (a crash before the site's copy went): the same
        # bytes under the same key, whatever key encrypted them then.
        with contextlib.suppress(crypto.CryptoError, OSError):
            with storage.open(key) as f:
                h, plain = crypto.plain_size(f)
            if plain == size:
                return Shipped(name, size, sha, duration, h.key_id, key, already=True)
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(dir=work_dir, prefix=".enc-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            h = crypto.encrypt_stream(src, out, keys.current, keys.current_key, size, chunk_size)
        storage.put(key, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    stored = storage.size(key)
    if stored != h.encrypted_size:
        raise OSError(f"stored {stored} bytes of {key}, expected {h.encrypted_size}")
    return Shipped(name, size, sha, duration, keys.current, key, already=False)


@dataclass(frozen=True, slots=True)
class Listing:
    """A site's folder: finished recordings (oldest first), the stems of files still being
    written, and names that are no recording of ours (left alone, warned about)."""

    files: list[tuple[Path, RecordingName]]
    writing: frozenset[str]
    strays: list[str]


def list_folder(folder: Path) -> Listing:
    """What a site's folder holds (blocking)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return Listing([], frozenset(), [])
    out = []
    writing = set()
    strays = []
    for e in entries:
        if e.name.endswith(v.RECORDING_PART):
            writing.add(e.name[: -len(v.RECORDING_PART)])
            continue
        name = parse_file_name(e.name)
        if name is not None and e.is_file(follow_symlinks=False):
            out.append((e.stat().st_mtime, Path(e.path), name))
        elif not e.name.startswith("."):
            strays.append(e.name)
    files = [(p, n) for _, p, n in sorted(out, key=lambda t: t[0])]
    return Listing(files, frozenset(writing), strays)


def finished_files(folder: Path) -> list[tuple[Path, RecordingName]]:
    """The finished recordings in a site's folder (blocking), oldest first."""
    return list_folder(folder).files


class RecordingShipper:
    """The transfer loop (see the module docstring) and its metrics."""

    def __init__(
        self,
        settings: RecordingSettings,
        sites: tuple[str, ...],
        storage: Storage,
        keys: KeyRing,
        engine: Callable[[], AsyncEngine],
        now: Callable[[], datetime],
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self.sites = sites
        self.storage = storage
        self.keys = keys
        self._engine = engine
        self._now = now
        self.metrics = ShipperMetrics(registry)
        for s in sites:  # every series from the start: an alert sees 0 before the first
            self.metrics.pending.labels(site=s).set(0)
            self.metrics.stored.labels(site=s)
            for reason in ("storage", "index", "source", "site"):
                self.metrics.failed.labels(site=s, reason=reason)
        self.work_dir = Path(settings.storage_dir) / ".work"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retry: dict[Path, _Retry] = {}
        # Recordings whose channel hung up, by recording ID: (name, when to give up
        # waiting for the site's file, on the loop's clock).
        self._expected: dict[str, tuple[RecordingName, float]] = {}
        self.site_grace = SITE_FILE_GRACE
        self._strays: set[str] = set()
        self.rounds = 0
        self.stored_count = 0

    def expect(self, name: RecordingName) -> None:
        """The recorded channel hung up: its site's file should appear within the grace."""
        deadline = asyncio.get_running_loop().time() + self.site_grace
        self._expected[name.recording_id] = (name, deadline)

    def wake(self, delay: float = 0.0) -> None:
        """Scan soon (a MixMonitorStop: the file is renamed when MixMonitor closes it)."""
        if delay <= 0:
            self._wake.set()
        else:
            asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def run_once(self) -> int:
        """One round over every site's folder; the number of recordings stored."""
        done = 0
        loop = asyncio.get_running_loop()
        for site in self.sites:
            folder = Path(self.settings.site(site).pickup_dir)
            listing = await asyncio.to_thread(list_folder, folder)
            files = listing.files
            self.metrics.pending.labels(site=site).set(len(files))
            self._warn_strays(site, folder, listing.strays)
            await self._missing(site, listing, loop.time())
            for path, name in files:
                retry = self._retry.get(path)
                if retry is not None and loop.time() < retry.not_before:
                    continue
                if await self._ship(site, path, name):
                    done += 1
                    self._retry.pop(path, None)
                else:
                    wait = min(self.settings.retry_max, (retry.wait * 2) if retry else 1.0)
                    self._retry[path] = _Retry(wait, loop.time() + wait)
            remaining = await asyncio.to_thread(finished_files, folder)
            self.metrics.pending.labels(site=site).set(len(remaining))
        self.rounds += 1
        self.stored_count += done
        return done

    def _warn_strays(self, site: str, folder: Path, strays: list[str]) -> None:
        for stray in strays:
            if stray not in self._strays and len(self._strays) < STRAYS_KEPT:
                self._strays.add(stray)
                log.warning(
                    "a file in %s's recording folder %s is no recording (left alone): %r",
                    site,
                    folder,
                    stray[:120],
                )

    async def _missing(self, site: str, listing: Listing, now: float) -> None:
        """Recordings whose channel hung up over the grace ago and whose site wrote no file."""
        present = {n.recording_id for _, n in listing.files}
        for rid, (name, deadline) in list(self._expected.items()):
            if name.site != site:
                continue
            if rid in present or name.stem in listing.writing:
                continue  # there, or still being closed
            if now < deadline:
                continue
            del self._expected[rid]
            await self._failed(
                site, name, "site", "site: no file from the site (its disk full or unwritable?)"
            )

    async def _ship(self, site: str, path: Path, name: RecordingName) -> bool:
        rid = name.recording_id
        self._expected.pop(rid, None)
        try:
            shipped = await asyncio.to_thread(
                ship_file,
                path,
                name,
                self.storage,
                self.keys,
                self.settings.chunk_size,
                self.work_dir,
            )
        except FileNotFoundError:
            return True  # another bridge took it meanwhile
        except (OSError, crypto.CryptoError) as exc:
            reason = (
                "source" if not await asyncio.to_thread(os.access, path, os.R_OK) else "storage"
            )
            await self._failed(site, name, reason, f"{reason}: {exc}")
            return False
        try:
            await index.stored(
                self._engine(),
                call_id=name.call_id,
                rid=rid,
                site=name.site,
                duration_s=round(shipped.duration_s, 3),
                size=shipped.size,
                sha256=shipped.sha256,
                key_id=shipped.key_id,
                storage_key=shipped.storage_key,
                now=self._now(),
            )
        except Exception as exc:
            # Stored but not indexed: the site keeps its copy; the next round finds the
            # same key stored and only writes the row.
            self.metrics.failed.labels(site=site, reason="index").inc()
            log.warning("recording %s stored but not indexed (retried): %s", rid, _short(exc))
            return False
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)
        self.metrics.stored.labels(site=site).inc()
        log.info(
            "recording stored",
            extra={
                "ctx": {
                    "recording": rid,
                    "site": name.site,
                    "bytes": shipped.size,
                    "again": shipped.already,
                }
            },
        )
        return True

    async def _failed(self, site: str, name: RecordingName, reason: str, error: str) -> None:
        self.metrics.failed.labels(site=site, reason=reason).inc()
        log.warning(
            "recording %s not stored (kept at %s, retried): %s", name.recording_id, site, error
        )
        try:
            await index.failed(
                self._engine(), name.call_id, name.recording_id, name.site, error, self._now()
            )
        except Exception as exc:
            self.metrics.failed.labels(site=site, reason="index").inc()
            log.warning(
                "recording %s: failure not indexed either: %s", name.recording_id, _short(exc)
            )

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording transfer round failed (next round retries)")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.scan_interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="recording-transfer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}"[:200]
