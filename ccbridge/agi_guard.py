"""The AGI guard beside each site: the URLs its dialplan dials, the view haproxy.cfg is
rendered from (dialplans/haproxy.cfg.j2)."""

from __future__ import annotations

from dataclasses import dataclass

from ccbridge import variables as v
from ccbridge.agi import health as agi_health
from ccbridge.config.model import Config, Site


@dataclass(frozen=True, slots=True)
class GuardView:
    """The AGI guard beside one site, in the units haproxy.cfg takes."""

    host: str
    port: int
    lookup_port: int
    servers: tuple[str, ...]
    connect_ms: int
    route_ms: int
    lookup_ms: int
    client_ms: int
    check_ms: int
    downinter_ms: int
    check_timeout_ms: int
    check_url: str
    check_request_hex: str
    check_expect: str
    check_reply_hex: str


def guard_view(config: Config, site: Site) -> GuardView | None:
    guard = config.bridge.agi_guard
    if guard is None:
        return None
    route_ms = round(guard.route_timeout * 1000)
    lookup_ms = round(config.lookup_guard_timeout() * 1000)
    check_ms = round(guard.check_interval * 1000)
    return GuardView(
        host=site.sip.host,
        port=guard.port,
        lookup_port=guard.lookup_port,
        servers=tuple(str(s) for s in config.bridge.guard_servers),
        connect_ms=round(guard.connect_timeout * 1000),
        route_ms=route_ms,
        lookup_ms=lookup_ms,
        # Asterisk says nothing while the bridge works: never cut it before the server.
        client_ms=max(route_ms, lookup_ms) + 5000,
        check_ms=check_ms,
        # Not faster while down: a stopped bridge gets every check as a queued connection,
        # accepted all at once when it resumes (~0.1 ms each, on its event loop).
        downinter_ms=check_ms,
        # A bridge slower than a route may wait is as good as hung for the calls.
        check_timeout_ms=min(check_ms, route_ms),
        check_url=agi_health.CHECK_URL,
        check_request_hex=agi_health.check_request().encode().hex(),
        check_expect=agi_health.COMMAND.split()[-1],
        check_reply_hex=(agi_health.REPLY + "\n").encode().hex(),
    )


def route_urls(config: Config, site: Site) -> tuple[str, ...]:
    """The URLs the site's dialplan tries in order for a route, within the cluster's
    budget (issue 15): its guard (asked again when it balances over several bridges:
    a bridge that hung mid-session is out of the guard's rotation by then), else the
    hagi:// URL when the bridges are listed in DNS SRV (asked again the same way), else
    each bridge in turn."""
    return _tries(config, site, v.AGI_ROUTE)


def lookup_urls(config: Config, site: Site) -> tuple[str, ...]:
    """The URLs an IVR self-service lookup tries in order, the same way as a route: a
    dead or hung first bridge of a list costs the caller the budget, not the lookup."""
    return _tries(config, site, v.AGI_LOOKUP)


def _tries(config: Config, site: Site, route: str) -> tuple[str, ...]:
    bridge = config.bridge
    if bridge.agi_guard is not None:
        tries = bridge.cluster.tries if len(bridge.guard_servers) > 1 else 1
        first = agi_urls(config, site)[0 if route == v.AGI_ROUTE else 1]
        return (first,) * tries
    if bridge.cluster.srv is not None:
        # Asterisk tries the SRV targets only until one accepts: a bridge that dies with
        # the session open ends that AGI(), and the next ask walks the targets again.
        return (v.hagi_url(bridge.cluster.srv, route),) * bridge.cluster.tries
    return tuple(v.agi_url(str(hp), route) for hp in bridge.agi_servers)


def agi_urls(config: Config, site: Site) -> tuple[str, str]:
    """What the site's dialplan dials first for a route, and for a lookup: its guard,
    when on; else the SRV name, or the first bridge of the list."""
    guard = config.bridge.agi_guard
    if guard is None:
        srv = config.bridge.cluster.srv
        if srv is not None:
            return v.hagi_url(srv, v.AGI_ROUTE), v.hagi_url(srv, v.AGI_LOOKUP)
        host = str(config.bridge.agi_servers[0])
        return v.agi_url(host, v.AGI_ROUTE), v.agi_url(host, v.AGI_LOOKUP)
    return (
        v.agi_url(f"{site.sip.host}:{guard.port}", v.AGI_ROUTE),
        v.agi_url(f"{site.sip.host}:{guard.lookup_port}", v.AGI_LOOKUP),
    )
