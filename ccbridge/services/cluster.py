"""The cluster: the bridges of this deployment that are alive, as the shared store's
heartbeat rows say (issue 15), or this bridge alone when it keeps no store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ccbridge.services.ports import Runtime
from ccbridge.services.recordsread import RecordsReader
from ccbridge.store.cluster import BridgeBeat


class ClusterRuntime(Runtime, Protocol):
    """What the cluster view needs beside the common runtime: this bridge's own beat."""

    def cluster_self(self) -> BridgeBeat:
        """This bridge as its next heartbeat will say."""
        ...


@dataclass(frozen=True, slots=True)
class ClusterView:
    bridges: tuple[BridgeBeat, ...]
    this: str  # this bridge's identity
    shared: bool  # read from the shared store (False: no store, this bridge alone)
    alive_after: float


class ClusterService:
    def __init__(self, runtime: ClusterRuntime) -> None:
        self._rt = runtime
        self._reader = RecordsReader(runtime)

    async def close(self) -> None:
        await self._reader.close()

    async def alive(self) -> ClusterView:
        """The bridges seen within ``bridge.cluster.alive_after``; this one always among
        them (its own row may be a beat behind, or not written yet)."""
        from ccbridge.cluster import wall_now
        from ccbridge.store.cluster import alive

        me = self._rt.cluster_self()
        settings = self._rt.config.bridge.cluster
        if not self._rt.config.store.enabled:
            return ClusterView((me,), me.identity, False, settings.alive_after)
        async with self._reader.read() as engine:
            rows = await alive(engine, wall_now(), settings.alive_after)
        others = tuple(b for b in rows if b.identity != me.identity)
        ordered = tuple(sorted((me, *others), key=lambda b: b.identity))
        return ClusterView(ordered, me.identity, True, settings.alive_after)
