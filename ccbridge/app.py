"""Composition root: build the bridge's parts, start them in order, stop them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import NamedTuple

from aiohttp import web
from prometheus_client import CollectorRegistry

from ccbridge import sdnotify, variables
from ccbridge.agents import AgentMirror
from ccbridge.agi import health as agi_health
from ccbridge.agi.handlers import make_route_handler
from ccbridge.agi.lookup import make_lookup_handler
from ccbridge.agi.server import FastAgiServer, SessionOutcome
from ccbridge.ami.client import AmiError, LinkState, SiteLink
from ccbridge.clock import Clock
from ccbridge.config.model import Config, Trunk
from ccbridge.http.app import build_app
from ccbridge.kpi import KpiTracker
from ccbridge.logs import ctx
from ccbridge.metrics import BridgeMetrics, LinkSnapshot, TrunkSnapshot
from ccbridge.routing import trunks as trunk_health
from ccbridge.routing.engine import CallRequest, Decision, Router, remember
from ccbridge.routing.state import (
    LiveState,
    apply_event,
    begin_sync,
    complete_sync,
    initial_state,
    set_drained,
    set_site_up,
)
from ccbridge.selfservice import SelfServiceClient

log = logging.getLogger("ccbridge.bridge")

# Events the live state uses; everything else is dropped before the reducer.
STATE_EVENTS = frozenset(
    {
        "QueueCallerJoin",
        "QueueCallerLeave",
        "QueueCallerAbandon",
        "QueueMemberStatus",
        "QueueMemberAdded",
        "QueueMemberRemoved",
        "QueueMemberPause",
        "QueueMemberPenalty",
        "AgentConnect",
        "AgentComplete",
    }
)


# The AMI events the bridge and its listeners (KPIs, agents, trunks) read; see Filter.
AMI_EVENT_FILTER = "Event: (Queue|Agent|ContactStatus|UserEvent|Shutdown|FullyBooted)"


class TrunkNow(NamedTuple):
    """One trunk as the bridge sees it now; see Bridge.trunks_now."""

    trunk: Trunk
    health: trunk_health.TrunkHealth
    usable: bool


class Bridge:
    """One process: an AMI link per site, the FastAGI server, the HTTP API, shared state."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock.from_settings(config.bridge.fixed_clock)
        self.router = Router(config)
        self._site_names = frozenset(s.name for s in config.sites)
        self._services = frozenset(config.services)
        self.state: LiveState = initial_state(s.name for s in config.sites)
        self.registry = CollectorRegistry()
        self.metrics = BridgeMetrics(
            self.registry, lambda: self.state, self._link_snapshots, config=config
        )
        self.links: dict[str, SiteLink] = {}
        self.trunk_policy = trunk_health.BreakerPolicy()
        self._trunk_site = {t.name: t.site for t in config.trunks}
        self.trunks: dict[str, trunk_health.TrunkHealth] = {
            t.name: trunk_health.TrunkHealth(t.name) for t in config.trunks
        }
        self.metrics.set_trunk_source(self.trunk_snapshots)
        # Other parts (KPIs, trunk health, agents) subscribe to every AMI event here.
        self.event_listeners: list[Callable[[str, Mapping[str, str]], None]] = []
        self.kpi = KpiTracker(config, self.registry)
        self.event_listeners.append(self.kpi.on_event)
        self._connected_once: set[str] = set()
        self._sync_tasks: set[asyncio.Task[None]] = set()
        # IVR self-service and the agents' cross-site view (ccbridge/agents.py).
        self.selfservice = SelfServiceClient(config.self_service) if config.self_service else None
        self.agents = AgentMirror(self.clock.time)
        self.event_listeners.append(self.agents.on_event)
        self.agi = FastAgiServer(
            {
                "route": make_route_handler(self.decide, self._on_decision),
                "lookup": make_lookup_handler(config.ivr, self.selfservice),
                agi_health.ROUTE: agi_health.health,  # the AGI guard's check
            },
            config.bridge.agi_listen.host,
            config.bridge.agi_listen.port,
            max_sessions=config.bridge.max_agi_sessions,
            session_timeout=config.bridge.agi_session_timeout,
            on_session_end=self._on_agi_session_end,
        )
        self._runner: web.AppRunner | None = None
        self.http_port: int | None = None

    # -- routing -------------------------------------------------------------------
    def decide(self, call: CallRequest) -> Decision:
        self._refresh_trunks()
        decision = self.router.decide(call, self.state, self.clock.now())
        self.state = remember(self.state, decision)
        return decision

    def _on_decision(self, call: CallRequest, decision: Decision) -> None:
        # The site and service come from the AGI request: only configured names may
        # become label values, or any client of the FastAGI port could add series.
        receiving = call.receiving_site if call.receiving_site in self._site_names else "other"
        service = decision.service if decision.service in self._services else "other"
        self.metrics.decisions.labels(
            receiving,
            decision.site or "none",
            decision.outcome,
            service if decision.service else "none",
            decision.language or "none",
        ).inc()
        for reason in decision.reasons:
            self.metrics.reasons.labels(reason).inc()
        self.metrics.record_decision(receiving, decision)

    def _on_agi_session_end(self, route: str, outcome: SessionOutcome, seconds: float) -> None:
        self.metrics.agi_session_end(route, outcome.value, seconds)

    # -- AMI -----------------------------------------------------------------------
    def _on_event(self, site: str, event: Mapping[str, str]) -> None:
        name = event.get("Event")
        if name in STATE_EVENTS:
            self.state = apply_event(self.state, site, event, self.clock.time())
        elif name == "UserEvent" and event.get("UserEvent") == variables.EVENT_TRUNK_RESULT:
            self._on_trunk_result(event.get("Trunk", ""), event.get("DialStatus", ""))
        elif name == "ContactStatus":
            self._on_contact_status(event.get("AOR", ""), event.get("ContactStatus", ""))
        for listener in self.event_listeners:
            try:
                listener(site, event)
            except Exception:
                log.exception("event listener failed", extra=ctx(site=site))

    def _on_link_state(self, site: str, link_state: LinkState) -> None:
        up = link_state is LinkState.UP
        now = self.clock.time()
        if up and site not in self._connected_once:
            # The first connection after start is not a recovery: no hold-off for it.
            self._connected_once.add(site)
            now -= self.config.routing.site_holdoff
        self.state = set_site_up(self.state, site, up, now)
        log.info("site %s", link_state.value.lower(), extra=ctx(site=site))

    async def _sync_site(self, link: SiteLink) -> None:
        """Full queue state on every (re)connect: QueueStatus replaces what we had."""
        site = link.site_name
        await self._filter_events(link)
        self.state = begin_sync(self.state, site)
        try:
            events = await link.action("QueueStatus", {}, as_list=True)
        except (AmiError, TimeoutError) as exc:
            # E.g. a site still booting (AMI answers before app_queue is loaded): raising
            # makes the link reconnect with backoff and sync again.
            log.warning("queue sync failed, will retry: %s", exc, extra=ctx(site=site))
            raise
        now = self.clock.time()
        for ev in events:
            self.state = apply_event(self.state, site, dict(ev.items()), now)
        self.state = complete_sync(self.state, site)
        await self._sync_contacts(link)
        log.info(
            "queue state synced", extra=ctx(site=site, queues=len(self.state.sites[site].queues))
        )

    # -- trunks ----------------------------------------------------------------------
    def _on_trunk_result(self, trunk: str, status: str) -> None:
        h = self.trunks.get(trunk)
        if h is None:
            return
        after = trunk_health.record_dial(h, status, self.clock.time(), self.trunk_policy)
        self.trunks[trunk] = after
        if status.upper() in trunk_health.FAILOVER_STATUSES:
            self.metrics.failover(self._trunk_site.get(trunk, ""), "trunk")
            log.warning("trunk failed over", extra=ctx(trunk=trunk, dialstatus=status))
        if after.breaker is not h.breaker:
            log.warning("trunk breaker %s", after.breaker.value, extra=ctx(trunk=trunk))
        self._refresh_trunks()

    def _on_contact_status(self, aor: str, status: str) -> None:
        h = self.trunks.get(aor)
        if h is None:
            return
        after = trunk_health.record_contact(h, status)
        if after.reachable != h.reachable:
            log.info("trunk %s", status.lower(), extra=ctx(trunk=aor))
        self.trunks[aor] = after
        self._refresh_trunks()

    def _refresh_trunks(self) -> None:
        bad = trunk_health.unhealthy(self.trunks, self.clock.time(), self.trunk_policy)
        if bad != self.state.unhealthy_trunks:
            self.state = replace(self.state, unhealthy_trunks=bad)

    def trunks_now(self) -> list[TrunkNow]:
        """Every configured trunk's health as of now (an open breaker past its cool-down
        is half-open) and whether routes may use it: what GET /api/v1/trunks shows and
        the metrics' trunk snapshots are made from."""
        now = self.clock.time()
        out = []
        for t in self.config.trunks:
            h = trunk_health.at(self.trunks[t.name], now, self.trunk_policy)
            out.append(TrunkNow(t, h, trunk_health.usable(h, now, self.trunk_policy)))
        return out

    def trunk_snapshots(self) -> list[TrunkSnapshot]:
        """Trunk health for the metrics, read at scrape time."""
        return [
            TrunkSnapshot(t.name, t.site, t.kind.value, t.peer_site or "", up, h.breaker.value)
            for t, h, up in self.trunks_now()
        ]

    # -- drain ---------------------------------------------------------------------
    def set_drained(self, site: str, drained: bool) -> None:
        """Take a site out of routing for maintenance; its calls in progress go on."""
        self.state = set_drained(self.state, site, drained)
        log.warning("site %s", "drained" if drained else "undrained", extra=ctx(site=site))

    async def _filter_events(self, link: SiteLink) -> None:
        """Ask Asterisk to send this session only the events the bridge uses.

        Every call makes dozens of events (Newexten, VarSet, ...) the bridge would parse
        and drop; under load that parsing costs more than routing. Replies to actions
        (QueueStatus lists) are not events to the filter and still arrive.
        """
        try:
            await link.action("Filter", {"Operation": "Add", "Filter": AMI_EVENT_FILTER})
        except (AmiError, TimeoutError) as exc:
            log.warning(
                "AMI event filter refused, taking every event: %s",
                exc,
                extra=ctx(site=link.site_name),
            )

    async def _sync_contacts(self, link: SiteLink) -> None:
        """Trunk reachability as qualify sees it now; ContactStatus events keep it current.

        PJSIPShowContacts lists only registered contacts, not a trunk's static one, so
        each of the site's trunks is asked with PJSIPShowEndpoint (ContactStatusDetail).
        """
        for trunk in self.config.trunks:
            if trunk.site != link.site_name:
                continue
            try:
                reply = await link.action(
                    "PJSIPShowEndpoint", {"Endpoint": trunk.name}, as_list=True
                )
            except (AmiError, TimeoutError) as exc:
                log.warning("trunk status unknown: %s", exc, extra=ctx(trunk=trunk.name))
                continue
            for ev in reply:
                if ev.get("Event") == "ContactStatusDetail" and ev.get("AOR") == trunk.name:
                    self._on_contact_status(trunk.name, ev.get("Status", ""))

    def _link_snapshots(self) -> list[LinkSnapshot]:
        return [
            LinkSnapshot(
                site=name,
                up=link.connected,
                state=link.state.value,
                reconnects=link.reconnects,
                action_timeouts=link.action_timeouts,
                auth_failures=link.auth_failures,
                ping_timeouts=link.ping_timeouts,
            )
            for name, link in self.links.items()
        ]

    # -- lifecycle -------------------------------------------------------------------
    def readiness(self) -> dict[str, bool]:
        return {
            "config_loaded": True,
            "fastagi_listening": self.agi.listening,
            "site_connected": any(link.connected for link in self.links.values()),
        }

    async def start(self) -> None:
        await self.agi.start()
        runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False)
        await runner.setup()
        http = self.config.bridge.http_listen
        site = web.TCPSite(runner, http.host, http.port)
        await site.start()
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else http.port
        for s in self.config.sites:
            link = SiteLink(
                s.name,
                s.ami,
                self._on_event,
                self._on_link_state,
                logging.getLogger("ccbridge.ami"),
                on_ready=self._sync_site,
            )
            self.links[s.name] = link
            await link.start()
        log.info(
            "bridge started",
            extra=ctx(
                agi=f"{self.config.bridge.agi_listen.host}:{self.agi.port}",
                http=f"{http.host}:{self.http_port}",
                sites=len(self.links),
                clock=self.clock.now().isoformat() if self.clock.fixed else "real",
            ),
        )

    async def stop(self) -> None:
        await self.agi.stop()
        if self.selfservice is not None:
            await self.selfservice.close()
        for link in self.links.values():
            await link.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("bridge stopped")


async def serve(config: Config) -> None:
    bridge = Bridge(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sdnotify.install_stall_hook(loop, os.environ)
    service = sdnotify.ServiceNotifier()
    await bridge.start()
    service.ready(f"serving FastAGI on {config.bridge.agi_listen}")
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await service.stopping()
        await bridge.stop()


def run_bridge(config: Config) -> int:
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
