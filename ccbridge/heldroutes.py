"""Keep each site's held routes (routing/held.py) among its dialplan globals over AMI, and
hear back from the dialplan when it refused one or used one without the bridge.

One task per site: it recomputes the site's table when the live state changed (at most
every ``min_interval``, on the site's own slots of that interval: ``next_slot``) and on a
``refresh`` timer, in slices that give the event loop
back, sets only the globals whose routes changed (``Setvar`` with no channel; an empty
value for keys no longer in the table), then the heartbeat (the PBX's epoch) and the
fresh deadline (heartbeat + ``fresh_age``) once every write of the pass succeeded.
Globals live in Asterisk's memory: a restart or a ``dialplan reload`` (clearglobalvars)
empties them, so the first pass of each second reads the heartbeat back (``Getvar``)
and writes the whole table again when it is not the one this bridge wrote; so does every
(re)connect. The heartbeat is in whole seconds: the other passes of that second write
neither it nor the deadline (they would write the same values).
Until then the dialplan finds no fresh table and asks the bridge over FastAGI.

With ``use_without_bridge`` the pass also writes the fresh path: each ccb-inbound
extension of a number without a menu gets its route step replaced (DialplanExtensionAdd
with Replace) when its route changed, and the fresh deadline is capped at the table's
first ``until`` (routing/held.py ``fresh_steps``). A reload puts the rendered steps back
with the globals gone: the same read-back rewrites both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter

from ccbridge import variables as v
from ccbridge.ami.client import AmiError, SiteLink
from ccbridge.ami.pano import ActionFields
from ccbridge.clock import Clock
from ccbridge.config.model import Config, Site
from ccbridge.logs import ctx
from ccbridge.routing.engine import (
    CallRequest,
    Decision,
    Router,
    reads_sticky,
    site_inputs,
    site_unusable,
)
from ccbridge.routing.held import (
    ASK_BRIDGE,
    Boundaries,
    HeldEntry,
    HeldRoute,
    InboundVariant,
    call_id_step,
    fresh_steps,
    held_entry,
    held_key,
    held_service_key,
    inbound_variants,
    route_id,
    routes_at,
    same_routes,
    table_keys,
)
from ccbridge.routing.held import encode as encode_entry
from ccbridge.routing.state import LiveState, SiteState

log = logging.getLogger("ccbridge.held")

SLICE = 8  # entries encoded between two yields to the event loop
# Seconds of table computation between two yields, and only one site computes at a time
# (the publisher's gate): a state change wakes every site's pass at once, and 20 sites
# each computing 8 entries in the same loop turn held it 6-12 ms four times a second,
# the route latency's tail at 500 calls/s (BENCHMARKS §12).
COMPUTE_SLICE = 0.001
# Writes sent in one AMI write (SiteLink.plain_actions), their replies awaited together: a
# pass's few in one round trip; after a reload a site's every key, in writes of this many.
BATCH = 64
SOURCES = (v.HELD_FRESH, v.HELD_FALLBACK)
REJECT_REASONS = (v.HELD_REJECT_INVALID, v.HELD_REJECT_EXPIRED)
OTHER = "other"


@dataclass(slots=True)
class _Written:
    """What this bridge knows a site's globals hold: key -> value, and the decisions."""

    values: dict[str, str]
    decisions: dict[str, tuple[float, Decision, Decision]]  # key -> (until, now, next)
    heartbeat: str = ""  # the last heartbeat written: read back, it proves the table is there
    fresh: str = ""  # the last fresh deadline written
    # ccb-inbound extension -> the route steps written into it (the fresh path)
    steps: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # What those steps were made from (each key's route and service), once every
    # extension was written: the same again writes nothing, so the pass skips them.
    steps_from: tuple[tuple[str, HeldRoute, str], ...] | None = None
    # key -> what its value was encoded from (routes, times, service, clock offset): the
    # same again is the same value but its computed time, which is kept as written.
    made: dict[str, tuple[object, ...]] = field(default_factory=dict)


# What one site's table was made from beside the sticky sites: the instant's minute (or
# the instant), the boundaries, the unhealthy trunks, each site's hold-off verdict and
# inputs (engine.site_inputs).
_Inputs = tuple[object, ...]


@dataclass(slots=True)
class _Row:
    """One row of a site's last table: the (service, language) pairs whose sticky site
    its decisions read (engine.reads_sticky; none for most), and its entry for each
    sticky site seen since the table's inputs last changed."""

    pairs: tuple[tuple[str, str], ...]
    by_sticky: dict[tuple[str | None, ...], HeldEntry]


@dataclass(slots=True)
class _Table:
    """A site's last table and what it was made from: a pass whose inputs are the same
    takes each row from it (the state moves on every AMI event, but under traffic what
    the decisions read of it rarely does; the sticky sites move with every call)."""

    inputs: _Inputs
    rows: list[_Row]


def _sticky_pairs(entry: HeldEntry) -> tuple[tuple[str, str], ...]:
    """The sticky sites ``entry``'s decisions read (engine.reads_sticky)."""
    assert entry.decisions is not None
    return tuple({(d.service or "", d.language or "") for d in entry.decisions if reads_sticky(d)})


class HeldMetrics:
    """Held-route counters, labelled by configured names only."""

    def __init__(self, registry: CollectorRegistry, sites: tuple[str, ...]) -> None:
        self.used = Counter(
            "ccbridge_held_route_used_total",
            "Calls the dialplan routed from a held route after the bridge did not answer"
            " (source fallback; calls routed from a fresh held route are not reported one by"
            " one: that event would cost Asterisk as much as the held path adds)",
            ["site", "source"],
            registry=registry,
        )
        self.rejected = Counter(
            "ccbridge_held_route_rejected_total",
            "Held values the dialplan refused (invalid: not one the bridge writes; expired:"
            " past its validity): the call took the bridge or the static fallback",
            ["site", "reason"],
            registry=registry,
        )
        self.writes = Counter(
            "ccbridge_held_route_writes_total",
            "Held-route globals written (Setvar) in the dialplan, heartbeats apart",
            ["site"],
            registry=registry,
        )
        self.write_errors = Counter(
            "ccbridge_held_route_write_errors_total",
            "Held-route passes that failed to write (the heartbeat then stays old)",
            ["site"],
            registry=registry,
        )
        for s in sites:
            for src in SOURCES:
                self.used.labels(s, src)
            for r in REJECT_REASONS:
                self.rejected.labels(s, r)
            self.writes.labels(s)
            self.write_errors.labels(s)


class HeldRoutePublisher:
    """Writes every site's held table over its AMI link; see the module docstring."""

    def __init__(
        self,
        config: Config,
        router: Router,
        state: Callable[[], LiveState],
        clock: Clock,
        links: Mapping[str, SiteLink],
        registry: CollectorRegistry,
        on_held_call: Callable[[CallRequest, Decision], None] | None = None,
    ) -> None:
        self.config = config
        self.settings = config.routing.held_routes
        self.router = router
        self.boundaries = Boundaries(config)
        self._state = state
        self.clock = clock
        self.links = links
        self._sites = {s.name: s for s in config.sites}
        # The fresh path's extensions, and the route ids each site's ccb-queue has (a held
        # queue route not among them goes through ccb-held, whose `i` catches it).
        fresh = self.settings.use_without_bridge
        self._variants: dict[str, list[InboundVariant]] = {
            s.name: inbound_variants(config, s) if fresh else [] for s in config.sites
        }
        self._queues = {
            s.name: {r.id for r in routes_at(config, s) if r.route.kind == v.ROUTE_QUEUE}
            for s in config.sites
        }
        self.metrics = HeldMetrics(registry, tuple(self._sites))
        self._on_held_call = on_held_call
        self._dirty = {name: asyncio.Event() for name in self._sites}
        # Each site's slots are min_interval apart, the sites' spread evenly over it.
        period, count = self.settings.min_interval, len(self._sites)
        self._phases = {name: i * period / count for i, name in enumerate(self._sites)}
        # The sites whose event is clear: the live state changes on most AMI events, and
        # while every event is already set (passes slower than events) a change then
        # costs one truth test instead of a set() per site.
        self._clean = set(self._sites)
        self._written: dict[str, _Written | None] = dict.fromkeys(self._sites)
        # One site's table is computed at a time, a slice a loop turn (COMPUTE_SLICE).
        self._gate = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.passes: dict[str, int] = dict.fromkeys(self._sites, 0)  # complete passes per site
        self._keys = {s.name: table_keys(config, s) for s in config.sites}
        self._tables: dict[str, _Table] = {}
        # Each site's inputs (engine.site_inputs), with the SiteState they were read from:
        # a state keeps the SiteState of every site no event touched, and an equal
        # reading keeps the old object, so most comparisons are identities.
        self._site_inputs: dict[str, tuple[SiteState | None, object]] = {}
        self.decided = 0  # table rows computed (decided), not reused

    # -- inputs ---------------------------------------------------------------------
    def state_changed(self) -> None:
        """The live state moved: every site's table may have (coalesced by the tasks)."""
        if self._clean:
            for name in self._clean:
                self._dirty[name].set()
            self._clean.clear()

    def link_changed(self, site: str) -> None:
        """The site's AMI link went down or up: its globals are unknown until rewritten."""
        if site in self._written:
            self._written[site] = None
            self._dirty[site].set()

    def on_event(self, site: str, event: Mapping[str, str]) -> None:
        """The dialplan's UserEvents about held routes."""
        if event.get("Event") != "UserEvent" or site not in self._sites:
            return
        name = event.get("UserEvent")
        if name == v.EVENT_HELD_ROUTE:
            source = event.get("Source", "")
            self.metrics.used.labels(site, source if source in SOURCES else OTHER).inc()
            self._remember(site, event)
        elif name == v.EVENT_HELD_REJECTED:
            reason = event.get("Reason", "")
            self.metrics.rejected.labels(site, reason if reason in REJECT_REASONS else OTHER).inc()
            log.warning(
                "held route refused by the dialplan",
                extra=ctx(site=site, did=event.get("Did", "")[:24], reason=reason[:24]),
            )
            # Rewrite that key on the next pass: a hand edit is undone within a second. The
            # fresh path does not know the language it read: every key of the number then.
            written = self._written.get(site)
            did, lang = event.get("Did", ""), event.get("Lang", "")
            keys = [self._key(event)] if lang else self._keys_of(written, did)
            if written is not None and any([written.values.pop(k, None) for k in keys]):
                self._dirty[site].set()

    @staticmethod
    def _key(event: Mapping[str, str]) -> str:
        """The key an event names: an IVR caller's is the one of the service picked."""
        did, lang, picked = event.get("Did", ""), event.get("Lang", ""), event.get("IvrService", "")
        return held_service_key(did, picked, lang) if picked else held_key(did, lang)

    @staticmethod
    def _keys_of(written: _Written | None, did: str) -> list[str]:
        prefix = held_key(did, "")
        return [k for k in written.values if k.startswith(prefix)] if written else []

    def _remember(self, site: str, event: Mapping[str, str]) -> None:
        """A held route took a call: the engine's memory (sticky site) and the decision
        metrics learn of it as if the bridge had decided it (only for keys this bridge
        wrote: the event's text never becomes a label)."""
        written = self._written.get(site)
        if written is None or self._on_held_call is None:
            return
        did = event.get("Did", "")
        found = written.decisions.get(self._key(event))
        if found is not None:
            until, now, after = found
            call = CallRequest(did, "", site, service=event.get("IvrService") or None)
            self._on_held_call(call, now if self.clock.time() < until else after)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if not self.settings.enabled:
            return
        self._stopping = False
        self._gate = asyncio.Lock()  # of this loop
        for name in self._sites:
            self._tasks.append(asyncio.create_task(self._run(name), name=f"held-{name}"))

    async def stop(self) -> None:
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            # Python 3.11's wait_for can swallow a cancellation that races with its inner
            # future (see SiteLink.stop): cancel until the task has really ended.
            while not t.done():
                t.cancel()
                await asyncio.wait({t}, timeout=0.5)

    async def _run(self, name: str) -> None:
        site = self._sites[name]
        dirty = self._dirty[name]
        s = self.settings
        phase = self._phases[name]
        slot: float | None = None  # the slot the last sleep ended at (monotonic)
        while not self._stopping:
            if not dirty.is_set():  # under traffic it is by now: no wait_for task then
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(dirty.wait(), s.refresh)
            dirty.clear()
            self._clean.add(name)
            link = self.links.get(name)
            if link is None or not link.ready:
                continue
            started = time.monotonic()
            try:
                await self.publish(site, link)
            except (AmiError, TimeoutError) as exc:
                self.metrics.write_errors.labels(name).inc()
                self._written[name] = None  # unknown: clear and rewrite all next time
                log.warning("held routes not written: %s", exc, extra=ctx(site=name))
            except Exception:
                self.metrics.write_errors.labels(name).inc()
                log.exception("held routes pass failed", extra=ctx(site=name))
            # Coalesce bursts of state changes: one pass a slot, min_interval apart.
            slot = next_slot(started, slot, s.min_interval, phase)
            await asyncio.sleep(max(0.0, slot - time.monotonic()))

    # -- one pass ----------------------------------------------------------------------
    async def table(self, site: Site) -> list[HeldEntry]:
        """The site's table now, computed in slices of ``COMPUTE_SLICE`` seconds so the
        event loop keeps running, one site at a time so the slices of sites woken
        together do not add up in one loop turn. A row whose inputs are those of the
        site's last table is that table's row (``_Table``)."""
        out: list[HeldEntry] = []
        async with self._gate:
            # The state as of when this site's turn came: the wait may have been a while.
            state = self._state()
            now = self.clock.now()
            until = self.boundaries.next(state, now)
            next_until = self.boundaries.next(state, until)
            inputs = self._inputs(state, now, until, next_until)
            last = self._tables.get(site.name)
            if last is None or last.inputs != inputs:
                last = _Table(inputs, [])
                self._tables[site.name] = last
            rows = last.rows
            sticky = state.sticky
            deadline = time.perf_counter() + COMPUTE_SLICE
            for i, key in enumerate(self._keys[site.name]):
                row = rows[i] if i < len(rows) else None
                seen: tuple[str | None, ...] = ()
                if row is not None:
                    seen = tuple(sticky.get(p) for p in row.pairs) if row.pairs else ()
                    hit = row.by_sticky.get(seen)
                    if hit is not None:
                        out.append(hit)
                        continue
                entry = held_entry(self.router, site, key, state, now, until, next_until)
                self.decided += 1
                out.append(entry)
                pairs = _sticky_pairs(entry)
                if row is None or row.pairs != pairs:
                    # Which pairs a row reads depends on the inputs alone: a row is new
                    # here, or made again (never met, kept for safety).
                    row = _Row(pairs, {})
                    if i < len(rows):
                        rows[i] = row
                    else:
                        rows.append(row)
                row.by_sticky[tuple(sticky.get(p) for p in pairs)] = entry
                if time.perf_counter() >= deadline:
                    await asyncio.sleep(0)
                    deadline = time.perf_counter() + COMPUTE_SLICE
            return out

    def _inputs(self, state: LiveState, now: datetime, until: datetime, after: datetime) -> _Inputs:
        """What every decision of a table reads but the sticky sites (engine.site_inputs):
        equal inputs, equal decisions."""
        ts = now.timestamp()
        # Schedules on whole minutes: the instant matters through its minute alone.
        instant: object = int(ts // 60) if self.router.minute_resolution else ts
        holdoff = self.config.routing.site_holdoff
        sites = state.sites
        seen = self._site_inputs
        verdicts = []
        views = []
        for name in self._sites:
            s = sites.get(name)
            verdicts.append(site_unusable(s, ts, holdoff))
            hit = seen.get(name)
            if hit is not None and hit[0] is s:
                views.append(hit[1])
                continue
            view = site_inputs(s)
            if hit is not None and hit[1] == view:
                view = hit[1]  # the old object: the next comparison is an identity
            seen[name] = (s, view)
            views.append(view)
        return (instant, until, after, state.unhealthy_trunks, tuple(verdicts), tuple(views))

    async def publish(self, site: Site, link: SiteLink) -> int:
        """Write what changed, the heartbeat and the fresh deadline; returns the keys written."""
        name = site.name
        entries = await self.table(site)
        now = self.clock.time()
        offset = self.clock.offset  # a shifted test clock: the PBX compares with its EPOCH
        beat = str(int(now - offset))
        written = self._written[name]
        if written is not None and beat != written.heartbeat:
            # A reload or restart emptied the globals: everything is written again. Read
            # back once a second, with the heartbeat (the passes of the same second write
            # the same heartbeat and deadline): a site's passes run 4 a second under
            # traffic, and three AMI round trips each were a third of their cost
            # (BENCHMARKS §12).
            reply = await link.action("Getvar", {"Variable": v.HELD_HEARTBEAT}, as_list=False)
            if reply.get("Value", "") != written.heartbeat:
                log.info("held routes gone from the dialplan: rewriting", extra=ctx(site=name))
                written = None
        if written is None:
            written = _Written({}, {})
        values: dict[str, str] = {}
        made: dict[str, tuple[object, ...]] = {}
        writes: list[tuple[str, ActionFields]] = []
        for i, e in enumerate(entries, 1):
            if i % SLICE == 0:
                await asyncio.sleep(0)
            old = written.values.get(e.key)
            inputs = (e.now, e.next, e.until, e.next_until, e.service, offset)
            made[e.key] = inputs
            if old is not None and written.made.get(e.key) == inputs:
                # Made from the same: encoding it again and comparing the two strings
                # was a seventh of a pass (BENCHMARKS §12, ninth session).
                values[e.key] = old
                continue
            value = encode_entry(e, now, offset)
            if old is not None and same_routes(old, value):
                value = old  # unchanged: keep the time it was first computed
            else:
                writes.append(_setvar(e.key, value))
            values[e.key] = value
        # A key no longer in the table: an empty value routes nothing.
        writes += [_setvar(k, "") for k in written.values if k not in values]
        count = len(writes)
        routes = await self._route_writes(site, written, entries, writes)
        # The fresh path checks no route's own validity: the deadline never passes the
        # first instant any route of the table changes with time (the PBX's whole second
        # before it), and the next pass writes the routes after it, then a new deadline.
        fresh = int(beat) + int(self.settings.fresh_age)
        if entries:
            fresh = min(fresh, int(min(e.until for e in entries) - offset))
        if beat != written.heartbeat:
            writes.append(_setvar(v.HELD_HEARTBEAT, beat))
        if str(fresh) != written.fresh:
            writes.append(_setvar(v.HELD_FRESH_UNTIL, str(fresh)))
        # In the order above (routes, then heartbeat and deadline), a batch a write:
        # Asterisk runs them in that order.
        for at in range(0, len(writes), BATCH):
            await link.plain_actions(writes[at : at + BATCH])
        # All written: what the globals hold now (a failed batch raised, and the pass's
        # caller forgets the site's globals: the next pass writes them all).
        written.values = values
        written.made = made
        written.decisions = {e.key: (e.until, *e.decisions) for e in entries if e.decisions}
        if routes is not None:
            written.steps.update(routes[0])
            written.steps_from = routes[1]
        written.heartbeat = beat
        written.fresh = str(fresh)
        self._written[name] = written
        if count:
            self.metrics.writes.labels(name).inc(count)
            log.info("held routes written", extra=ctx(site=name, keys=count))
        if routes is not None and routes[0]:
            log.info(
                "held routes written into ccb-inbound", extra=ctx(site=name, keys=len(routes[0]))
            )
        self.passes[name] += 1
        return count

    async def _route_writes(
        self,
        site: Site,
        written: _Written,
        entries: list[HeldEntry],
        writes: list[tuple[str, ActionFields]],
    ) -> (
        tuple[dict[str, tuple[tuple[str, str], ...]], tuple[tuple[str, HeldRoute, str], ...]] | None
    ):
        """The fresh path: each ccb-inbound extension's route steps whose route changed
        (all of them after a reload), as actions appended to ``writes``; returns the steps
        of each extension written and what they were made from, to keep once written, or
        None when the routes are the ones last written."""
        by_key = {e.key: e for e in entries if not e.ivr_service}
        # The steps depend only on each key's route and service: a pass whose routes are
        # the ones last written (most passes: the state moves, the routes rarely) has
        # nothing to compare extension by extension (BENCHMARKS §12, ninth session).
        made_from = tuple((k, e.now, e.service) for k, e in by_key.items())
        if made_from == written.steps_from:
            return None
        queues = self._queues[site.name]
        changed: dict[str, tuple[tuple[str, str], ...]] = {}
        for i, var in enumerate(self._variants[site.name], 1):
            if i % SLICE == 0:
                await asyncio.sleep(0)
            e = by_key.get(held_key(var.did, var.language))
            if e is None:
                steps: tuple[tuple[str, str], ...] = (ASK_BRIDGE,)
            else:
                rid = route_id(e.now, e.service)
                steps = fresh_steps(e.now, rid, rid in queues)
            old = written.steps.get(var.extension)
            if old == steps:
                continue
            # The call ID's step too, the first time (the extension may be missing from
            # the rendered dialplan: a route step alone would end the call there).
            first = () if old is not None else (call_id_step(site.name),)
            for n, (app, data) in enumerate((*first, *steps), v.HELD_ROUTE_PRIORITY - len(first)):
                k = n - v.HELD_ROUTE_PRIORITY
                if old is not None and k < len(old) and old[k] == (app, data):
                    # That priority holds it already: a route moved to another site
                    # changes its last step alone (ccb-held's id), one action of three.
                    # Under calls the sticky sites move with every call, and with them
                    # the routes of rows that read them (BENCHMARKS §12, tenth session).
                    continue
                writes.append(
                    (
                        "DialplanExtensionAdd",
                        {
                            "Context": v.HELD_INBOUND_CONTEXT,
                            "Extension": var.extension,
                            "Priority": str(n),
                            "Application": app,
                            "ApplicationData": data,
                            "Replace": "yes",
                        },
                    )
                )
            changed[var.extension] = steps
        return changed, made_from


def next_slot(started: float, slot: float | None, period: float, phase: float) -> float:
    """When a site's next pass may start (monotonic seconds), after one that started at
    ``started``; ``slot`` is the slot the task slept until before it (None at first).

    A site's passes keep to its slots, ``phase + k * period``: a pass that began within a
    quarter period of its slot is followed at the next slot (under traffic, every pass);
    any other (woken by a change after a quiet spell, or by the refresh timer) at the
    first slot at least a period after it. So passes are at least 3/4 of a period apart
    and one a period under traffic. One state change wakes every site's pass at once:
    paced from their own starts they stayed in step, every site's pass in one burst each
    ``min_interval`` (20 sites: tens of ms of slices in a row, each call arriving then
    delayed by a slice on each of its turns, most of the route latency's tail at 1,000
    calls/s, BENCHMARKS §12); on phases spread over the period, one site's at a time."""
    if slot is not None and started - slot < period / 4:
        return slot + period
    return phase + math.ceil((started + period - phase) / period) * period


def _setvar(name: str, value: str) -> tuple[str, ActionFields]:
    return ("Setvar", {"Variable": name, "Value": value})
