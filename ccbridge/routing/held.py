"""Routes held in the PBX: per number and language, the route now and the one after the next
schedule boundary, computed from config, live state and a time passed in (no I/O).

The bridge writes these into each site's dialplan globals over AMI (ccbridge/heldroutes.py);
the dialplan reads them to route without asking the bridge (dialplans/extensions.conf.j2).
A held entry is what ``Router.decide`` answers for that number and language at ``now``,
and at ``until`` (the next instant a decision can change with time alone: a service
opening or closing at any site, a holiday or special date starting, a recovered site's
hold-off ending) with the same live state, so a PBX whose bridge is gone across a site's
closing time still switches at the right second.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ccbridge import variables as v
from ccbridge.config.ivr import DestKind
from ccbridge.config.model import Config, Number, Schedule, Site, queue_name
from ccbridge.routing.engine import AFTER_HOURS, QUEUE, CallRequest, Decision, Router
from ccbridge.routing.language import LanguageResolver
from ccbridge.routing.schedule import is_open
from ccbridge.routing.state import LiveState

__all__ = [
    "ASK_BRIDGE",
    "HORIZON",
    "Boundaries",
    "HeldEntry",
    "HeldRoute",
    "InboundVariant",
    "RouteView",
    "accepts",
    "call_id_step",
    "caller_patterns",
    "decode",
    "encode",
    "fresh_steps",
    "held_entries",
    "held_entry",
    "held_key",
    "held_service_key",
    "inbound_variants",
    "languages_for",
    "menu_services",
    "parse_route_id",
    "route_id",
    "route_of",
    "routes_at",
    "table_keys",
    "valid_routes",
]

HORIZON = timedelta(days=1)  # no boundary within this: the route holds this long at most
_SCAN_DAYS = 8  # a weekly schedule repeats: 8 days of candidates always find its next change
_MIDNIGHT = time(0)


@dataclass(frozen=True, slots=True)
class HeldRoute:
    """One route as the dialplan dispatches it (the CCB_ROUTE kinds of ccbridge.variables)."""

    kind: str
    site: str = ""
    queue: str = ""
    action: str = ""  # after_hours: voicemail | callback | closed
    trunks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """The route for (did, language) received at a site: ``now`` until ``until``, then
    ``next`` until ``next_until`` (POSIX seconds on the bridge's clock)."""

    did: str
    language: str
    service: str
    now: HeldRoute
    next: HeldRoute
    until: float
    next_until: float
    # The engine's decisions behind ``now`` and ``next`` (what the bridge remembers when
    # the dialplan reports a call routed from this entry); not part of the value.
    decisions: tuple[Decision, Decision] | None = field(default=None, compare=False, repr=False)
    # An IVR caller's route for the service picked in the menu (keyed by it), or "": the
    # route of a caller no menu asked (keyed by the number and language only).
    ivr_service: str = ""

    @property
    def key(self) -> str:
        if self.ivr_service:
            return held_service_key(self.did, self.ivr_service, self.language)
        return held_key(self.did, self.language)


def held_key(did: str, language: str) -> str:
    """The global (a dialplan variable with no channel) of a number's route in a language."""
    return f"{v.HELD_GLOBAL_PREFIX}{did}_{language}"


def held_service_key(did: str, service: str, language: str) -> str:
    """The global of the route of an IVR caller of ``did`` who picked ``service`` in
    ``language``. The number stays in the key: the engine's decision depends on it (its
    home site, its country's fallback language), not on the service alone."""
    return f"{v.HELD_SERVICE_PREFIX}{did}_{service}_{language}"


def route_of(decision: Decision, receiving_site: str) -> HeldRoute:
    """The dialplan route for a decision taken for a call received at ``receiving_site``."""
    takes_call = decision.site is not None and decision.queue is not None
    if decision.outcome in (QUEUE, AFTER_HOURS) and takes_call:
        assert decision.site is not None and decision.queue is not None
        if decision.site == receiving_site:
            return HeldRoute(v.ROUTE_QUEUE, decision.site, decision.queue)
        return HeldRoute(v.ROUTE_REMOTE, decision.site, decision.queue, trunks=decision.trunks)
    if decision.outcome == AFTER_HOURS:
        return HeldRoute(v.ROUTE_AFTER_HOURS, action=decision.action or "closed")
    return HeldRoute(v.ROUTE_REJECT)


# --- schedule boundaries --------------------------------------------------------------


def _times(schedule: Schedule) -> frozenset[time]:
    out = {_MIDNIGHT}
    for rule in schedule.weekly:
        out.update((rule.hours.start, rule.hours.end))
    for _, ranges in schedule.special_hours:
        for r in ranges:
            out.update((r.start, r.end))
    return frozenset(out)


def _candidates(schedule: Schedule, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Instants after ``after`` where the schedule may change, in order.

    Open state changes only where a shift starts or ends, or at local midnight (a
    holiday, closed date or special-hours date begins). In a DST gap the wall time does
    not exist and the candidate lands up to the gap's length late; the bridge recomputes
    on its timer while it lives.
    """
    times = sorted(_times(schedule))
    today = after.astimezone(zone).date()
    for n in range(_SCAN_DAYS + 1):
        day: date = today + timedelta(days=n)
        for t in times:
            at = datetime.combine(day, t, zone).astimezone(UTC)
            if at > after:
                yield at


def next_change(schedule: Schedule, tz: str, after: datetime) -> datetime | None:
    """The first instant after ``after`` at which the schedule opens or closes, or None
    when it does not within the scanned week."""
    zone = ZoneInfo(tz)
    was = is_open(schedule, tz, after).open
    for at in _candidates(schedule, zone, after):
        if is_open(schedule, tz, at).open != was:
            return at
    return None


class Boundaries:
    """Next-change instants of every (site, service) schedule, memoised until passed.

    A memo ``(since, change)`` answers every instant in ``[since, change)``: the
    schedule's open state does not change in between. Each offer keeps its last two (a
    pass asks for ``now`` and then for ``until``, the first change: one slot would be
    recomputed on every call), and so does the earliest change over all offers, which
    holds on ``[latest since, earliest change)``: a pass then costs O(1) instead of one
    look-up per (site, service), 150 with 50 sites (BENCHMARKS §12)."""

    def __init__(self, config: Config) -> None:
        self._offers = [
            (site.name, o.service, site.timezone, o.schedule)
            for site in config.sites
            for o in site.offerings
        ]
        self._holdoff = config.routing.site_holdoff
        self._memo: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = {}
        self._earliest: list[tuple[datetime, datetime | None]] = []

    @staticmethod
    def _hit(
        memo: list[tuple[datetime, datetime | None]], after: datetime
    ) -> tuple[bool, datetime | None]:
        for since, change in memo:
            if since <= after and (change is None or after < change):
                return True, change
        return False, None

    @staticmethod
    def _keep(
        memo: list[tuple[datetime, datetime | None]], item: tuple[datetime, datetime | None]
    ) -> None:
        memo.append(item)
        del memo[:-2]

    def _offer_change(
        self, key: tuple[str, str], tz: str, s: Schedule, after: datetime
    ) -> tuple[datetime, datetime | None]:
        """``(since, change)`` of the memo that answers ``after`` (made now if none)."""
        memo = self._memo.setdefault(key, [])
        for since, change in memo:
            if since <= after and (change is None or after < change):
                return since, change
        item = (after, next_change(s, tz, after))
        self._keep(memo, item)
        return item

    def _schedules_change(self, after: datetime) -> datetime | None:
        """The first instant after ``after`` at which any offer opens or closes."""
        hit, change = self._hit(self._earliest, after)
        if hit:
            return change
        latest, earliest = after, None
        for n, (site, service, tz, schedule) in enumerate(self._offers):
            since, found = self._offer_change((site, service), tz, schedule, after)
            latest = since if n == 0 else max(latest, since)
            if found is not None and (earliest is None or found < earliest):
                earliest = found
        # Every offer's memo holds from its own since on: all of them from the latest.
        self._keep(self._earliest, (latest, earliest))
        return earliest

    def next(self, state: LiveState, after: datetime) -> datetime:
        """The first instant after ``after`` at which any decision may change with time."""
        change = self._schedules_change(after)
        best = after + HORIZON if change is None else min(change, after + HORIZON)
        ts = after.timestamp()
        for s in state.sites.values():
            if s.up and s.up_since is not None and ts < s.up_since + self._holdoff:
                best = min(best, datetime.fromtimestamp(s.up_since + self._holdoff, UTC))
        return best


# --- the table --------------------------------------------------------------------------


def languages_for(config: Config, number: Number) -> tuple[str, ...]:
    """Every language a call to ``number`` can resolve to: an IVR choice, a caller's
    country (only configured languages decide), the number's country or the first one."""
    langs = set(config.languages)
    reachable = {c.default_language for c in config.countries if c.default_language in langs}
    if number.menu is not None:
        for menu in config.ivr.menus:
            for dest in (*(d for _, d in menu.options), menu.final):
                if dest.language in langs:
                    reachable.add(dest.language)
    country = config.country(number.country)
    if country is not None:
        reachable.add(country.default_language)
    elif config.languages:
        reachable.add(config.languages[0])
    return tuple(lang for lang in config.languages if lang in reachable)


def menu_services(config: Config, number: Number) -> tuple[str, ...]:
    """Every service an IVR caller of ``number`` can route with: its own (the menu's
    operator, or a lookup's way back) and every service a menu option or final names.
    A self-service lookup's per-call decision is its own FastAGI step (ivr.conf.j2), not
    a route: the route after it is one of these."""
    if number.menu is None:
        return ()
    picked = {number.service}
    dests = [d for m in config.ivr.menus for d in (*(d for _, d in m.options), m.final)]
    dests += [d for x in config.ivr.lookups for d in (x.then, x.on_failure)]
    for dest in dests:
        if dest.kind == DestKind.SERVICE and dest.target in config.services:
            picked.add(str(dest.target))
    return tuple(s for s in config.services if s in picked)


def table_keys(config: Config, site: Site) -> list[tuple[Number, str, str | None]]:
    """The held table's rows at ``site``: (number, language, service picked in its menu
    or None), in ``held_entries``' order; they depend on the config alone."""
    keys: list[tuple[Number, str, str | None]] = []
    for number in config.numbers:
        if number.site != site.name:
            continue
        for lang in languages_for(config, number):
            keys.append((number, lang, None))
            keys += [(number, lang, svc) for svc in menu_services(config, number)]
    return keys


def held_entry(
    router: Router,
    site: Site,
    key: tuple[Number, str, str | None],
    state: LiveState,
    now: datetime,
    until: datetime,
    next_until: datetime,
) -> HeldEntry:
    """One row of the held table (``table_keys``): the decisions at ``now`` and at
    ``until``, the next boundary (``Boundaries.next``), valid until ``next_until``."""
    number, lang, svc = key
    # The language as an IVR choice: the engine then uses exactly that language, which
    # is what a caller whose prefix resolves to it would get.
    call = CallRequest(number.did, "", site.name, ivr_language=lang, service=svc)
    d_now = router.decide(call, state, now)
    d_next = router.decide(call, state, until)
    return HeldEntry(
        number.did,
        lang,
        d_now.service or svc or number.service,
        route_of(d_now, site.name),
        route_of(d_next, site.name),
        until.timestamp(),
        next_until.timestamp(),
        (d_now, d_next),
        ivr_service=svc or "",
    )


def held_entries(
    router: Router,
    boundaries: Boundaries,
    site: Site,
    state: LiveState,
    now: datetime,
) -> Iterator[HeldEntry]:
    """The held table of ``site``: every number it receives x every reachable language,
    and for a number with a menu also x every service its callers can pick."""
    until = boundaries.next(state, now)
    next_until = boundaries.next(state, until)
    for key in table_keys(router.config, site):
        yield held_entry(router, site, key, state, now, until, next_until)


# --- the value the dialplan reads --------------------------------------------------------
# A global per number and language, CCB_H_<did>_<lang> (set over AMI, no channel):
# ROUTE_ID/NEXT_ROUTE_ID/until/next_until/service/computed. A route id names an extension
# of the rendered ccb-held context (routes_at), so the dialplan checks a value by trying
# to go there: an id the site does not know lands on the context's `i` extension. Ids are
# names joined by '.', and names are [a-z0-9_-] (config/loader.py), so neither '.' nor
# '/' can occur inside a field. Times are the PBX's wall clock (${EPOCH}).


def _ceil(x: float) -> int:
    i = int(x)
    return i if i >= x else i + 1


def route_id(r: HeldRoute, service: str) -> str:
    """The ccb-held extension of a route. A queue here is its name: ccb-held includes
    ccb-queue, so the dialplan goes straight to the queue's own steps. After hours carries
    the service (its voicemail box and callback need it)."""
    sep = v.HELD_ID_SEP
    if r.kind == v.ROUTE_QUEUE:
        return r.queue
    if r.kind == v.ROUTE_REMOTE:
        return sep.join((r.kind, r.site, r.queue, *r.trunks))
    if r.kind == v.ROUTE_AFTER_HOURS:
        return sep.join((r.kind, r.action, service))
    return v.ROUTE_REJECT


def parse_route_id(text: str, site: str) -> tuple[HeldRoute, str]:
    """(route, service or "") from a route id at ``site``; ValueError when it is not one."""
    parts = text.split(v.HELD_ID_SEP)
    kind = parts[0]
    if len(parts) == 1 and text not in ("", v.ROUTE_REJECT):
        return HeldRoute(v.ROUTE_QUEUE, site, text), ""
    if kind == v.ROUTE_REMOTE and len(parts) >= 4:
        return HeldRoute(kind, parts[1], parts[2], trunks=tuple(parts[3:])), ""
    if kind == v.ROUTE_AFTER_HOURS and len(parts) == 3:
        return HeldRoute(kind, action=parts[1]), parts[2]
    if text == v.ROUTE_REJECT:
        return HeldRoute(kind), ""
    raise ValueError(f"not a held route id: {text!r}")


def encode(entry: HeldEntry, computed: float, wall_offset: float = 0.0) -> str:
    """The global's value. ``wall_offset`` is the bridge clock minus the PBX's wall clock
    (a shifted test clock): times are written as the PBX will compare them with ${EPOCH}.
    ``until`` is rounded up: a route switches at most a second late, never early."""
    return v.HELD_SEP.join(
        (
            route_id(entry.now, entry.service),
            route_id(entry.next, entry.service),
            str(_ceil(entry.until - wall_offset)),
            str(_ceil(entry.next_until - wall_offset)),
            entry.service,
            str(int(computed - wall_offset)),
        )
    )


def same_routes(a: str, b: str) -> bool:
    """Two values that differ only in their computed time (the last field)."""
    pa, pb = a.split(v.HELD_SEP), b.split(v.HELD_SEP)
    return len(pa) == len(pb) and pa[:-1] == pb[:-1]


@dataclass(frozen=True, slots=True)
class Decoded:
    computed: int
    until: int
    next_until: int
    service: str
    now: HeldRoute
    next: HeldRoute


def decode(text: str, site: str) -> Decoded:
    """Parse a value held at ``site``; ValueError when it is not one this format writes."""
    parts = text.split(v.HELD_SEP)
    if len(parts) != 6 or not all(p.isdigit() for p in (parts[2], parts[3], parts[5])):
        raise ValueError(f"not a held route value: {text!r}")
    now, _ = parse_route_id(parts[0], site)
    after, _ = parse_route_id(parts[1], site)
    return Decoded(int(parts[5]), int(parts[2]), int(parts[3]), parts[4], now, after)


@dataclass(frozen=True, slots=True)
class RouteView:
    """One extension of ccb-held: a route this site may be told to take, with what its
    dispatch needs (the queue's service and language go along to a remote site)."""

    id: str
    route: HeldRoute
    service: str = ""
    language: str = ""


def routes_at(config: Config, site: Site) -> list[RouteView]:
    """Every route a held value may name at ``site``: its own queues, a peer's queues over
    any order-keeping non-empty subset of the trunks to it (the engine drops unhealthy
    trunks), an after-hours action for a service, or reject. The dialplan has exactly
    these as extensions of ccb-held, so a value naming anything else is refused by the
    extension lookup Asterisk does anyway."""
    out = [
        RouteView(route_id(r := HeldRoute(v.ROUTE_QUEUE, site.name, q), svc), r, svc, lang)
        for q, svc, lang in _site_queues(site)
    ]
    for peer in config.sites:
        trunks = tuple(t.name for t in config.trunks_between(site.name, peer.name))
        if peer.name == site.name or not trunks:
            continue
        subsets = [
            tuple(t for i, t in enumerate(trunks) if mask >> i & 1)
            for mask in range(1, 2 ** min(len(trunks), _MAX_TRUNK_SUBSETS_OF))
        ]
        for q, svc, lang in _site_queues(peer):
            for ts in subsets:
                r = HeldRoute(v.ROUTE_REMOTE, peer.name, q, trunks=ts)
                out.append(RouteView(route_id(r, svc), r, svc, lang))
    for svc in config.services:
        for a in ("voicemail", "callback", "closed"):
            r = HeldRoute(v.ROUTE_AFTER_HOURS, action=a)
            out.append(RouteView(route_id(r, svc), r, svc))
    out.append(RouteView(v.ROUTE_REJECT, HeldRoute(v.ROUTE_REJECT)))
    return out


def valid_routes(config: Config, site: Site) -> list[HeldRoute]:
    """The routes of :func:`routes_at` (an after-hours action once, whatever its service)."""
    return list(dict.fromkeys(r.route for r in routes_at(config, site)))


_MAX_TRUNK_SUBSETS_OF = 6  # 63 orders per peer queue at most: more trunks per peer is rare


def _site_queues(site: Site) -> list[tuple[str, str, str]]:
    """(queue, service, language) of every queue at ``site``."""
    return [
        (queue_name(o.service, lang), o.service, lang)
        for o in site.offerings
        for lang in o.languages
    ]


def accepts(config: Config, site: Site, text: str) -> bool:
    """What the dialplan checks before it uses a value (its copy of this rule is the
    extension lookup in ccb-held plus the time checks): six fields, numeric times, a
    configured service and two route ids this site has."""
    parts = text.split(v.HELD_SEP)
    if len(parts) != 6 or not all(p.isdigit() for p in (parts[2], parts[3], parts[5])):
        return False
    known = {r.id for r in routes_at(config, site)}
    return parts[4] in config.services and parts[0] in known and parts[1] in known


# --- the fresh path: the route itself in ccb-inbound ------------------------------------
# While the bridge is alive a call to a number without a menu takes its held route from
# the number's own ccb-inbound extension: the bridge replaces its second priority (the
# rendered one asks the bridge) with one GotoIf holding the route (AMI DialplanExtensionAdd
# with Replace). The dialplan then reads nothing hand-writable but the fresh deadline, a
# single global compared inside $[...] (a garbage deadline cannot reach the Goto's
# arguments; it can only make the call ask the bridge, or take the route the bridge
# wrote). The deadline is capped at the earliest ``until`` of the table, so a route
# written here is never taken past its own validity: no per-route time check.
# BENCHMARKS.md §1e: this is what brings the production dialplan within 0.97 of static.


@dataclass(frozen=True, slots=True)
class InboundVariant:
    """One ccb-inbound extension of a number without a menu: the number, the caller-ID
    pattern that picks its language ("" for callers no pattern decides), the language."""

    did: str
    callers: str
    language: str

    @property
    def extension(self) -> str:
        """The extension as the dialplan and AMI name it (``+918000000001/_+880.``)."""
        return self.did + self.callers


def caller_patterns(config: Config) -> tuple[tuple[str, str], ...]:
    """(caller-ID pattern, language) for every calling code that decides a language
    (the dialplan's copy of routing.language), the longest code first. A code decides
    only with a subscriber part after it: `.` is one or more characters."""
    resolver = LanguageResolver.from_config(config)
    codes = sorted(resolver.calling_codes().items(), key=lambda c: (-len(c[0]), c[0]))
    return tuple((f"/_{p}{code}.", lang) for code, lang in codes for p in ("+", "00"))


def inbound_variants(config: Config, site: Site) -> list[InboundVariant]:
    """Every ccb-inbound extension at ``site`` whose route priority the bridge writes."""
    resolver = LanguageResolver.from_config(config)
    patterns = caller_patterns(config)
    return [
        InboundVariant(n.did, cid, lang)
        for n in config.numbers
        if n.site == site.name and n.menu is None
        for cid, lang in (*patterns, ("", resolver.did_language(n)))
    ]


ASK_BRIDGE = ("Goto", "ccb-route,${EXTEN},1")  # the rendered route priority: ask the bridge


def call_id_step(site: str) -> tuple[str, str]:
    """The first priority of every ccb-inbound extension: the call ID (as rendered). The
    bridge writes it too, so an extension the rendered dialplan lacks (rendered from an
    older config, or without use_without_bridge) is whole, never a route step alone."""
    return ("Set", f"__{v.CALLID}={v.new_callid(site)}")


def fresh_steps(route: HeldRoute, rid: str, direct: bool) -> tuple[tuple[str, str], ...]:
    """(application, data) of the priorities from HELD_ROUTE_PRIORITY on that take
    ``route`` (id ``rid``) while the deadline holds, else ask the bridge. ``direct``: a
    queue of this site, straight to its ccb-queue steps; any other route goes through
    ccb-held (its `i` catches an id the site lacks) with the number set first (the remote
    step's SIP header, a fallback's or an after-hours callback's number need it; a queue
    call does not: one variable set costs a channel snapshot, BENCHMARKS §1e)."""
    fresh = f"$[${{EPOCH}}<0${{{v.HELD_FRESH_UNTIL}}}]"
    ask = ASK_BRIDGE[1]
    if route.kind == v.ROUTE_QUEUE and direct:
        return (("GotoIf", f"{fresh}?ccb-queue,{rid},1:{ask}"),)
    then = v.HELD_ROUTE_PRIORITY + 1
    return (
        ("GotoIf", f"{fresh}?{then}:{ask}"),
        ("Set", f"__{v.DID}=${{EXTEN}}"),
        ("Goto", f"ccb-held,{rid},1"),
    )
