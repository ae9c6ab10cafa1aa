"""Each caller's stay in a queue, over AMI, and the failed calls that were a caller giving up.

A call the bridge routed correctly can still fail: it waits in the right queue, no agent
is free, and the caller (SIPp's receive timeout) hangs up. That is a capacity shortfall,
not a call the routing lost. ``QueueLog`` keeps, per site and channel, the
QueueCallerJoin (site, queue, CallerIDNum, time), and how the stay ended:
QueueCallerAbandon, AgentConnect or QueueCallerLeave. ``abandoned_in_queue`` decides,
conservatively, whether a failed call was such an abandonment:

- a join by the call's caller number is observed from (about) its placement to its
  failure, and its stay ended by abandon (no later than shortly after the failure) or
  had not ended when the caller gave up; a stay an agent answered is another call;
- the site it waited at was up throughout (no kill or hang from the join to the failure)
  and not drained when the call was placed;
- the routing engine had nowhere else to send it: with that site taken away, at the
  call's placement and at its join, no other up, open, staffed site offered the same
  queue (service and language). Had one offered it, load-aware overflow should have used
  it, and the call stays a failure the bridge could have saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ccbridge.config.model import Config
from ccbridge.loadtest.options import CallerGroup
from ccbridge.loadtest.placement import CallSpan
from ccbridge.loadtest.predict import decide_at, fault_sets
from ccbridge.loadtest.report import overlaps
from ccbridge.loadtest.timeline import SITE_DOWN, Fault
from ccbridge.routing.engine import Router

# the join may come before ``placed``: that is the latest the call can have been placed,
# and the caller's Ringing (which ends SIPp's receive timeout) can follow the join
JOIN_SLACK_S = 2.0
# an abandon is the caller's CANCEL reaching Asterisk: at the failure, give or take
ABANDON_AFTER_S = 5.0


@dataclass(slots=True)
class QueueStay:
    """One caller channel's stay in one queue; times are epochs (seconds)."""

    site: str
    queue: str
    caller: str  # CallerIDNum as Asterisk saw it
    uniqueid: str
    joined: float
    ended: float | None = None
    how: str | None = None  # "abandon", "connect", "leave"; None: still waiting

    def relative(self, start: float) -> QueueStay:
        return QueueStay(
            self.site,
            self.queue,
            self.caller,
            self.uniqueid,
            self.joined - start,
            None if self.ended is None else self.ended - start,
            self.how,
        )


class QueueLog:
    """QueueCallerJoin / Abandon / Leave and AgentConnect per (site, Uniqueid)."""

    def __init__(self) -> None:
        self.stays: list[QueueStay] = []
        self._open: dict[tuple[str, str], QueueStay] = {}

    def on_event(self, site: str, event: Mapping[str, str], now: float) -> None:
        name = event.get("Event")
        uid = event.get("Uniqueid", "")
        if name == "QueueCallerJoin":
            new = QueueStay(site, event.get("Queue", "?"), event.get("CallerIDNum", ""), uid, now)
            self.stays.append(new)
            self._open[(site, uid)] = new
            return
        how = {
            "QueueCallerAbandon": "abandon",
            "AgentConnect": "connect",
            "QueueCallerLeave": "leave",
        }.get(name or "")
        if how is None:
            return
        stay = self._open.get((site, uid))
        if stay is None:
            return
        if how == "leave":
            # Asterisk sends Leave after Abandon or AgentConnect too: it only closes
            # a stay nothing else ended (a timeout, leavewhenempty, a hangup unseen)
            if stay.how is None:
                stay.ended, stay.how = now, "leave"
            self._open.pop((site, uid), None)
            return
        stay.ended, stay.how = now, how


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


def find_stay(stays: Sequence[QueueStay], caller: str, span: CallSpan) -> QueueStay | None:
    """The stay (relative times) that was this failed call's wait, if one was observed.

    Joins by the caller's number from ``placed - JOIN_SLACK_S`` to ``failed``, not answered
    by an agent, and not ended before the failure (beyond a ``leave``'s own moment): the
    one joined closest to the placement.
    """
    want = _digits(caller)
    if not want:
        return None
    found = []
    for s in stays:
        if _digits(s.caller) != want:
            continue
        if not (span.placed - JOIN_SLACK_S <= s.joined <= span.failed):
            continue
        if s.how == "connect":
            continue
        if s.ended is not None and s.ended < span.failed - 1.0:
            continue  # ended well before this call failed: another call's stay
        found.append(s)
    if not found:
        return None
    return min(found, key=lambda s: abs(s.joined - span.placed))


def _site_up(site: str, faults: Sequence[Fault], t0: float, t1: float) -> bool:
    return not any(
        f.kind in SITE_DOWN and f.target == site and overlaps(t0, t1, f.at, f.ends) for f in faults
    )


def alternative_site(
    router: Router,
    config: Config,
    g: CallerGroup,
    stay: QueueStay,
    at: datetime,
    t: float,
    faults: Sequence[Fault],
) -> str | None:
    """Another site the engine would send this call's queue to at ``t``, ``stay.site`` aside."""
    d = decide_at(router, config, g, at, t, faults, also_down={stay.site})
    if d.queue == stay.queue and d.site is not None and d.site != stay.site:
        return d.site
    return None


def abandoned_in_queue(
    router: Router,
    config: Config,
    g: CallerGroup,
    span: CallSpan,
    stays: Sequence[QueueStay],
    at: datetime,
    faults: Sequence[Fault],
) -> str | None:
    """Why this failed call was a caller giving up in a queue no other site offered, or None.

    ``stays`` and ``span`` are in seconds since the run started; ``faults`` as they ran.
    """
    stay = find_stay(stays, g.caller, span)
    if stay is None:
        return None
    if decide_at(router, config, g, at, span.placed, faults).queue != stay.queue:
        return None  # the same number calling another DID: not this call's wait
    if stay.how == "leave":
        return None  # left the queue some other way: not judged here
    if (
        stay.how == "abandon"
        and stay.ended is not None
        and stay.ended > span.failed + ABANDON_AFTER_S
    ):
        return None
    if not _site_up(stay.site, faults, stay.joined, span.failed):
        return None
    if stay.site in fault_sets(config, faults, span.placed)[1]:
        return None  # joined a drained site's queue: a routing question, not capacity
    for t in (span.placed, stay.joined):
        if alternative_site(router, config, g, stay, at, t, faults) is not None:
            return None
    end = stay.ended if stay.how == "abandon" and stay.ended is not None else span.failed
    return (
        f"abandoned in queue ({stay.site}/{stay.queue}, waited {end - stay.joined:.0f} s): "
        "no agent free"
    )
