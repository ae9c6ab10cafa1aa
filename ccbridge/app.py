"""Composition root: build the bridge's parts, start them in order, stop them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry

from ccbridge import cluster, eventloop, loopdebug, sdnotify, variables
from ccbridge.access.audit import AuditEvent
from ccbridge.access.metrics import AuditCollector
from ccbridge.access.runtime import AccessStore
from ccbridge.agents import AgentMirror
from ccbridge.agi import allow as agi_allow
from ccbridge.agi import health as agi_health
from ccbridge.agi.handlers import make_route_handler
from ccbridge.agi.lookup import make_lookup_handler
from ccbridge.agi.server import FastAgiServer, SessionOutcome
from ccbridge.ami.client import AmiError, LinkState, SiteLink
from ccbridge.clock import Clock
from ccbridge.cluster import Heartbeat
from ccbridge.config.model import Config
from ccbridge.desk import live as desk_live
from ccbridge.desk.live import LiveCalls
from ccbridge.edge.driver import EdgeDriver
from ccbridge.edge.view import edge_view
from ccbridge.events import EventBus, EventHandler
from ccbridge.heldroutes import HeldRoutePublisher
from ccbridge.http.app import build_app
from ccbridge.kpi import KpiTracker
from ccbridge.lifecycle import Parts, StartError, StopError
from ccbridge.logs import ctx
from ccbridge.metrics import BridgeMetrics, LinkSnapshot, TrunkSnapshot
from ccbridge.recording.part import RecordingPart, object_deleter
from ccbridge.recording.policy import record_variable
from ccbridge.records.activity import ActivityRecorder
from ccbridge.records.part import RecordStore
from ccbridge.reports.rollupjob import RollupJob
from ccbridge.routing import trunks as trunk_health
from ccbridge.routing.engine import CallRequest, Decision, Router, remember
from ccbridge.routing.schedule import warm_calendars
from ccbridge.routing.state import (
    LIVE_MUTATORS,
    LIVE_UPDATES,
    LiveState,
    SiteMaps,
    SiteMutator,
    SiteState,
    SiteUpdate,
    apply_event,
    begin_sync,
    complete_sync,
    initial_state,
    mutate_site,
    set_site_up,
    with_site_maps,
)
from ccbridge.screenpop.history import store_query
from ccbridge.screenpop.publisher import ScreenPop
from ccbridge.selfservice import SelfServiceClient
from ccbridge.services import Services
from ccbridge.services.access import AccessService
from ccbridge.services.ports import TrunkNow
from ccbridge.services.recordsread import RecordsReader
from ccbridge.staffing.gauges import StaffingCollector
from ccbridge.staffing.live import live_staff
from ccbridge.staffing.refresher import LivePlan
from ccbridge.store.cluster import BridgeBeat
from ccbridge.store.engine import import_driver
from ccbridge.store.migrate import SchemaError
from ccbridge.store.retention import RetentionJob
from ccbridge.workers import start_workers

__all__ = ["Bridge", "TrunkNow", "run_bridge", "serve"]

log = logging.getLogger("ccbridge.bridge")

CONTACT_STATUS: Final = "ContactStatus"  # qualify results of the trunks' AORs


class Bridge:
    """One process: an AMI link per site, the FastAGI server, the HTTP API, shared state."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock.from_settings(config.bridge.fixed_clock)
        self.router = Router(config)
        self._site_names = frozenset(s.name for s in config.sites)
        self._services = frozenset(config.services)
        self._state: LiveState = initial_state(s.name for s in config.sites)
        # The event path's open updates: per site, mutable copies of its queue and member
        # maps that AMI events change in place, finished into a new snapshot when a
        # reader asks for the state (every read goes through the state property or
        # held_state). A snapshot a reader holds never changes.
        self._open: dict[str, SiteMaps] = {}
        self.registry = CollectorRegistry()
        self.metrics = BridgeMetrics(
            self.registry, lambda: self.state, self._link_snapshots, config=config
        )
        self.links: dict[str, SiteLink] = {}
        # Routes held in each site's AstDB for calls the bridge is not asked about.
        self.held = HeldRoutePublisher(
            config,
            self.router,
            self.held_state,
            self.clock,
            self.links,
            self.registry,
            on_held_call=self._on_held_call,
        )
        self.trunk_policy = trunk_health.BreakerPolicy()
        self._trunk_site = {t.name: t.site for t in config.trunks}
        self.trunks: dict[str, trunk_health.TrunkHealth] = {
            t.name: trunk_health.TrunkHealth(t.name) for t in config.trunks
        }
        # The trunks that may be unusable (a qualify said unreachable, or a breaker left
        # CLOSED): the only ones every decision looks at again, where all trunks cost
        # O(trunks) a call (2,450 trunks with 50 sites in a full mesh: BENCHMARKS §12).
        self._suspect_trunks: set[str] = set()
        self.metrics.set_trunk_source(self.trunk_snapshots)
        self.kpi = KpiTracker(config, self.registry)
        self._connected_once: set[str] = set()
        # Set once every site has synced since start or failed its first connection:
        # until then the AGI guards' check fails and /readyz says not ready (issue 15).
        self._first_sync_done = False
        self.sessions_before_first_sync = 0
        # IVR self-service and the agents' cross-site view (ccbridge/agents.py).
        self.selfservice = SelfServiceClient(config.self_service) if config.self_service else None
        self.agents = AgentMirror(self.clock.time)
        # Every part subscribes to the AMI events it reads, by name; each AMI session's
        # Filters are built from these subscriptions (bus.ami_match_criteria), so none
        # can drift.
        # The reducer first: the KPIs and the mirror see the state after the event.
        self.bus = EventBus()
        for name, mutate in sorted(LIVE_MUTATORS.items()):
            self.bus.subscribe(name, self._state_handler(mutate, LIVE_UPDATES[name]))
        self.kpi.subscribe(self.bus)
        self.agents.subscribe(self.bus)
        self.bus.subscribe_user_event(variables.EVENT_TRUNK_RESULT, self._on_trunk_result_event)
        self.bus.subscribe(CONTACT_STATUS, self._on_contact_status_event)
        self.bus.subscribe_user_event(variables.EVENT_HELD_ROUTE, self.held.on_event)
        self.bus.subscribe_user_event(variables.EVENT_HELD_REJECTED, self.held.on_event)
        # The call record (issue 12): only when the config keeps one (`store:`).
        self.records = RecordStore(config, self.registry) if config.store.enabled else None
        if self.records is not None:
            self.records.ingest.subscribe(self.bus)
            # Logins, pauses and rings for the agent report (its own records, same writer)
            self.activity = ActivityRecorder(self.records.writer.put, self.clock.now)
            self.activity.subscribe(self.bus)
        # Call recording (issue 14): with `recording:` and a store for its index.
        self.recording: RecordingPart | None = None
        if config.recording is not None and config.store.enabled:
            self.recording = RecordingPart(config, self.registry, self.clock.now)
            self.recording.subscribe(self.bus)
        # Calls the desk acts on (supervision, transfer, hold; issue 14), from AMI events.
        # Ended calls it remembers: a few with records on (the store answers for the rest).
        ended = desk_live.ENDED_WITH_STORE if config.store.enabled else desk_live.MAX_ENDED
        self.desk = LiveCalls(self.clock.time, max_ended=ended)
        self.desk.subscribe(self.bus)
        # Screen pops (issue 14): the caller's details and history when an agent rings
        # and answers, to the event stream and webhooks; history from the records.
        self._pop_reader = RecordsReader(self) if config.store.enabled else None
        self.screen_pop = ScreenPop(
            config,
            self.registry,
            self.clock.now,
            store_query(self._pop_reader.read) if self._pop_reader is not None else None,
            channel_var=self._channel_var,
        )
        self.screen_pop.subscribe(self.bus)
        # Reports run in the record writer's child when it has one (one child, not two).
        writer_child = self.records.writer.process if self.records is not None else None
        self.services = Services.over(self, writer_child)
        # The current half hour's required and staffed agents per queue (issue 16), from
        # a plan of the records recomputed every 15 minutes off the hot path.
        self.live_plan: LivePlan | None = None
        if config.store.enabled:
            self.live_plan = LivePlan(
                self.services.staffing.plan_around,
                self.clock.now,
                lambda: live_staff(self.state),
            )
            self.registry.register(StaffingCollector(self.live_plan.current))
        # Purges records past records.retention_days (issue 12), on its own engine.
        self.retention = RetentionJob(
            config.store,
            config.records.retention_days,
            config.records.purge_interval,
            self.clock.now,
            delete_objects=object_deleter(self.recording.storage) if self.recording else None,
            audit_days=config.records.audit_retention_days,
        )
        # Rolls closed days into the interval report's rollup (ccbridge/reports/rollup.py),
        # in the report worker process, once between several bridges.
        self.rollup = RollupJob(
            lambda: self.services.reports.roll(self.retention.identity),
            config.records.rollup_interval,
        )
        # Several bridges (issue 15): this one's heartbeat row in the shared store, and
        # the FastAGI sessions it served (route and lookup; the guard's checks are not).
        self.sessions_served = 0
        self.heartbeat = Heartbeat(
            config.store, config.bridge.cluster.heartbeat, self._cluster_snapshot
        )
        self.agi = FastAgiServer(
            {
                variables.AGI_ROUTE: make_route_handler(
                    self.decide, self._on_decision, self._record if self.recording else None
                ),
                variables.AGI_LOOKUP: make_lookup_handler(config.ivr, self.selfservice),
                # the AGI guard's check: passes once the first sync is done
                variables.AGI_HEALTH: agi_health.health_route(self.first_sync_done),
            },
            config.bridge.agi_listen.host,
            config.bridge.agi_listen.port,
            max_sessions=config.bridge.max_agi_sessions,
            session_timeout=config.bridge.agi_session_timeout,
            on_session_end=self._on_agi_session_end,
            allow=agi_allow.allowlist(config),
            on_forbidden=self.metrics.agi_forbidden.inc,
        )
        # The SIP edge in front of the sites (config `edge:`): kept told which sites take calls.
        view = edge_view(config)
        self.edge: EdgeDriver | None = None
        if view is not None and view.settings.enabled:
            hold = config.routing.site_holdoff
            self.edge = EdgeDriver(view, lambda: self.state, self.clock.time, hold, self.registry)
        self._parts: Parts | None = None
        self.http_port: int | None = None
        self.access_store = AccessStore(config)
        # Users and the audit trail join at start (engine and trail set then): a bridge
        # built but not started knows only the bootstrap token.
        self.access = AccessService.from_config(config, None, None)
        self.registry.register(AuditCollector(lambda: self.access.trail))

    @property
    def state(self) -> LiveState:
        if self._open:
            self._finish_open()
        return self._state

    @state.setter
    def state(self, new: LiveState) -> None:
        # Every change of the live state may change a held route: the publisher coalesces.
        # A state set without reading the current one replaces it, open updates and all.
        self._open.clear()
        if new is not self._state:
            self._state = new
            self.held.state_changed()
            if self.edge is not None:
                self.edge.poke()  # a drain or a site down reaches the SIP edge at once

    def held_state(self) -> LiveState:
        """The state held routes are computed from. A breaker leaves OPEN by time alone
        (its cool-down), never by an event: refreshed here too, or while held routes carry
        every call no FastAGI decision would, and a recovered trunk stayed last forever."""
        self._refresh_trunks()
        return self.state

    # -- routing -------------------------------------------------------------------
    def decide(self, call: CallRequest) -> Decision:
        self._refresh_trunks()
        decision = self.router.decide(call, self.state, self.clock.now())
        self.state = remember(self.state, decision)
        return decision

    def _on_held_call(self, call: CallRequest, decision: Decision) -> None:
        """The dialplan routed a call from a held route: remembered and counted as if
        decided here, so the decision metrics cover every routed call."""
        self.state = remember(self.state, decision)
        self._on_decision(call, decision)

    def _on_decision(self, call: CallRequest, decision: Decision) -> None:
        # The site and service come from the AGI request: only configured names may
        # become label values, or any client of the FastAGI port could add series.
        receiving = call.receiving_site if call.receiving_site in self._site_names else "other"
        service = decision.service if decision.service in self._services else "other"
        metrics = self.metrics
        metrics.decision(
            receiving,
            decision.site or "none",
            decision.outcome.value,
            service if decision.service else "none",
            decision.language or "none",
        ).inc()
        for reason in decision.reasons:
            metrics.reason(reason).inc()
        self.metrics.record_decision(receiving, decision)
        if self.records is not None:
            self.records.ingest.on_decision(call, decision)
        self.screen_pop.on_decision(call, decision)

    async def _channel_var(self, site: str, channel: str, name: str) -> str | None:
        """One channel variable over the site's AMI link (``Getvar``), None when the link
        is down, the channel gone or the answer late: a screen pop waits for nothing."""
        link = self.links.get(site)
        if link is None or not link.connected:
            return None
        try:
            reply = await link.action(
                "Getvar", {"Channel": channel, "Variable": name}, as_list=False, timeout=0.5
            )
        except (AmiError, TimeoutError):
            return None
        return reply.get("Value") or None

    def _record(self, decision: Decision) -> str:
        """CCB_RECORD for a call the bridge routes to a queue (sampled per call)."""
        if decision.queue is None:
            return ""
        return record_variable(self.config.recording, decision.site, decision.service)

    def _on_agi_session_end(self, route: str, outcome: SessionOutcome, seconds: float) -> None:
        self.metrics.agi_session_end(route, outcome.value, seconds)
        if route != variables.AGI_HEALTH:
            self.sessions_served += 1
            if not self.first_sync_done():
                # A call served on queue state not yet synced (none behind a guard).
                self.sessions_before_first_sync += 1

    # -- several bridges -------------------------------------------------------------
    def _cluster_snapshot(self) -> tuple[tuple[str, ...], int]:
        up = tuple(sorted(name for name, link in self.links.items() if link.connected))
        return up, self.sessions_served

    def cluster_self(self) -> BridgeBeat:
        """This bridge as its next heartbeat row will say (GET /api/v1/cluster)."""
        return self.heartbeat.current()

    # -- AMI -----------------------------------------------------------------------
    def _state_handler(self, mutate: SiteMutator, update: SiteUpdate) -> EventHandler:
        """The live-state handler of one event name as its bus handler (no second lookup
        by name, apply_event's).

        Most events change one site's queues and members. Persistently that is a new
        pair of maps, SiteState and LiveState per event, and with thousands of members
        a map's copied path grows with the site; the events between two reads change the
        site's open copies of its maps in place instead (``_open``), and a read makes
        one new snapshot of them all (``_finish_open``).
        """
        state_changed = self.held.state_changed
        open_maps = self._open

        def on_event(site: str, event: Mapping[str, str]) -> None:
            maps = open_maps.get(site)
            if maps is None:
                s = self._state.sites.get(site)
                if s is None:  # a site the config does not name: the reducer adds it
                    s = SiteState(site)
                    got = update(s, event, self.clock.time())
                    if got is not None:
                        self.state = with_site_maps(self.state, s, got)
                    return
                maps = open_maps[site] = mutate_site(s)
            if mutate(maps[0], maps[1], event, self.clock.time()):
                state_changed()

        return on_event

    def _finish_open(self) -> None:
        """Put the open maps of every site into a new snapshot (a reader is asking)."""
        state = self._state
        for site, (queues, members) in self._open.items():
            s = state.sites.get(site)
            if s is not None:
                state = with_site_maps(state, s, (queues.finish(), members.finish()))
        self._open.clear()
        self._state = state

    def _on_trunk_result_event(self, site: str, event: Mapping[str, str]) -> None:
        self._on_trunk_result(event.get("Trunk", ""), event.get("DialStatus", ""))

    def _on_contact_status_event(self, site: str, event: Mapping[str, str]) -> None:
        self._on_contact_status(event.get("AOR", ""), event.get("ContactStatus", ""))

    def _on_link_state(self, site: str, link_state: LinkState) -> None:
        up = link_state is LinkState.UP
        now = self.clock.time()
        if up and site not in self._connected_once:
            # The first connection after start is not a recovery: no hold-off for it.
            self._connected_once.add(site)
            now -= self.config.routing.site_holdoff
        self.state = set_site_up(self.state, site, up, now)
        self.held.link_changed(site)
        if self.records is not None:
            self.records.link_state(site, up)
        if self.recording is not None and up:
            # MixMonitorStops missed while the link was down: those recordings are
            # unknown now (their files still reach storage: the shipper scans folders).
            self.recording.live.forget_site(site)
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
        await self._close_gone(link)
        # The link is ready once this hook returns: look then whether it was the last one.
        asyncio.get_running_loop().call_soon(self.first_sync_done)

    async def _close_gone(self, link: SiteLink) -> None:
        """Calls whose end came while the link was down (their events are lost): ask the
        site for its channels and end, in the record and the desk, the site's calls
        whose channels are gone. Without it they stayed in memory: the record's for 4 h,
        the desk's until 20,000 newer calls pushed them out. Nothing is asked while
        neither follows a call at the site; a site that cannot answer leaves them."""
        site = link.site_name
        records = self.records
        if not (records is not None and records.open_legs(site)) and not self.desk.has_calls(site):
            return
        try:
            listed = await link.action("CoreShowChannels", {}, as_list=True)
        except (AmiError, TimeoutError) as exc:
            log.warning(
                "calls ended while the link was down not checked: %s", exc, extra=ctx(site=site)
            )
            return
        channels = [ev for ev in listed if ev.get("Event") == "CoreShowChannel"]
        try:
            closed = await records.close_gone(site, channels) if records is not None else 0
            names = {ev["Channel"] for ev in channels if "Channel" in ev}
            desk = self.desk.close_gone(site, names)
        except Exception:
            # A bug, not the site: raising here would drop the link and loop the sync.
            log.exception(
                "closing calls ended while the link was down failed", extra=ctx(site=site)
            )
            return
        if closed or desk:
            log.info(
                "calls ended while the link was down closed",
                extra=ctx(site=site, records=closed, desk=desk),
            )

    # -- trunks ----------------------------------------------------------------------
    def _on_trunk_result(self, trunk: str, status: str) -> None:
        h = self.trunks.get(trunk)
        if h is None:
            return
        after = trunk_health.record_dial(h, status, self.clock.time(), self.trunk_policy)
        self._set_trunk(trunk, after)
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
        self._set_trunk(aor, after)
        self._refresh_trunks()

    def _set_trunk(self, name: str, health: trunk_health.TrunkHealth) -> None:
        self.trunks[name] = health
        if health.reachable is False or health.breaker is not trunk_health.Breaker.CLOSED:
            self._suspect_trunks.add(name)
        else:
            self._suspect_trunks.discard(name)

    def _refresh_trunks(self) -> None:
        suspects = {name: self.trunks[name] for name in self._suspect_trunks}
        bad = trunk_health.unhealthy(suspects, self.clock.time(), self.trunk_policy)
        # Compared on the state as it is, not handed out (the state property would make
        # the next AMI event copy its site instead of updating it in place).
        if bad != self._state.unhealthy_trunks:
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

    async def _filter_events(self, link: SiteLink) -> None:
        """Ask Asterisk to send this session only the events the bridge uses.

        Every call makes dozens of events (Newexten, VarSet, ...) the bridge would parse
        and drop; under load that parsing costs more than routing. Replies to actions
        (QueueStatus lists) are not events to the filter and still arrive. The filter is
        made from the bus's subscriptions, so it admits exactly what some part reads.
        """
        try:
            # One name filter per event (a hash compare in Asterisk), not one regex over
            # every event's text: the session's thread spent half again as much CPU per
            # call on the regex (events.EventBus.ami_match_criteria).
            for criteria in self.bus.ami_match_criteria():
                await link.action("Filter", {"Operation": "Add", "MatchCriteria": criteria})
            return
        except (AmiError, TimeoutError) as exc:
            log.warning(
                "AMI name filter refused, using the regex filter: %s",
                exc,
                extra=ctx(site=link.site_name),
            )
        try:
            await link.action("Filter", {"Operation": "Add", "Filter": self.bus.ami_filter()})
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
                bad_input=link.bad_input,
                tls_failures=link.tls_failures,
            )
            for name, link in self.links.items()
        ]

    # -- lifecycle -------------------------------------------------------------------
    def audit(self, event: AuditEvent) -> None:
        self.access.audit(event)

    def first_sync_done(self) -> bool:
        """True once every site's link has, since start, either completed its first full
        sync or failed its first connection (a site down does not hold the bridge back);
        it stays True after that: a later resync of one site does not take the whole
        bridge out of the guards' rotation. Before it, a route would be decided on empty
        queue state, so the guards' health check (agi/health.py) fails."""
        if not self._first_sync_done and self.links:
            self._first_sync_done = all(
                link.ready or link.state in (LinkState.DOWN, LinkState.AUTH_FAILED)
                for link in self.links.values()
            )
            if self._first_sync_done:
                # Every reachable site's queue state is in now (5,000 members' maps in a
                # large centre) and lives on, changed in place: out of the collector's
                # reach like start-up's objects. A full collection walked it in 99-171 ms
                # under load (BENCHMARKS §12), a loop stall and a latency tail.
                gc.freeze()
        return self._first_sync_done

    def readiness(self) -> dict[str, bool]:
        return {
            "config_loaded": True,
            "fastagi_listening": self.agi.listening,
            "site_connected": any(link.connected for link in self.links.values()),
            "sites_synced": self.first_sync_done(),
        }

    def readiness_detail(self) -> dict[str, object]:
        """What /readyz shows beside its checks; none of it makes the bridge unready
        (the record database being down never stops routing)."""
        first = {"sessions_before_first_sync": self.sessions_before_first_sync}
        if self.records is None:
            return {"records": {"enabled": False}, "routing": first}
        return {"records": {"enabled": True, **self.records.status()}, "routing": first}

    def http_app(self) -> web.Application:
        """The HTTP API over this bridge's services and metrics registry."""
        return build_app(
            self.services,
            registry=self.registry,
            api_token=self.config.bridge.api_token,
            access_service=self.access,
        )

    async def start(self) -> None:
        """Start every part: the HTTP API, the AMI links, then FastAGI (calls come last,
        and stop first).

        If a part fails to start, the parts already started are stopped and StartError
        names the part and its address; nothing is left running.
        """
        if self._parts is not None:
            raise RuntimeError("bridge already started")
        parts = self._parts = Parts()
        self._first_sync_done, self.sessions_before_first_sync = False, 0
        # No collection while starting: what start builds lives as long as the process
        # (frozen below), and a full collection meanwhile walked all of it on the loop:
        # serve()'s start steps of 61-70 ms in CI, once the holiday countries were
        # imported by the calendars' warm-up thread during start (seventh session).
        collecting = gc.isenabled()
        gc.disable()
        try:
            await self._start_collector_paused(parts)
        finally:
            if collecting:
                gc.enable()
        log.info(
            "bridge started",
            extra=ctx(
                agi=f"{self.config.bridge.agi_listen.host}:{self.agi.port}",
                http=f"{self.config.bridge.http_listen.host}:{self.http_port}",
                sites=len(self.links),
                clock=self.clock.now().isoformat() if self.clock.fixed else "real",
            ),
        )

    async def _start_collector_paused(self, parts: Parts) -> None:
        """``start``'s work, with the collector paused around it."""
        # Every worker thread of to_thread's pool started now, not by a later submit
        # that would hold the loop until the new thread runs (ccbridge/workers.py).
        await start_workers()
        # Holiday calendars fill a year in on its first lookup (tens of ms): this year's
        # and its neighbours' in a thread, before anything routes on the loop.
        year = self.clock.now().year
        schedules = [o.schedule for s in self.config.sites for o in s.offerings]
        await asyncio.to_thread(warm_calendars, schedules, range(year - 1, year + 2))
        try:
            await self._start_parts(parts)
        except BaseException:
            self._parts = None
            self.links.clear()
            self.http_port = None
            try:
                await parts.aclose()
            except StopError as stop_failed:
                log.error("%s while undoing a failed start", stop_failed)
            raise
        # Everything built so far (config, routing indexes, modules, the parts) lives as
        # long as the process: move it out of the collector's reach. A full collection
        # otherwise walks it all and stalls the loop (81-126 ms measured with the lab's
        # config on the shared 2-core machine; 0.002 ms after the freeze).
        gc.freeze()

    async def _start_parts(self, parts: Parts) -> None:
        # The staffing plan's reader of the records store: opened on first use.
        parts.on_stop("staffing records reader", self.services.staffing.close)
        parts.on_stop("reports records reader", self.services.reports.close)
        parts.on_stop("cluster records reader", self.services.cluster.close)
        parts.on_stop("desk records reader", self.services.desk.close)
        if self.selfservice is not None:
            parts.on_stop("self-service client", self.selfservice.close)
        http = self.config.bridge.http_listen
        # Users and the audit trail first: the API checks tokens and audits from its
        # first request, and they stop after it.
        await parts.start(
            "user store and audit trail",
            self.config.store.url.split("://", 1)[0],
            self.access_store.start,
            self.access_store.stop,
        )
        self.access.engine = self.access_store.engine
        self.access.trail = self.access_store.trail
        tls = self.config.bridge.tls
        ssl_context = await asyncio.to_thread(tls.server_context) if tls is not None else None
        # Built in a thread: aiohttp compiles a regular expression for each route with a
        # variable part (~20 ms of CPU for the API's routes), which the loop need not wait on.
        app = await asyncio.to_thread(self.http_app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await parts.start("HTTP API", str(http), runner.setup, runner.cleanup)
        # The runner's cleanup (just pushed) also closes the site's socket.
        await parts.start(
            "HTTP API",
            str(http),
            web.TCPSite(runner, http.host, http.port, ssl_context=ssl_context).start,
        )
        self.http_port = runner.addresses[0][1]
        if self._pop_reader is not None:
            parts.on_stop("screen pop records reader", self._pop_reader.close)
        # Before the AMI links: their first pops find the webhook workers running.
        pop = self.screen_pop
        await parts.start("screen pop webhooks", None, pop.start, pop.stop)
        if self.records is not None:
            # Before the AMI links: the first events are recorded; stopped after them.
            records = self.records
            await parts.start("record store", records.where, records.start, records.stop)
        for s in self.config.sites:
            link = SiteLink(
                s.name,
                s.ami,
                self.bus.dispatch,
                self._on_link_state,
                logging.getLogger("ccbridge.ami"),
                on_ready=self._sync_site,
            )
            self.links[s.name] = link
            await parts.start(
                f"AMI link to {s.name}", f"{s.ami.host}:{s.ami.port}", link.start, link.stop
            )
        if self.edge is not None:
            edge = self.edge
            await parts.start("SIP edge driver", edge.view.settings.rpc_url, edge.start, edge.stop)
        held = self.config.routing.held_routes
        if held.enabled:
            await parts.start("held routes", "each site's AstDB", self.held.start, self.held.stop)
        agi = self.config.bridge.agi_listen
        await parts.start("FastAGI server", str(agi), self.agi.start, self.agi.stop)
        identity = cluster.identity(self.config, self.http_port)
        self.heartbeat.identity = self.retention.identity = identity
        if self.config.store.enabled:
            beat = self.heartbeat
            await parts.start("cluster heartbeat", identity, beat.start, beat.stop)
        if self.records is not None:
            await parts.start("records retention", None, self.retention.start, self.retention.stop)
            await parts.start("records rollup", None, self.rollup.start, self.rollup.stop)
        if self.recording is not None:
            rec = self.recording
            await parts.start("recording transfer", rec.where, rec.start, rec.stop)
        if self.live_plan is not None:
            plan = self.live_plan
            await parts.start("staffing gauges", None, plan.start, plan.stop)

    async def stop(self) -> None:
        """Stop every part, newest first, each even when another fails; raises StopError
        listing every failure."""
        parts, self._parts = self._parts, None
        if parts is None:
            return
        try:
            await parts.aclose()
        finally:
            self.links.clear()
            self.http_port = None
            log.info("bridge stopped")


async def serve(config: Config, *, slow_callback_ms: float | None = None) -> None:
    """Run the bridge until SIGTERM or SIGINT; ``slow_callback_ms`` turns on the loop's
    slow-callback report (ccbridge/loopdebug.py)."""
    loop = asyncio.get_running_loop()
    if slow_callback_ms is not None:
        loopdebug.report_slow_callbacks(loop, slow_callback_ms)
    # The store's dialect and driver imported off the loop: building the bridge makes its
    # engines, and the first one imported them (60-90 ms of CPU for PostgreSQL).
    await asyncio.to_thread(import_driver, config.store)
    # The bridge is built in a thread too: 6-9 ms of CPU on a quiet machine with the
    # driver imported (70-81 ms when building it imported PostgreSQL's, fourteenth
    # session), but a bridge restarted under the lab's load took 40 ms in that step, 7 ms
    # of it a collection (fifteenth session, the gate at 25 ms). Nothing waits on the
    # loop meanwhile, and building binds nothing to it: asyncio's primitives bind to a
    # loop when first used, and the parts start on the loop below.
    bridge = await asyncio.to_thread(Bridge, config)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sdnotify.install_stall_hook(loop, os.environ)
    service = sdnotify.ServiceNotifier()
    try:
        await bridge.start()
        # Only now: systemd or `ccbridge supervise` starts judging the heartbeat.
        service.ready(f"serving FastAGI on {config.bridge.agi_listen}")
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await service.stopping()
        await bridge.stop()


def run_bridge(config: Config, *, slow_callback_ms: float | None = None) -> int:
    """``ccbridge run``: 0 after a clean stop; 1 with one error line when a part cannot
    start (everything started is stopped again) or when parts failed to stop."""
    try:
        eventloop.run(serve(config, slow_callback_ms=slow_callback_ms), config.bridge.event_loop)
    except StartError as exc:
        log.error("%s", exc)
        # A record database on a schema this ccbridge does not write: exit 2 (bad config
        # or deployment, like `ccbridge check`), not 1 (a part that failed to start).
        return 2 if isinstance(exc.__cause__, SchemaError) else 1
    except StopError as exc:
        # Each failure was logged as it happened (lifecycle.Parts); this is the summary.
        log.error("bridge stop: %s", exc)
        return 1
    return 0
