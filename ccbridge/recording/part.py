"""The bridge's recording part: live MixMonitors from AMI, the transfer loop, keys, storage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.config.model import Config
from ccbridge.config.recording import RecordingSettings, key_bytes
from ccbridge.events import EventBus
from ccbridge.logs import ctx
from ccbridge.recording import index
from ccbridge.recording.live import LiveRecordings
from ccbridge.recording.shipper import KeyRing, RecordingShipper
from ccbridge.recording.storage import DirectoryStorage, Storage

log = logging.getLogger("ccbridge.recording")

MIXMONITOR_START = "MixMonitorStart"
MIXMONITOR_STOP = "MixMonitorStop"  # StopMixMonitor only
HANGUP = "Hangup"  # the recorded channel's end: MixMonitor closes the file
RESCAN_AFTER_STOP = 0.5  # seconds: MixMonitor's command renames the file once it closed it


def key_ring(settings: RecordingSettings) -> KeyRing:
    """The configured keys (each checked by the loader when its secret resolved)."""
    keys: dict[str, bytes] = {}
    for k in settings.keys:
        raw = key_bytes(k.secret)
        if raw is not None:
            keys[k.key_id] = raw
    if settings.current_key not in keys:
        raise ValueError(f"recording key '{settings.current_key}' gives no key here")
    return KeyRing(keys, settings.current_key)


def make_storage(settings: RecordingSettings) -> Storage:
    return DirectoryStorage(settings.storage_dir)


def object_deleter(storage: Storage) -> Callable[[list[str]], Awaitable[int]]:
    """Retention's and erasure's way to delete recordings from storage, in a thread."""

    async def delete(keys: list[str]) -> int:
        return await asyncio.to_thread(lambda: sum(storage.delete(k) for k in keys))

    return delete


class RecordingPart:
    """What the bridge runs for `recording:` (with a `store:` for the index)."""

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry,
        now: Callable[[], datetime],
        storage: Storage | None = None,
    ) -> None:
        assert config.recording is not None
        self.settings = config.recording
        self.config = config
        self.now = now
        self.storage = storage or make_storage(self.settings)
        self.keys = key_ring(self.settings)
        self.live = LiveRecordings()
        self._engine: AsyncEngine | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.shipper = RecordingShipper(
            self.settings,
            tuple(s.name for s in config.sites),
            self.storage,
            self.keys,
            self.engine,
            now,
            registry,
        )

    @property
    def where(self) -> str:
        return self.storage.describe()

    def engine(self) -> AsyncEngine:
        if self._engine is None:
            from ccbridge.store.engine import make_engine

            self._engine = make_engine(self.config.store)
        return self._engine

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(MIXMONITOR_START, self._on_start)
        bus.subscribe(MIXMONITOR_STOP, self._on_stop)
        bus.subscribe(HANGUP, self._on_stop)

    def _spawn(self, coro: object, what: str) -> None:
        async def run() -> None:
            try:
                await coro  # type: ignore[misc]
            except Exception as exc:
                log.warning("recording index: %s failed: %s", what, exc.__class__.__name__)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_start(self, site: str, event: Mapping[str, str]) -> None:
        rec = self.live.started(site, event, self.now())
        if rec is None:
            return
        log.info("recording started", extra=ctx(recording=rec.name.recording_id, site=site))
        n = rec.name
        self._spawn(
            index.started(
                self.engine(), n.call_id, n.recording_id, site, rec.started_at, self.now()
            ),
            "start",
        )

    def _on_stop(self, site: str, event: Mapping[str, str]) -> None:
        rec = self.live.stopped(site, event, self.now())
        if rec is None:
            return
        self.shipper.expect(rec.name)
        if rec.pauses:
            self.save_pauses_soon(rec.name.call_id, rec.name.recording_id, site, rec.pauses)
        self.shipper.wake(RESCAN_AFTER_STOP)

    def save_pauses_soon(
        self, call_id: str, rid: str, site: str, pauses: list[list[str | None]]
    ) -> None:
        snapshot = [list(p) for p in pauses]
        self._spawn(
            index.set_pauses(self.engine(), call_id, rid, site, snapshot, self.now()), "pauses"
        )

    async def start(self) -> None:
        await self.shipper.start()

    async def stop(self) -> None:
        await self.shipper.stop()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
