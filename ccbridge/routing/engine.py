"""The routing decision: which site and queue takes a call, given config, live state and time."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from ccbridge.config.model import AfterHoursAction, Config, Number, Schedule, queue_name
from ccbridge.routing.language import LanguageResolver
from ccbridge.routing.reasons import AFTER_HOURS_REASON, HOME_REASON, Outcome, Reason, Skip
from ccbridge.routing.schedule import OpenState, is_open
from ccbridge.routing.state import LiveState, QueueLoad, SiteState, ewt, set_sticky

__all__ = [
    "AFTER_HOURS",
    "QUEUE",
    "REJECT",
    "CallRequest",
    "Decision",
    "Outcome",
    "Reason",
    "Router",
    "Skip",
    "decide",
    "reads_sticky",
    "remember",
    "site_inputs",
]

QUEUE = Outcome.QUEUE
AFTER_HOURS = Outcome.AFTER_HOURS
REJECT = Outcome.REJECT
# Enum members as module globals for the hot path: a global read is about a quarter of
# the cost of an attribute read on the Enum class (tests/bench/bench_decide.py).
_HOME_SITE_OPEN = Reason.HOME_SITE_OPEN
_HOME_SITE_BUSY = Reason.HOME_SITE_BUSY
_SCHEDULE_ONLY = Reason.SCHEDULE_ONLY
_LEAST_LOADED = Reason.LEAST_LOADED
_OVERFLOW_EWT = Reason.OVERFLOW_EWT
_STICKY = Reason.STICKY
_UNSTAFFED = Skip.UNSTAFFED
_SITE_DOWN = Skip.SITE_DOWN

# Schedule results are memoised per UTC minute. That is exact only when every boundary
# falls on a whole local minute: true for configs with minute-resolution hours (checked
# per Router) and for every zone's offset since 1972 (older offsets had odd seconds).
_MINUTE_CACHE_FROM = 315532800.0  # 1980-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What the dialplan knows about a call when it asks for a route."""

    did: str
    caller: str
    receiving_site: str
    ivr_language: str | None = None
    service: str | None = None  # overrides the DID's service (e.g. an IVR menu choice)
    call_id: str = ""  # the dialplan's CCB_CALLID: for the call record, never for routing
    uniqueid: str = ""  # the caller's channel at the receiving site (the call record's leg)


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a call goes and why.

    ``reasons`` say why the decision is what it is, the home site's own state included;
    sites passed over are in ``skipped`` with their own reason each, never in ``reasons``.
    """

    outcome: Outcome
    site: str | None
    queue: str | None
    service: str | None
    language: str | None
    trunks: tuple[str, ...] = ()
    reasons: tuple[Reason, ...] = ()
    action: str | None = None  # after_hours only: voicemail | callback | closed | site
    ewt: float | None = None  # expected wait at the chosen site when known
    skipped: tuple[tuple[str, Skip], ...] = ()  # (site, why) for sites passed over

    def as_dict(self) -> dict[str, object]:
        return {
            "outcome": str(self.outcome),  # str(): the plain value of the enum
            "site": self.site,
            "queue": self.queue,
            "service": self.service,
            "language": self.language,
            "trunks": list(self.trunks),
            "reasons": [str(r) for r in self.reasons],
            "action": self.action,
            "ewt": self.ewt if self.ewt is not None and math.isfinite(self.ewt) else None,
            "skipped": [{"site": s, "reason": str(r)} for s, r in self.skipped],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)


@dataclass(frozen=True, slots=True)
class _Offer:
    """A site offering a service, flattened for the hot path."""

    site: str
    tz: str
    schedule: Schedule
    languages: tuple[str, ...]
    order: int  # position in config: the tie-break


@dataclass(frozen=True, slots=True)
class _Candidate:
    offer: _Offer
    synced: bool
    ewt: float
    waiting: int
    score: float


def _minute_resolution(config: Config) -> bool:
    for site in config.sites:
        for o in site.offerings:
            ranges = [r.hours for r in o.schedule.weekly]
            ranges += [r for _, rs in o.schedule.special_hours for r in rs]
            for r in ranges:
                for t in (r.start, r.end):
                    if t.second or t.microsecond:
                        return False
    return True


class Router:
    """Routing indexes precomputed from one Config; ``decide`` is pure over its arguments.

    The only internal state is a memo of schedule results per (site, service) and UTC
    minute, which cannot change what ``decide`` returns.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._routing = config.routing
        self._numbers: dict[str, Number] = {n.did: n for n in config.numbers}
        self._services = frozenset(config.services)
        self._sites = frozenset(s.name for s in config.sites)
        self._lang = LanguageResolver.from_config(config)
        self._default_lang = {c.code: c.default_language for c in config.countries}
        serving: dict[tuple[str, str], list[_Offer]] = {}
        self._offers: dict[tuple[str, str], _Offer] = {}
        for i, site in enumerate(config.sites):
            for o in site.offerings:
                offer = _Offer(site.name, site.timezone, o.schedule, o.languages, i)
                self._offers[(site.name, o.service)] = offer
                for lang in o.languages:
                    serving.setdefault((o.service, lang), []).append(offer)
        self._serving = {k: tuple(v) for k, v in serving.items()}
        self._trunks = {
            (a, b): tuple(t.name for t in config.trunks_between(a, b))
            for a in self._sites
            for b in self._sites
            if a != b
        }
        self._minute_ok = _minute_resolution(config)
        # (site, service) -> the two minutes asked last, newest first: a held-route pass
        # asks for now and for the next boundary in turn, and one slot missed every time
        # (schedule look-ups were ~12 % of the bridge's AMI-only CPU, BENCHMARKS §3).
        self._open_memo: dict[tuple[str, str], tuple[int, OpenState, int, OpenState]] = {}

    @property
    def minute_resolution(self) -> bool:
        """True when every schedule changes on whole minutes: a decision then depends on
        its instant only through the minute (schedules) and ``site_unusable`` (hold-off)."""
        return self._minute_ok

    # --- helpers -----------------------------------------------------------------------

    def _is_open(self, offer: _Offer, service: str, now: datetime, ts: float) -> OpenState:
        if not self._minute_ok or ts < _MINUTE_CACHE_FROM:
            return is_open(offer.schedule, offer.tz, now)
        minute = int(ts // 60)
        key = (offer.site, service)
        hit = self._open_memo.get(key)
        if hit is not None:
            if hit[0] == minute:
                return hit[1]
            if hit[2] == minute:
                return hit[3]
        st = is_open(offer.schedule, offer.tz, now)
        if hit is None:
            self._open_memo[key] = (minute, st, minute, st)
        else:
            self._open_memo[key] = (minute, st, hit[0], hit[1])
        return st

    def _trunks_to(self, receiving: str, target: str, unhealthy: frozenset[str]) -> tuple[str, ...]:
        if target == receiving:
            return ()
        names = self._trunks.get((receiving, target), ())
        if unhealthy:
            healthy = tuple(n for n in names if n not in unhealthy)
            # All down: keep them all in order, a failing trunk beats no attempt.
            return healthy or names
        return names

    def _usable(self, offer: _Offer, s: SiteState | None, receiving: str, ts: float) -> Skip | None:
        """Why a site cannot take calls regardless of hours, or None."""
        why = site_unusable(s, ts, self._routing.site_holdoff)
        if why is not None:
            return why
        if offer.site != receiving and not self._trunks.get((receiving, offer.site)):
            return Skip.NO_TRUNK
        return None

    def _fallback_language(self, number: Number, service: str) -> str | None:
        """A served language when the resolved one is served nowhere for the service."""
        lang = self._default_lang.get(number.country)
        if lang is not None and (service, lang) in self._serving:
            return lang
        for site in (number.home_site, number.site):
            offer = self._offers.get((site, service)) if site else None
            if offer is not None and offer.languages:
                return offer.languages[0]
        for svc, lang in self._serving:
            if svc == service:
                return lang
        return None

    # --- the decision ------------------------------------------------------------------

    def decide(self, call: CallRequest, state: LiveState, now: datetime) -> Decision:
        """Route ``call`` at the aware instant ``now`` against the snapshot ``state``."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        number = self._numbers.get(call.did)
        if number is None:
            return Decision(REJECT, None, None, None, None, reasons=(Reason.UNKNOWN_DID,))
        service = call.service or number.service
        if service not in self._services:
            return Decision(REJECT, None, None, service, None, reasons=(Reason.UNKNOWN_SERVICE,))
        if call.receiving_site not in self._sites:
            return Decision(REJECT, None, None, service, None, reasons=(Reason.UNKNOWN_SITE,))
        ts = now.timestamp()
        language, why = self._lang.resolve(number, call.caller, call.ivr_language)
        reasons = [why]
        offers = self._serving.get((service, language))
        if offers is None:
            fallback = self._fallback_language(number, service)
            reasons.append(Reason.LANGUAGE_UNSERVED)
            if fallback is not None:
                language = fallback
                offers = self._serving[(service, language)]
            else:
                offers = ()
        queue = queue_name(service, language)
        sites = state.sites
        receiving = call.receiving_site
        routing = self._routing
        skipped: list[tuple[str, Skip]] = []
        candidates: list[_Candidate] = []

        def evaluate(offer: _Offer) -> _Candidate | None:
            s = sites.get(offer.site)
            bad = self._usable(offer, s, receiving, ts)
            if bad is None:
                st = self._is_open(offer, service, now, ts)
                if not st.open:
                    # A closed schedule's reason is a Skip (routing.schedule.is_open).
                    bad = cast(Skip, st.reason)
            if bad is None and s is not None:
                if not s.synced:
                    return _Candidate(offer, False, math.nan, 0, math.nan)
                q: QueueLoad | None = s.queues.get(queue)
                if q is not None and q.logged_in > 0:
                    w = ewt(q)
                    score = routing.ewt_weight * w + routing.waiting_weight * q.waiting
                    return _Candidate(offer, True, w, q.waiting, score)
                bad = _UNSTAFFED
            skipped.append((offer.site, bad or _SITE_DOWN))
            return None

        home = number.home_site
        home_offer = None
        home_busy = False
        if home is not None:
            for o in offers:
                if o.site == home:
                    home_offer = o
                    break
            if home_offer is None:
                reasons.append(Reason.HOME_UNSERVED)
            else:
                c = evaluate(home_offer)
                if c is None:
                    # The home's own cause, one reason each: failover, schedule or staffing.
                    reasons.append(HOME_REASON[skipped[-1][1]])
                elif not c.synced:
                    reasons += (_HOME_SITE_OPEN, _SCHEDULE_ONLY)
                    return self._to(call, c, queue, service, language, reasons, state, skipped)
                elif c.ewt < routing.home_max_ewt and c.waiting < routing.home_max_waiting:
                    reasons.append(_HOME_SITE_OPEN)
                    return self._to(call, c, queue, service, language, reasons, state, skipped)
                else:
                    reasons.append(_HOME_SITE_BUSY)
                    home_busy = True
                    candidates.append(c)
        for o in offers:
            if o is not home_offer:
                c = evaluate(o)
                if c is not None:
                    candidates.append(c)
        known = [c for c in candidates if c.synced]
        sticky_site = state.sticky.get((service, language))
        if known:
            best = min(known, key=lambda c: (c.score, c.offer.order))
            pick = best
            sticky = next((c for c in known if c.offer.site == sticky_site), None)
            if (
                sticky is not None
                and sticky is not best
                and sticky.score - best.score <= routing.hysteresis
            ):
                pick = sticky
            # Only a busy home left for another site is load overflow; a closed, down or
            # absent home hands over to the least loaded site, which is no overflow.
            overflow = home_busy and pick.offer.site != home
            if overflow:
                reasons.append(_OVERFLOW_EWT)
            if pick is not best:
                reasons.append(_STICKY)
            elif not overflow:
                reasons.append(_LEAST_LOADED)
            return self._to(call, pick, queue, service, language, reasons, state, skipped)
        if candidates:
            # Nothing known about load: keep the sticky site if possible, else config order.
            pick = next((c for c in candidates if c.offer.site == sticky_site), candidates[0])
            reasons.append(_SCHEDULE_ONLY)
            return self._to(call, pick, queue, service, language, reasons, state, skipped)
        return self._after_hours(call, service, language, reasons, state, ts, skipped)

    def _to(
        self,
        call: CallRequest,
        c: _Candidate,
        queue: str,
        service: str,
        language: str,
        reasons: list[Reason],
        state: LiveState,
        skipped: list[tuple[str, Skip]],
    ) -> Decision:
        site = c.offer.site
        return Decision(
            QUEUE,
            site,
            queue,
            service,
            language,
            self._trunks_to(call.receiving_site, site, state.unhealthy_trunks),
            tuple(reasons),
            None,
            c.ewt if c.synced else None,
            tuple(skipped),
        )

    def _after_hours(
        self,
        call: CallRequest,
        service: str,
        language: str,
        reasons: list[Reason],
        state: LiveState,
        ts: float,
        skipped: list[tuple[str, Skip]],
    ) -> Decision:
        ah = self._routing.after_hours
        reasons.append(Reason.AFTER_HOURS)
        action = ah.action
        if action is AfterHoursAction.SITE:
            offer = self._offers.get((ah.site, service)) if ah.site else None
            s = state.sites.get(ah.site) if ah.site else None
            bad: Skip | None = Skip.UNSERVED if offer is None else None
            if offer is not None:
                bad = self._usable(offer, s, call.receiving_site, ts)
            if offer is not None and bad is None:
                # The designated site takes the call whatever its hours say.
                if language not in offer.languages:
                    reasons.append(Reason.LANGUAGE_UNSERVED)
                    language = offer.languages[0]
                return Decision(
                    AFTER_HOURS,
                    offer.site,
                    queue_name(service, language),
                    service,
                    language,
                    self._trunks_to(call.receiving_site, offer.site, state.unhealthy_trunks),
                    tuple(reasons),
                    action.value,
                    None,
                    tuple(skipped),
                )
            reasons.append(AFTER_HOURS_REASON[bad or Skip.SITE_DOWN])
            action = AfterHoursAction.CLOSED
        return Decision(
            AFTER_HOURS,
            None,
            None,
            service,
            language,
            (),
            tuple(reasons),
            action.value,
            None,
            tuple(skipped),
        )


def site_unusable(s: SiteState | None, ts: float, holdoff: float) -> Skip | None:
    """Why a site takes no new calls whatever the call (down, drained, recovered within
    ``holdoff`` seconds), or None: the router's rule, and the SIP edge's (ccbridge/edge)."""
    if s is None or not s.up:
        return Skip.SITE_DOWN
    if s.drained:
        return Skip.DRAINED
    if s.up_since is None or ts - s.up_since < holdoff:
        return Skip.HOLDOFF
    return None


def site_inputs(s: SiteState | None) -> tuple[object, ...] | None:
    """What ``Router.decide`` reads of a site's state beside the instant (which it reads
    through ``site_unusable`` and the schedules): two states whose sites give equal inputs,
    with the same sticky sites and unhealthy trunks, give every call the same decision at
    the same instant. A queue with nobody logged in counts as absent, as in ``decide``;
    of the others only what the score is made of (BENCHMARKS §12, tenth session)."""
    if s is None:
        return None
    queues = {
        # ewt's own first answer inline: a queue with an agent free and nobody waiting
        # (most, most of the time) costs no call (3.4 against 7.7 us a site of 15 queues).
        name: (0.0 if q.available > 0 and q.waiting == 0 else ewt(q), q.waiting)
        for name, q in s.queues.items()
        if q.logged_in > 0
    }
    return (s.up, s.drained, s.up_since, s.synced, queues)


def reads_sticky(decision: Decision) -> bool:
    """Whether ``Router.decide`` read ``state.sticky[(service, language)]`` to reach
    ``decision``: only a queued call that did not go straight to its open home site."""
    return decision.outcome == QUEUE and _HOME_SITE_OPEN not in decision.reasons


def remember(state: LiveState, decision: Decision) -> LiveState:
    """Record a queued decision as the sticky site for its (service, language)."""
    if decision.outcome != QUEUE or not decision.site or not decision.service:
        return state
    return set_sticky(state, decision.service, decision.language or "", decision.site)


_last: tuple[Config, Router] | None = None


def decide(call: CallRequest, config: Config, state: LiveState, now: datetime) -> Decision:
    """Convenience over :class:`Router`; reuses the Router while ``config`` is the same object."""
    global _last
    cached = _last
    if cached is None or cached[0] is not config:
        # Holding the config itself (not its id) means identity cannot be reused.
        cached = (config, Router(config))
        _last = cached
    return cached[1].decide(call, state, now)
