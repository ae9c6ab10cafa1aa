"""The bridge keeps the SIP edge's view of the sites right: disabled while down, drained or
held off, active again after (Kamailio `dispatcher.set_state` over JSON-RPC); and a site
whose AMI link drops is reported lost, so the calls in setup there move on at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from ccbridge.edge.rpc import REASONS, EdgeRpcError, KamailioRpc
from ccbridge.edge.view import STATE_ACTIVE, STATE_DISABLED, EdgeView
from ccbridge.logs import ctx
from ccbridge.routing.engine import site_unusable
from ccbridge.routing.state import LiveState

log = logging.getLogger("ccbridge.edge")

# Seconds between two looks at the live state when nothing pokes the driver (a hold-off
# ending is noticed this way); a drain or a link change pokes it (poke()) at once.
TICK = 0.1
SETTLE = 0.02  # at least this between two pushes: a burst of state changes is one look
RETRY = 1.0  # seconds before the first retry while the edge's RPC fails; doubles to resync
# A site not seen up since the bridge started is left as the edge has it this long: a
# bridge (re)starting must not disable every site before its AMI links had a chance.
START_GRACE = 5.0

Key = tuple[int, str]  # (dispatcher set id, site)


class EdgeDriver:
    """A part of the bridge: start() runs a loop that pushes each site's wanted state to the
    edge when it changes, and every site's again every ``resync`` seconds."""

    def __init__(
        self,
        view: EdgeView,
        state: Callable[[], LiveState],
        now: Callable[[], float],
        holdoff: float,
        registry: CollectorRegistry,
        *,
        rpc: KamailioRpc | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.view = view
        self._state = state
        self._now = now
        self._holdoff = holdoff
        self._mono = monotonic
        self.rpc = rpc or KamailioRpc(view.settings.rpc_url, view.settings.rpc_timeout)
        self._sent: dict[Key, str] = {}  # what the edge confirmed, per set and site
        self._seen: set[str] = set()  # sites seen up since start
        self._lost: set[str] = set()  # sites down since seen up, reported lost to the edge
        self._started = 0.0
        self._next_full = 0.0
        self._retry_at = 0.0
        self._failures = 0  # failed attempts in a row
        self._failing: str | None = None  # the reason of the current failure streak
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.rpc_total = Counter(
            "ccbridge_edge_rpc_total",
            "JSON-RPC requests to the SIP edge by result (ok or why they failed)",
            ["result"],
            registry=registry,
        )
        for result in ("ok", *REASONS):
            self.rpc_total.labels(result)
        self.calls_moved = Counter(
            "ccbridge_edge_calls_moved_total",
            "Calls in setup at a site whose AMI link dropped that the SIP edge moved on to "
            "the next site",
            ["site"],
            registry=registry,
        )
        self.site_active = Gauge(
            "ccbridge_edge_site_active",
            "1 when the SIP edge confirmed the site takes calls, 0 when disabled",
            ["site"],
            registry=registry,
        )

    async def start(self) -> None:
        self._started = self._mono()
        self._task = asyncio.create_task(self._run(), name="edge driver")

    def poke(self) -> None:
        """The live state changed (the bridge's state setter): look now, not at the tick."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.rpc.close()

    def wanted(self) -> dict[Key, str]:
        """The state each (set, site) should have now. A set none of whose sites the bridge
        sees usable is left to the edge's own probing (all active): a bridge cut off from
        every site must not refuse calls that the sites could still take."""
        live = self._state()
        ts = self._now()
        mono = self._mono()
        usable = {}
        for site in self.view.uris:
            s = live.sites.get(site)
            if s is not None and s.up:
                self._seen.add(site)
            known = site in self._seen or mono - self._started >= START_GRACE
            usable[site] = site_unusable(s, ts, self._holdoff) is None if known else None
        out: dict[Key, str] = {}
        for group in self.view.sets:
            if not any(usable[site] for site in group.sites):
                for site in group.sites:
                    if usable[site] is not None:
                        out[(group.id, site)] = STATE_ACTIVE
                continue
            for site in group.sites:
                if usable[site] is not None:
                    out[(group.id, site)] = STATE_ACTIVE if usable[site] else STATE_DISABLED
        return out

    async def sync_once(self, full: bool = False) -> bool:
        """Push what changed (everything when ``full``), then report sites newly lost;
        False when the edge failed."""
        return await self._push_states(full) and await self._report_lost()

    def newly_lost(self) -> list[str]:
        """Sites seen up since start whose AMI link is down and that the edge was not told
        of yet. Drained or held-off sites are alive: their calls in setup stay. A site in
        no dispatcher set gets no call from the edge (nor is it in its list)."""
        live = self._state()
        lost = []
        for site in self._seen:
            if not self.view.sets_of(site):
                continue
            s = live.sites.get(site)
            if s is not None and s.up:
                self._lost.discard(site)
            elif site not in self._lost:
                lost.append(site)
        return sorted(lost)

    async def _report_lost(self) -> bool:
        for site in self.newly_lost():
            try:
                moved = await self.rpc.site_lost(self.view.uris[site])
            except EdgeRpcError as exc:
                self._failed(exc, site)
                return False
            self.rpc_total.labels("ok").inc()
            self._lost.add(site)
            self.calls_moved.labels(site).inc(moved)
            log.warning(
                "SIP edge: site lost, %d call(s) in setup there moved on",
                moved,
                extra=ctx(site=site),
            )
        return True

    def _failed(self, exc: EdgeRpcError, site: str) -> None:
        self.rpc_total.labels(exc.reason).inc()
        if self._failing != exc.reason:
            self._failing = exc.reason
            log.warning(
                "SIP edge RPC failed, retrying: %s", exc, extra=ctx(site=site, reason=exc.reason)
            )

    async def _push_states(self, full: bool) -> bool:
        for key, state in self.wanted().items():
            if not full and self._sent.get(key) == state:
                continue
            group, site = key
            try:
                await self.rpc.set_state(state, group, self.view.uris[site])
            except EdgeRpcError as exc:
                self._sent.pop(key, None)
                self._failed(exc, site)
                return False
            self.rpc_total.labels("ok").inc()
            if self._failing is not None:
                self._failing = None
                log.info("SIP edge RPC answers again")
            if self._sent.get(key) != state:
                self._sent[key] = state
                self._report(site)
        return True

    def _report(self, site: str) -> None:
        states = {s for (_, name), s in self._sent.items() if name == site}
        if states == {STATE_ACTIVE}:
            self.site_active.labels(site).set(1)
            log.info("SIP edge: site active", extra=ctx(site=site))
        elif states == {STATE_DISABLED}:
            self.site_active.labels(site).set(0)
            log.info("SIP edge: site disabled", extra=ctx(site=site))

    async def _run(self) -> None:
        while True:
            mono = self._mono()
            if mono >= self._retry_at:
                full = mono >= self._next_full
                try:
                    ok = await self.sync_once(full)
                except Exception:  # a bug here must not end the loop: log, retry later
                    log.exception("SIP edge driver failed")
                    ok = False
                if ok and full:
                    self._next_full = mono + self.view.settings.resync
                if ok:
                    self._failures = 0
                else:
                    # An edge that stays unreachable (a bridge on another host than its
                    # loopback RPC) costs a request every `resync` seconds, not every tick.
                    self._failures += 1
                    wait = min(RETRY * 2 ** (self._failures - 1), self.view.settings.resync)
                    self._retry_at = self._mono() + wait
            await asyncio.sleep(SETTLE)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK - SETTLE)
            self._wake.clear()
