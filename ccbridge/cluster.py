"""This bridge among several (issue 15): its identity, the per-host overrides of one
deployment file, and its heartbeat row in the shared store.

Several bridges run the same deployment file; what differs per process comes from the
environment: ``CCBRIDGE_BRIDGE_ID`` (else ``bridge.cluster.identity``, else
``hostname:HTTP port``), and on a host that runs two of them ``CCBRIDGE_AGI_LISTEN``,
``CCBRIDGE_HTTP_LISTEN`` (HOST:PORT) and ``CCBRIDGE_STORE_JOURNAL`` (a file path).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ccbridge import __version__
from ccbridge.config.guard_loader import identity_problem
from ccbridge.config.model import Config, HostPort
from ccbridge.config.store import StoreSettings
from ccbridge.lifecycle import cancel_and_wait
from ccbridge.store.cluster import BridgeBeat

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("ccbridge.cluster")

ENV_ID = "CCBRIDGE_BRIDGE_ID"
ENV_AGI_LISTEN = "CCBRIDGE_AGI_LISTEN"
ENV_HTTP_LISTEN = "CCBRIDGE_HTTP_LISTEN"
# The record journal is a local file of one process (store/writer.py): two bridges on one
# host need one each, or they replay and truncate each other's records.
ENV_JOURNAL = "CCBRIDGE_STORE_JOURNAL"
STOP_WRITE_TIMEOUT = 2.0  # a clean stop says so in the store, but never waits long for it


def wall_now() -> datetime:
    """Heartbeats are wall-clock instants: a bridge's routing clock may be set
    (CCBRIDGE_CLOCK), the liveness of its peers may not."""
    return datetime.now(UTC)


def _host_port(name: str, value: str) -> HostPort:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{name} must be HOST:PORT, got {value[:60]!r}")
    return HostPort(host, int(port))


def for_this_process(config: Config, environ: Mapping[str, str]) -> Config:
    """The config with this process's overrides from the environment; ValueError with
    one line for a value that is not usable."""
    bridge = config.bridge
    ident = environ.get(ENV_ID)
    if ident is not None:
        why = identity_problem(ident)
        if why:
            raise ValueError(f"{ENV_ID}: {why}")
        bridge = replace(bridge, cluster=replace(bridge.cluster, identity=ident))
    if (agi := environ.get(ENV_AGI_LISTEN)) is not None:
        bridge = replace(bridge, agi_listen=_host_port(ENV_AGI_LISTEN, agi))
    if (http := environ.get(ENV_HTTP_LISTEN)) is not None:
        bridge = replace(bridge, http_listen=_host_port(ENV_HTTP_LISTEN, http))
    store = config.store
    if (journal := environ.get(ENV_JOURNAL)) is not None:
        if not journal.strip() or "\0" in journal:
            raise ValueError(f"{ENV_JOURNAL} must be a file path, got {journal[:60]!r}")
        store = replace(store, journal=journal)
    if bridge is config.bridge and store is config.store:
        return config
    return replace(config, bridge=bridge, store=store)


def identity(config: Config, http_port: int | None) -> str:
    """The configured identity, else this host's name and the HTTP port it serves on."""
    configured = config.bridge.cluster.identity
    if configured:
        return configured
    port = http_port if http_port is not None else config.bridge.http_listen.port
    return f"{socket.gethostname()}:{port}"[:160]


class Heartbeat:
    """Rewrites this bridge's row of ``bridges`` every ``heartbeat`` seconds on its own
    engine (asyncpg or aiosqlite: no database work on the event loop). A round that
    fails (no database yet, database down) is logged once per distinct reason and
    retried next beat; routing never waits for it."""

    def __init__(
        self,
        store: StoreSettings,
        interval: float,
        snapshot: Callable[[], tuple[tuple[str, ...], int]],
        now: Callable[[], datetime] = wall_now,
    ) -> None:
        self.store = store
        self.interval = interval
        self.snapshot = snapshot  # (sites whose AMI link is up, sessions served)
        self.now = now
        self.identity = ""
        self.started_at = now()
        self.beats = 0
        self.last_error: str | None = None
        self._engine: AsyncEngine | None = None
        self._checked = False
        self._task: asyncio.Task[None] | None = None

    def current(self) -> BridgeBeat:
        sites, sessions = self.snapshot()
        return BridgeBeat(self.identity, __version__, self.started_at, self.now(), sites, sessions)

    async def beat_once(self) -> None:
        from ccbridge.store.cluster import beat
        from ccbridge.store.engine import make_engine, missing_sqlite_file
        from ccbridge.store.readcheck import ensure_current

        path = await missing_sqlite_file(self.store)
        if path is not None:
            raise FileNotFoundError(f"no record database yet at {path}")
        if self._engine is None:
            # The driver's first import (asyncpg: tens of ms) stays off the event loop.
            self._engine = await asyncio.to_thread(make_engine, self.store)
        if not self._checked:
            await ensure_current(self._engine)
            self._checked = True
        await beat(self._engine, self.current())
        self.beats += 1

    async def _loop(self) -> None:
        while True:
            try:
                await self.beat_once()
                if self.last_error is not None:
                    log.info("cluster heartbeat written again")
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._checked = False
                why = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if why != self.last_error:
                    log.warning("cluster heartbeat not written (retrying): %s", why)
                self.last_error = why
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        self.started_at = self.now()
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="cluster-heartbeat")

    async def stop(self) -> None:
        from ccbridge.store.cluster import stopped

        task, self._task = self._task, None
        await cancel_and_wait(task)
        engine = self._engine
        self._engine = None
        if engine is None:
            return
        try:
            if self.beats:
                await asyncio.wait_for(
                    stopped(engine, self.identity, self.now()),
                    STOP_WRITE_TIMEOUT,
                )
        except Exception as exc:  # the peers see this bridge age out instead
            log.info("cluster: stop not written (%s)", exc.__class__.__name__)
        finally:
            await engine.dispose()
