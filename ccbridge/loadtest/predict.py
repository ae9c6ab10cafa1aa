"""Where the routing engine says the same calls go, at the same instants, faults included.

The predicted state is the lab at rest: every site up and synced, every configured agent
logged in and free. A site is down from when the bridge can notice a kill or hang until
its hold-off after recovery has passed, and drained while a drain lasts. Queue load the
calls themselves build up is not modelled: overflow under load shows as a difference.

A call for another site leaves over the decision's trunks in order. When the run puts a
SIPp carrier (``--carrier TRUNK=MODE``) at a trunk's far end, the call meets that carrier
instead of the site: one that answers takes the call (it never joins the site's queue),
a 503 or a killed carrier sends it on to the next trunk, a busy or silent one ends it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta

from ccbridge.config.model import Config
from ccbridge.loadtest.options import CallerGroup
from ccbridge.loadtest.timeline import SITE_DOWN, Fault, FaultKind
from ccbridge.routing.engine import CallRequest, Decision, Router
from ccbridge.routing.state import LiveState, QueueLoad, SiteState

Key = tuple[str, str]  # (site, queue) or ("-", outcome) when no queue takes the call


def rest_state(config: Config, ts: float, down: set[str], drained: set[str]) -> LiveState:
    sites: dict[str, SiteState] = {}
    for site in config.sites:
        members: Counter[str] = Counter(q for a in site.agents for q in a.queues)
        queues = {
            q: QueueLoad(logged_in=n, available=n, paused=0, waiting=0, member_count=n)
            for q, n in members.items()
        }
        up = site.name not in down
        sites[site.name] = SiteState(
            site.name,
            up=up,
            drained=site.name in drained,
            up_since=ts - 86_400 if up else None,
            synced=up,
            queues=queues,
        )
    return LiveState(sites=sites, synced=True)


def fault_sets(config: Config, faults: Sequence[Fault], t: float) -> tuple[set[str], set[str]]:
    """(down sites, drained sites) as the bridge sees them ``t`` seconds into the run."""
    down: set[str] = set()
    drained: set[str] = set()
    for f in faults:
        if f.kind in SITE_DOWN:
            ami = config.site(f.target).ami
            # a kill closes the AMI socket at once; a hang waits for the Ping deadline
            notice = 0.0 if f.kind is FaultKind.KILL_SITE else ami.ping_interval + ami.ping_timeout
            if f.at + notice <= t < f.ends + config.routing.site_holdoff:
                down.add(f.target)
        elif f.kind is FaultKind.DRAIN_SITE and f.at <= t < f.ends:
            drained.add(f.target)
    return down, drained


def decide_at(
    router: Router,
    config: Config,
    g: CallerGroup,
    at: datetime,
    t: float,
    faults: Sequence[Fault],
    also_down: AbstractSet[str] = frozenset(),
) -> Decision:
    """The engine's decision for a call of group ``g`` placed ``t`` s into a run that
    started at ``at``, on the lab at rest with the faults' sites (and ``also_down``) down."""
    down, drained = fault_sets(config, faults, t)
    now = at + timedelta(seconds=max(0.0, t))
    call = CallRequest(g.did, g.caller, g.site, g.language, g.service)
    return router.decide(call, rest_state(config, now.timestamp(), down | also_down, drained), now)


NO_QUEUE: Key = ("-", "no queue")  # after hours closed, rejected, or never reached a queue
NEXT_TRUNK_MODES = frozenset({"503"})  # CONGESTION: the dialplan tries the next trunk


def carrier_key(trunk: str) -> Key:
    """Calls answered by the run's SIPp carrier at ``trunk``'s far end."""
    return (f"carrier {trunk}", "answered by SIPp")


def key(decision: Decision) -> Key:
    if decision.queue is not None and decision.site is not None:
        return (decision.site, decision.queue)
    return NO_QUEUE


def killed_carriers(faults: Sequence[Fault], t: float) -> set[str]:
    return {f.target for f in faults if f.kind is FaultKind.KILL_CARRIER and f.at <= t < f.ends}


def landing(decision: Decision, carriers: Mapping[str, str], killed: AbstractSet[str]) -> Key:
    """Where the call ends up, given the run's SIPp carriers (trunk -> mode) and dead ones.

    The first trunk without a harness carrier reaches the decision's site. When every
    trunk fails the static fallback takes the call: not modelled, the decision stands.
    """
    for trunk in decision.trunks:
        mode = carriers.get(trunk)
        if mode is None:
            break
        if trunk in killed or mode in NEXT_TRUNK_MODES:
            continue
        return carrier_key(trunk) if mode == "answer" else NO_QUEUE
    return key(decision)


def predict(
    config: Config,
    groups: Sequence[CallerGroup],
    placed: Mapping[int, Mapping[int, int]],
    at: datetime,
    faults: Sequence[Fault] = (),
    carriers: Mapping[str, str] | None = None,
) -> Counter[Key]:
    """Sum of decisions for ``placed[group index][second] = calls`` from the run's stats.

    ``carriers`` maps a trunk to the mode of the SIPp carrier the run put at its far end.
    """
    carriers = carriers or {}
    router = Router(config)
    out: Counter[Key] = Counter()
    for gi, per_second in placed.items():
        for t, n in per_second.items():
            if n <= 0:
                continue
            decision = decide_at(router, config, groups[gi], at, t, faults)
            out[landing(decision, carriers, killed_carriers(faults, t))] += n
    return out


def compare(predicted: Counter[Key], observed: Counter[Key]) -> list[dict[str, object]]:
    """One row per (site, queue): predicted, observed and their difference, biggest first."""
    rows = []
    for k in set(predicted) | set(observed):
        p, o = predicted.get(k, 0), observed.get(k, 0)
        rows.append({"site": k[0], "queue": k[1], "predicted": p, "observed": o, "diff": o - p})
    rows.sort(key=lambda r: (-int(str(r["predicted"])), str(r["site"]), str(r["queue"])))
    return rows
