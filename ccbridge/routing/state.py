"""Live queue and site state as frozen snapshots, and the reducer that AMI events drive.

Design: persistent immutable updates. Every function here returns a new ``LiveState``
and never mutates its input. The site, queue and member maps are ``immutables.Map``s
(hash array mapped tries, the structure CPython's contextvars use): setting one key
returns a new map sharing everything else, in time that does not grow with the number
of entries (log32 of it). So an event costs the same with 100 agents or 10,000, where a
copied dict (the previous design) cost a copy of every member of the site per member
event. Readers (the router, the HTTP API, metrics collectors) can hold any snapshot
without locks; the mappings are typed as read-only ``Mapping``. Plain dicts given in
(tests build states by hand) are turned into maps on their first update.

Times (``now``, ``up_since``, ``since``) are POSIX seconds (``time.time()`` or the
bridge's fixed clock) passed in by the caller, never read here, so the router can
compare them with the ``datetime`` it is given.

Full resync: ``begin_sync`` opens a buffer; the ``QueueParams``/``QueueMember``/
``QueueEntry`` list items of a QueueStatus reply fill it; ``QueueStatusComplete`` (or
``complete_sync``) replaces the site's queues and members with it at once, so queues
and members that vanished from Asterisk vanish here too. Incremental events during a
sync update the live data only; the next resync corrects any that raced the snapshot.

Counting follows app_queue's QueueSummary: a member is *logged in* unless its device
state is INVALID (4) or UNAVAILABLE (5); it is *available* when logged in, not paused,
and NOT_INUSE (1) or UNKNOWN (0). UNKNOWN counts as available because Asterisk itself
rings such members (devices without state reporting stay UNKNOWN forever).

The event path applies one handler per event (``LIVE_MUTATORS``, one per event name),
which changes a site's queue and member maps in place: ``MapMutation``s, mutable copies
of the site's maps (``mutate_site``) that leave those maps as they were. ``apply_event``
and ``LIVE_UPDATES`` wrap each handler persistently (copies of the maps in, new maps
out), and the bridge (ccbridge/app.py) keeps a site's copies open between two reads of
its state, finishing them into a new snapshot when a reader asks: with 20,000 members a
persistent set copies a path of the trie and touches every entry of each node on it,
in place it touches one slot, so an event's cost grows less with the site's size.
New snapshots are built by ``_evolve``: a copy of the old object's ``__dict__`` with
the changed fields, put in a new instance. A frozen dataclass's ``__init__`` (or
``dataclasses.replace``) sets every field through ``object.__setattr__``, four times
slower; for that the queue, site and state classes have no ``__slots__`` (there are few
of them). ``Member``s and ``Caller``s are named tuples: there are as many as
memberships, and small tuples keep the cost per event flat with 10,000 agents.
Instances are as frozen as before: nothing writes their dicts after they are made.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

from immutables import Map, MapMutation

__all__ = [
    "DEFAULT_HANDLE_TIME",
    "EWMA_ALPHA",
    "LIVE_MUTATORS",
    "LIVE_REDUCERS",
    "LIVE_UPDATES",
    "Caller",
    "LiveState",
    "Member",
    "QueueLoad",
    "Reducer",
    "SiteMaps",
    "SiteMutator",
    "SiteState",
    "SiteUpdate",
    "SyncBuffer",
    "apply_event",
    "apply_events",
    "begin_sync",
    "complete_sync",
    "ewt",
    "initial_state",
    "mutate_site",
    "set_drained",
    "set_site_up",
    "set_sticky",
    "set_trunk_health",
    "with_site_maps",
]

# Device states (ast_device_state) as sent in the Status field.
UNKNOWN, NOT_INUSE, INUSE, BUSY, INVALID, UNAVAILABLE, RINGING, RINGINUSE, ONHOLD = range(9)
_NOT_LOGGED_IN = frozenset({INVALID, UNAVAILABLE})
_FREE = frozenset({UNKNOWN, NOT_INUSE})

DEFAULT_HANDLE_TIME = 180.0  # seconds, used until the queue has reported a talk time
EWMA_ALPHA = 0.25  # the weight app_queue gives a new sample in its own hold/talk averages


class Member(NamedTuple):
    """One queue member (agent) in one queue.

    A named tuple rather than a frozen dataclass: the reducer makes one per member event
    and a tuple is built at C speed, a frozen dataclass by six ``object.__setattr__``."""

    name: str
    interface: str
    status: int = UNKNOWN
    paused: bool = False
    in_call: bool = False
    penalty: int = 0

    @property
    def logged_in(self) -> bool:
        return self.status not in _NOT_LOGGED_IN

    @property
    def available(self) -> bool:
        return not self.paused and self.status in _FREE


class Caller(NamedTuple):
    """A caller waiting in a queue, in queue order. (A named tuple, as Member: one is
    made per QueueCallerJoin, and a tuple is built at C speed.)"""

    uniqueid: str
    since: float


@dataclass(frozen=True)
class QueueLoad:
    """Counts and averages for one queue at one site."""

    logged_in: int = 0
    available: int = 0
    paused: int = 0  # logged in and paused
    waiting: int = 0
    member_count: int = 0  # members known in any state; 0 means only summaries seen
    callers: tuple[Caller, ...] = ()
    longest_wait_since: float | None = None
    avg_hold: float = 0.0  # 0.0 = unknown
    avg_talk: float = 0.0  # 0.0 = unknown
    completed: int = 0
    abandoned: int = 0

    @property
    def staffed(self) -> int:
        """Agents that can take a call now or after their current one."""
        return self.logged_in - self.paused


EMPTY_QUEUE = QueueLoad()

Queues = Mapping[str, QueueLoad]
Members = Mapping[tuple[str, str], Member]  # (queue, interface) -> member


@dataclass(frozen=True)
class SyncBuffer:
    """Queue data collected from a QueueStatus reply that is still arriving."""

    queues: Queues = field(default_factory=Map)
    members: Members = field(default_factory=Map)


@dataclass(frozen=True)
class SiteState:
    """One Asterisk site as the bridge sees it over AMI."""

    name: str
    up: bool = False
    drained: bool = False
    up_since: float | None = None
    synced: bool = False  # a full QueueStatus sync completed since the site came up
    queues: Queues = field(default_factory=Map)
    members: Members = field(default_factory=Map)
    pending: SyncBuffer | None = None


@dataclass(frozen=True)
class LiveState:
    """Everything the router needs to know about the present."""

    sites: Mapping[str, SiteState] = field(default_factory=Map)
    synced: bool = False  # every site that is up has completed a sync
    sticky: Mapping[tuple[str, str], str] = field(default_factory=dict)
    unhealthy_trunks: frozenset[str] = frozenset()


def initial_state(site_names: Iterable[str]) -> LiveState:
    """All sites down and unsynced."""
    return LiveState(sites=Map({n: SiteState(n) for n in site_names}))


def ewt(q: QueueLoad | None) -> float:
    """Expected wait in seconds for a new caller; ``math.inf`` when nobody is logged in."""
    if q is None or q.logged_in <= 0:
        return math.inf
    if q.available > 0 and q.waiting == 0:
        return 0.0
    handle = q.avg_talk if q.avg_talk > 0.0 else DEFAULT_HANDLE_TIME
    return (q.waiting + 1) * handle / max(q.staffed, 1)


# --- site-level transitions -------------------------------------------------------------


_K = TypeVar("_K")
_V = TypeVar("_V")
_T = TypeVar("_T")

_new = object.__new__
_set = object.__setattr__
_tuple_new = tuple.__new__


def _evolve(obj: _T, fields: dict[str, object]) -> _T:
    """A new instance of ``obj``'s frozen dataclass holding ``fields``: a copy of
    ``obj.__dict__`` with some values changed (the hot path's ``replace``)."""
    new = _new(type(obj))
    _set(new, "__dict__", fields)
    return new


def _as_map(m: Mapping[_K, _V]) -> Map[_K, _V]:
    return m if type(m) is Map else Map(m)


def _with_site(state: LiveState, s: SiteState) -> LiveState:
    fields = state.__dict__.copy()
    fields["sites"] = _as_map(state.sites).set(s.name, s)
    return _evolve(state, fields)


def _site(state: LiveState, site: str) -> SiteState:
    s = state.sites.get(site)
    return s if s is not None else SiteState(site)


def _all_synced(sites: Mapping[str, SiteState]) -> bool:
    return all(s.synced for s in sites.values() if s.up)


def _put_site(state: LiveState, s: SiteState, resync: bool = False) -> LiveState:
    sites = _as_map(state.sites).set(s.name, s)
    synced = _all_synced(sites) if resync else state.synced
    return LiveState(sites, synced, state.sticky, state.unhealthy_trunks)


def set_site_up(state: LiveState, site: str, up: bool, now: float) -> LiveState:
    """Record the AMI link of ``site`` going up or down; a recovered site must resync."""
    s = _site(state, site)
    if up == s.up:
        return state
    # Queue data from before an outage is stale, so the site is unsynced either way.
    s = replace(s, up=up, up_since=now if up else None, synced=False, pending=None)
    return _put_site(state, s, resync=True)


def set_drained(state: LiveState, site: str, drained: bool) -> LiveState:
    """Take a site out of routing (or back) without touching its AMI state."""
    s = _site(state, site)
    if s.drained == drained:
        return state
    return _put_site(state, replace(s, drained=drained))


def begin_sync(state: LiveState, site: str) -> LiveState:
    """Start collecting a QueueStatus reply that will replace the site's queue data."""
    return _put_site(state, replace(_site(state, site), pending=SyncBuffer()))


def complete_sync(state: LiveState, site: str) -> LiveState:
    """Swap the collected QueueStatus data in; without a sync in progress, do nothing."""
    s = _site(state, site)
    if s.pending is None:
        return state
    s = replace(s, queues=s.pending.queues, members=s.pending.members, pending=None, synced=True)
    return _put_site(state, s, resync=True)


def set_trunk_health(state: LiveState, trunk: str, healthy: bool) -> LiveState:
    bad = state.unhealthy_trunks - {trunk} if healthy else state.unhealthy_trunks | {trunk}
    if bad == state.unhealthy_trunks:
        return state
    return replace(state, unhealthy_trunks=bad)


def set_sticky(state: LiveState, service: str, language: str, site: str) -> LiveState:
    """Remember the site that last took calls for (service, language), for hysteresis."""
    key = (service, language)
    if state.sticky.get(key) == site:
        return state
    sticky = dict(state.sticky)
    sticky[key] = site
    return replace(state, sticky=sticky)


# --- event handlers: (queues, members, event, now) -> changed? ------------------------
#
# A handler changes the site's maps in place: they are ``MapMutation``s, mutable copies
# of the site's ``Map``s that leave the maps they came from as they were. The persistent
# reducers below take the mutations of a snapshot's maps, call the handler and finish
# them into new maps (``_persistent``); the bridge keeps a site's mutations open between
# reads instead (``LIVE_MUTATORS``, ``mutate_site``), so the events between two reads
# change the maps in place rather than copying a path of the trie each.

_Pair = tuple[Map[str, QueueLoad], Map[tuple[str, str], Member]]
QueuesMut = MapMutation[str, QueueLoad]
MembersMut = MapMutation[tuple[str, str], Member]
SiteMaps = tuple[QueuesMut, MembersMut]
# One live event's effect on one site's maps, changed in place: True if it changed them.
SiteMutator = Callable[[QueuesMut, MembersMut, Mapping[str, str], float], bool]
_Handler = Callable[
    [Map[str, QueueLoad], Map[tuple[str, str], Member], Mapping[str, str], float], _Pair | None
]
_QueueUpdate = Callable[[QueueLoad, Mapping[str, str], float], QueueLoad | None]


def _int(ev: Mapping[str, str], key: str, default: int = 0) -> int:
    v = ev.get(key)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError:
        return default


def _float(ev: Mapping[str, str], key: str) -> float | None:
    v = ev.get(key)
    if v is None:
        return None
    try:
        return float(v)
    except ValueError:
        return None


_TRUE = frozenset({"1", "true", "yes", "on"})


def _bool(ev: Mapping[str, str], key: str, default: bool) -> bool:
    v = ev.get(key)
    if v is None:
        return default
    if v == "0":  # what Asterisk sends, the common case
        return False
    return v.strip().lower() in _TRUE


# What Asterisk sends in Status, Penalty, Paused and InCall, looked up in one C call.
_SMALL_INTS: Mapping[str, int] = {str(i): i for i in range(100)}
_FLAGS: Mapping[str, bool] = {"0": False, "1": True}


def _ewma(avg: float, sample: float) -> float:
    return sample if avg <= 0.0 else avg + EWMA_ALPHA * (sample - avg)


def _member_update(
    queues: QueuesMut,
    members: MembersMut,
    ev: Mapping[str, str],
    name_key: str,
    iface_key: str,
    removed: bool,
) -> bool:
    qname = ev.get("Queue")
    iface = ev.get(iface_key) or ev.get(name_key)
    if not qname or not iface:
        return False
    key = (qname, iface)
    old = members.get(key)
    new: Member | None
    if removed:
        if old is None:
            return False
        new = None
    else:
        # Written out for the event path; QueueMemberPause and friends may omit fields:
        # keep what we knew. The values Asterisk sends are looked up in small tables
        # (one C call each); anything else takes the general conversion.
        if old is None:
            name, status, paused, in_call, penalty = ev.get(name_key) or iface, 0, False, False, 0
        else:
            _, _, status, paused, in_call, penalty = old
            name = ev.get(name_key) or old[0]
        v = ev.get("Status")
        if v is not None:
            n = _SMALL_INTS.get(v)
            status = n if n is not None else int(v) if v.isdecimal() else _int(ev, "Status", status)
        v = ev.get("Paused")
        if v is not None:
            b = _FLAGS.get(v)
            paused = b if b is not None else _bool(ev, "Paused", paused)
        v = ev.get("InCall")
        if v is not None:
            b = _FLAGS.get(v)
            in_call = b if b is not None else _bool(ev, "InCall", in_call)
        v = ev.get("Penalty")
        if v is not None:
            n = _SMALL_INTS.get(v)
            penalty = (
                n if n is not None else int(v) if v.isdecimal() else _int(ev, "Penalty", penalty)
            )
        new = _tuple_new(Member, (name, iface, status, paused, in_call, penalty))
        if new == old:
            return False
    q = queues.get(qname, EMPTY_QUEUE)
    count, logged_in, available, paused_n = q.member_count, q.logged_in, q.available, q.paused
    # What the old member counted for goes, what the new one counts for comes (_counts).
    if old is not None:
        count -= 1
        status = old[2]
        if status not in _NOT_LOGGED_IN:
            logged_in -= 1
            if old[3]:
                paused_n -= 1
            elif status in _FREE:
                available -= 1
    if new is not None:
        count += 1
        status = new[2]
        if status not in _NOT_LOGGED_IN:
            logged_in += 1
            if new[3]:
                paused_n += 1
            elif status in _FREE:
                available += 1
    qf = q.__dict__.copy()
    qf["logged_in"] = logged_in
    qf["available"] = available
    qf["paused"] = paused_n
    qf["member_count"] = count
    new_q = _new(QueueLoad)
    _set(new_q, "__dict__", qf)
    queues.set(qname, new_q)
    if new is None:
        del members[key]
    else:
        members.set(key, new)
    return True


def _member_event(
    queues: QueuesMut, members: MembersMut, ev: Mapping[str, str], now: float
) -> bool:
    return _member_update(queues, members, ev, "MemberName", "Interface", False)


def _member_removed(
    queues: QueuesMut, members: MembersMut, ev: Mapping[str, str], now: float
) -> bool:
    return _member_update(queues, members, ev, "MemberName", "Interface", True)


def _status_member(
    queues: QueuesMut, members: MembersMut, ev: Mapping[str, str], now: float
) -> bool:
    # QueueStatus list replies name the member Name/Location, unlike the events.
    return _member_update(queues, members, ev, "Name", "Location", False)


def _per_queue(update: _QueueUpdate) -> SiteMutator:
    """A handler for an event about one queue: ``update`` gets that queue (empty if not
    seen yet) and returns its new load, or None if the event changes nothing."""

    def handle(queues: QueuesMut, members: MembersMut, ev: Mapping[str, str], now: float) -> bool:
        qname = ev.get("Queue")
        if not qname:
            return False
        q = update(queues.get(qname, EMPTY_QUEUE), ev, now)
        if q is None:
            return False
        queues.set(qname, q)
        return True

    return handle


def _persistent(mutator: SiteMutator, members_too: bool = True) -> _Handler:
    """The handler as a persistent update: new maps, or None if nothing changed (the
    maps given in stay as they were). A handler of one queue's load (``members_too``
    False) hands back the member map given in: unchanged parts of a snapshot are the
    same objects."""

    def handle(
        queues: Map[str, QueueLoad],
        members: Map[tuple[str, str], Member],
        ev: Mapping[str, str],
        now: float,
    ) -> _Pair | None:
        q, m = queues.mutate(), members.mutate()
        if not mutator(q, m, ev, now):
            return None
        return q.finish(), m.finish() if members_too else members

    return handle


def _queue_params(q: QueueLoad, ev: Mapping[str, str], now: float) -> QueueLoad | None:
    hold, talk = _float(ev, "Holdtime"), _float(ev, "TalkTime")
    return replace(
        q,
        waiting=_int(ev, "Calls", q.waiting),
        avg_hold=hold if hold else q.avg_hold,
        avg_talk=talk if talk else q.avg_talk,
        completed=_int(ev, "Completed", q.completed),
        abandoned=_int(ev, "Abandoned", q.abandoned),
    )


def _queue_entry(q: QueueLoad, ev: Mapping[str, str], now: float) -> QueueLoad | None:
    since = now - _int(ev, "Wait", 0)
    callers = (*q.callers, Caller(ev.get("Uniqueid", ""), since))
    return replace(
        q,
        callers=callers,
        waiting=max(q.waiting, len(callers)),
        longest_wait_since=callers[0].since,
    )


def _queue_summary(q: QueueLoad, ev: Mapping[str, str], now: float) -> QueueLoad | None:
    waiting = _int(ev, "Callers", q.waiting)
    longest = _int(ev, "LongestHoldTime", 0)
    hold, talk = _float(ev, "HoldTime"), _float(ev, "TalkTime")
    logged_in, available = q.logged_in, q.available
    if q.member_count == 0:
        # Only take Asterisk's counts when we track no members for this queue: mixing
        # them with member-level deltas would make the two disagree.
        logged_in = _int(ev, "LoggedIn", logged_in)
        available = _int(ev, "Available", available)
    new = replace(
        q,
        waiting=waiting,
        longest_wait_since=(now - longest) if waiting else None,
        avg_hold=hold if hold else q.avg_hold,
        avg_talk=talk if talk else q.avg_talk,
        logged_in=logged_in,
        available=available,
    )
    return None if new == q else new


def _caller_join(q: QueueLoad, ev: Mapping[str, str], now: float) -> QueueLoad | None:
    old = q.callers
    n = _SMALL_INTS.get(ev.get("Position", ""))
    pos = n if n is not None else _int(ev, "Position", len(old) + 1)
    caller = _tuple_new(Caller, (ev.get("Uniqueid", ""), now))
    at = max(pos - 1, 0)
    callers = (*old, caller) if at >= len(old) else (*old[:at], caller, *old[at:])
    fields = q.__dict__.copy()
    n = _SMALL_INTS.get(ev.get("Count", ""))
    fields["waiting"] = n if n is not None else _int(ev, "Count", q.waiting + 1)
    fields["callers"] = callers
    fields["longest_wait_since"] = callers[0].since
    new = _new(QueueLoad)
    _set(new, "__dict__", fields)
    return new


def _caller_leave(q: QueueLoad, ev: Mapping[str, str], now: float) -> QueueLoad | None:
    uid = ev.get("Uniqueid")
    callers = [c for c in q.callers if c.uniqueid != uid] if uid else list(q.callers)
    if len(callers) == len(q.callers) and callers:
        # Unknown uniqueid (e.g. joined before our sync): fall back to the position.
        pos = _int(ev, "Position", 1)
        if 1 <= pos <= len(callers):
            del callers[pos - 1]
    n = _SMALL_INTS.get(ev.get("Count", ""))
    waiting = n if n is not None else _int(ev, "Count", max(q.waiting - 1, 0))
    if callers:
        longest: float | None = callers[0].since
    else:
        longest = q.longest_wait_since if waiting else None
    fields = q.__dict__.copy()
    fields["waiting"] = waiting
    fields["callers"] = tuple(callers)
    fields["longest_wait_since"] = longest
    new = _new(QueueLoad)
    _set(new, "__dict__", fields)
    return new


def _caller_abandon(q: QueueLoad, ev: Mapping[str, str], now: float) -> QueueLoad | None:
    # app_queue sends QueueCallerLeave as well, which removes the caller; count only.
    return replace(q, abandoned=q.abandoned + 1)


def _agent_connect(q: QueueLoad, ev: Mapping[str, str], now: float) -> QueueLoad | None:
    # _float and _ewma written out: one of the per-call events.
    v = ev.get("HoldTime")
    if v is None:
        return None
    try:
        hold = float(v)
    except ValueError:
        return None
    fields = q.__dict__.copy()
    avg = q.avg_hold
    fields["avg_hold"] = hold if avg <= 0.0 else avg + EWMA_ALPHA * (hold - avg)
    new = _new(QueueLoad)
    _set(new, "__dict__", fields)
    return new


def _agent_complete(q: QueueLoad, ev: Mapping[str, str], now: float) -> QueueLoad | None:
    # _float and _ewma written out: one of the per-call events.
    v = ev.get("TalkTime")
    if v is None:
        return None
    try:
        talk = float(v)
    except ValueError:
        return None
    fields = q.__dict__.copy()
    avg = q.avg_talk
    fields["avg_talk"] = talk if avg <= 0.0 else avg + EWMA_ALPHA * (talk - avg)
    fields["completed"] = q.completed + 1
    new = _new(QueueLoad)
    _set(new, "__dict__", fields)
    return new


# Items of a QueueStatus reply: go to the sync buffer while a sync is in progress.
_SYNC_HANDLERS: dict[str, _Handler] = {
    "QueueParams": _persistent(_per_queue(_queue_params), members_too=False),
    "QueueMember": _persistent(_status_member),
    "QueueEntry": _persistent(_per_queue(_queue_entry), members_too=False),
}
# Live events about one queue's load, and about its members.
_QUEUE_UPDATES: dict[str, _QueueUpdate] = {
    "QueueSummary": _queue_summary,
    "QueueCallerJoin": _caller_join,
    "QueueCallerLeave": _caller_leave,
    "QueueCallerAbandon": _caller_abandon,
    "AgentConnect": _agent_connect,
    "AgentComplete": _agent_complete,
}
_MEMBER_HANDLERS: dict[str, SiteMutator] = {
    "QueueMemberAdded": _member_event,
    "QueueMemberStatus": _member_event,
    "QueueMemberPause": _member_event,
    "QueueMemberPenalty": _member_event,
    "QueueMemberRinginuse": _member_event,
    "QueueMemberRemoved": _member_removed,
}
Reducer = Callable[[LiveState, str, Mapping[str, str], float], LiveState]
# One live event's effect on one site: its new (queues, members), None if unchanged.
SiteUpdate = Callable[[SiteState, Mapping[str, str], float], "_Pair | None"]


def mutate_site(s: SiteState) -> SiteMaps:
    """Mutable copies of the site's queue and member maps, for ``LIVE_MUTATORS``; the
    site's own maps never change. ``finish()`` on each gives the new maps."""
    return _as_map(s.queues).mutate(), _as_map(s.members).mutate()


def _site_update(handler: _Handler) -> SiteUpdate:
    """The persistent SiteUpdate of a persistent handler of the site's maps."""

    def update(s: SiteState, event: Mapping[str, str], now: float) -> _Pair | None:
        return handler(_as_map(s.queues), _as_map(s.members), event, now)

    return update


def with_site_maps(state: LiveState, s: SiteState, got: _Pair) -> LiveState:
    """A new state with site ``s``'s queues and members replaced by ``got`` (a new
    SiteState and LiveState: the persistent update every reducer here makes)."""
    fields = s.__dict__.copy()
    fields["queues"], fields["members"] = got
    new_site = _new(SiteState)
    _set(new_site, "__dict__", fields)
    fields = state.__dict__.copy()
    fields["sites"] = _as_map(state.sites).set(s.name, new_site)
    new_state = _new(LiveState)
    _set(new_state, "__dict__", fields)
    return new_state


def _reducer(update: SiteUpdate) -> Reducer:
    """``apply_event`` for the one event name ``update`` folds in."""

    def reduce(state: LiveState, site: str, event: Mapping[str, str], now: float) -> LiveState:
        s = state.sites.get(site)
        if s is None:
            s = SiteState(site)
        got = update(s, event, now)
        return state if got is None else with_site_maps(state, s, got)

    return reduce


# The live AMI events this reducer folds in, each with its handler of the site's maps:
# what the bridge subscribes to the bus (ccbridge/app.py: it keeps each site's mutations
# open between two reads of its state), and as persistent updates of a site and reducers
# of the whole state.
LIVE_MUTATORS: Mapping[str, SiteMutator] = {
    **{name: _per_queue(update) for name, update in _QUEUE_UPDATES.items()},
    **_MEMBER_HANDLERS,
}
LIVE_UPDATES: Mapping[str, SiteUpdate] = {
    **{
        name: _site_update(_persistent(_per_queue(u), members_too=False))
        for name, u in _QUEUE_UPDATES.items()
    },
    **{name: _site_update(_persistent(m)) for name, m in _MEMBER_HANDLERS.items()},
}
LIVE_REDUCERS: Mapping[str, Reducer] = {
    name: _reducer(update) for name, update in LIVE_UPDATES.items()
}
HANDLED_EVENTS: frozenset[str] = frozenset(LIVE_REDUCERS)


def apply_event(state: LiveState, site: str, event: Mapping[str, str], now: float) -> LiveState:
    """Fold one AMI event (or QueueStatus list item) from ``site`` into ``state``.

    Unknown events return ``state`` itself, so callers can test ``new is old`` cheaply.
    """
    reduce = LIVE_REDUCERS.get(event.get("Event", ""))
    if reduce is None:
        return _apply_list_item(state, site, event, now)
    return reduce(state, site, event, now)


def _apply_list_item(
    state: LiveState, site: str, event: Mapping[str, str], now: float
) -> LiveState:
    """The items of a QueueStatus reply, and its end; anything else changes nothing."""
    name = event.get("Event", "")
    sync = _SYNC_HANDLERS.get(name)
    if sync is None:
        return complete_sync(state, site) if name == "QueueStatusComplete" else state
    s = _site(state, site)
    pending = s.pending
    if pending is None:
        # A list item outside begin_sync/complete_sync: merge into live data.
        got = sync(_as_map(s.queues), _as_map(s.members), event, now)
        if got is None:
            return state
        fields = s.__dict__.copy()
        fields["queues"], fields["members"] = got
        return _with_site(state, _evolve(s, fields))
    got = sync(_as_map(pending.queues), _as_map(pending.members), event, now)
    if got is None:
        return state
    fields = s.__dict__.copy()
    fields["pending"] = SyncBuffer(got[0], got[1])
    return _with_site(state, _evolve(s, fields))


def apply_events(
    state: LiveState, site: str, events: Iterable[Mapping[str, str]], now: float
) -> LiveState:
    """Fold a sequence of events from one site, e.g. a whole QueueStatus reply."""
    for ev in events:
        state = apply_event(state, site, ev, now)
    return state
