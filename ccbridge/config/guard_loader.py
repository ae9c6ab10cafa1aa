"""Parse `bridge.agi_guard`, `bridge.watchdog` and `bridge.cluster`; errors name file, line
and key like the rest."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ccbridge.config.model import (
    AgiGuard,
    BridgeSettings,
    ClusterSettings,
    HostPort,
    Site,
    Watchdog,
)
from ccbridge.config.reader import Reader, kind
from ccbridge.config.yamlsrc import LineDict

# Asterisk gives up connecting to a FastAGI server after 2 s: a guard that takes longer
# to connect to a bridge would be cut off by Asterisk before it could answer.
_MAX_CONNECT = 1.9


def parse_agi_guard(r: Reader, v: Any) -> AgiGuard | None:
    """`agi_guard: false` (or absent) is off; `true` or a mapping turns it on."""
    if v is False:
        return None
    if v is True:
        return AgiGuard()
    if not isinstance(v, dict):
        raise r.fail(f"expected true, false or a mapping, got {kind(v)}")
    d = r.mapping(v, set(AgiGuard.__dataclass_fields__))
    g = AgiGuard()
    port = r.get(d, "port", r.integer(1, 65535), g.port)
    lookup_port = r.get(d, "lookup_port", r.integer(1, 65535), port + 1 if port < 65535 else 1)
    if lookup_port == port:
        with r.at("lookup_port", d):
            raise r.fail(f"the lookup listener needs a port of its own, not {port}")
    servers: tuple[HostPort, ...] = r.get(d, "servers", lambda x: _servers(r, x), ())
    return AgiGuard(
        port=port,
        lookup_port=lookup_port,
        route_timeout=r.get(d, "route_timeout", r.number(0.1, 30), g.route_timeout),
        lookup_timeout=r.get(d, "lookup_timeout", r.number(0.1, 600), None),
        connect_timeout=r.get(
            d, "connect_timeout", r.number(0.01, _MAX_CONNECT), g.connect_timeout
        ),
        check_interval=r.get(d, "check_interval", r.number(0.1, 60), g.check_interval),
        servers=servers,
    )


def _servers(r: Reader, v: Any) -> tuple[HostPort, ...]:
    if not isinstance(v, list) or not v:
        raise r.fail(f"expected a non-empty list of HOST:PORT, got {kind(v)}")
    out: list[HostPort] = []
    for i, item in enumerate(v):
        with r.at(i):
            hp = r.host_port()(item)
            if hp.port == 0:
                raise r.fail(f"a bridge's FastAGI port cannot be 0 in '{item}'")
            if hp in out:
                raise r.fail(f"bridge {hp} is listed twice")
            out.append(hp)
    return tuple(out)


def parse_watchdog(r: Reader, v: Any) -> Watchdog:
    d = r.mapping(v, set(Watchdog.__dataclass_fields__))
    w = Watchdog()
    timeout = r.get(d, "timeout", r.number(0.2, 600), w.timeout)
    delay = r.get(d, "restart_delay", r.number(0, 600), w.restart_delay)
    most = r.get(d, "max_restart_delay", r.number(0, 3600), max(w.max_restart_delay, delay))
    if most < delay:
        with r.at("max_restart_delay", d):
            raise r.fail(f"{most} is shorter than restart_delay {delay}")
    return Watchdog(
        timeout=timeout,
        start_timeout=r.get(d, "start_timeout", r.number(1, 3600), w.start_timeout),
        restart_delay=delay,
        max_restart_delay=most,
        stop_timeout=r.get(d, "stop_timeout", r.number(0.1, 600), w.stop_timeout),
    )


def check_guard(
    r: Reader,
    top: LineDict,
    bridge: BridgeSettings,
    sites: Sequence[Site],
    lookup_budget: float | None,
) -> None:
    """Cross-checks: listeners that clash with a site's own ports, a lookup cut short."""
    guard = bridge.agi_guard
    bmap = top.get("bridge")
    gmap = bmap.get("agi_guard") if isinstance(bmap, LineDict) else None
    if guard is None or not isinstance(bmap, LineDict) or not isinstance(gmap, LineDict):
        return
    with r.at("bridge", top), r.at("agi_guard", bmap):
        cut = guard.lookup_timeout
        if lookup_budget is not None and cut is not None and cut < lookup_budget:
            with r.at("lookup_timeout", gmap):
                r.fail(
                    f"{cut:g}s is shorter than a self-service lookup's worst case "
                    f"({lookup_budget:g}s: every attempt timing out): the guard would "
                    "cut lookups the backend still answers"
                )
        for key, port in (("port", guard.port), ("lookup_port", guard.lookup_port)):
            for site in sites:
                taken = {site.sip.port: "SIP", site.ami.port: "AMI"}
                for hp, what in ((bridge.agi_listen, "FastAGI"), (bridge.http_listen, "HTTP")):
                    if hp.host in (site.sip.host, "0.0.0.0"):
                        taken.setdefault(hp.port, f"the bridge's {what}")
                if port in taken:
                    with r.at(key, gmap):
                        r.fail(
                            f"port {port} is already {taken[port]} on site {site.name}'s "
                            f"address {site.sip.host}, where the guard listens"
                        )
                    break


# A bridge's identity goes into the store and the API: printable, no spaces, bounded.
IDENTITY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,159}")
# A DNS name for hagi:// (Asterisk looks up _agi._tcp.NAME): letters, digits, '-' labels.
_DNS_RE = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # fmt: skip


def identity_problem(s: str) -> str | None:
    """Why ``s`` cannot be a bridge identity, or None."""
    if IDENTITY_RE.fullmatch(s):
        return None
    return (
        f"bridge identity {s[:40]!r} must be 1-160 letters, digits or '.', '_', ':', '@', '-' "
        "(starting with a letter or digit)"
    )


def parse_cluster(r: Reader, v: Any, guard_on: bool) -> ClusterSettings:
    """`bridge.cluster`: identity, every bridge's FastAGI address (or SRV), the bounds."""
    d = r.mapping(v, set(ClusterSettings.__dataclass_fields__))
    c = ClusterSettings()

    def identity(x: Any) -> str:
        s = r.string(x)
        why = identity_problem(s)
        if why:
            raise r.fail(why)
        return s

    def srv(x: Any) -> str:
        s = r.string(x)
        if not _DNS_RE.fullmatch(s):
            raise r.fail(f"expected a DNS name (Asterisk looks up _agi._tcp.NAME), got {s!r}")
        if guard_on:
            raise r.fail(
                "the AGI guard is on: it balances over `servers` itself; SRV (hagi://) is "
                "for sites that dial the bridges directly"
            )
        return s

    heartbeat = r.get(d, "heartbeat", r.number(0.2, 60), c.heartbeat)
    alive_after = r.get(d, "alive_after", r.number(0.5, 3600), max(c.alive_after, 3 * heartbeat))
    if alive_after < 2 * heartbeat:
        with r.at("alive_after", d):
            raise r.fail(f"{alive_after:g}s must be at least twice the heartbeat ({heartbeat:g}s)")
    return ClusterSettings(
        identity=r.get(d, "identity", identity, None),
        servers=r.get(d, "servers", lambda x: _servers(r, x), ()),
        srv=r.get(d, "srv", srv, None),
        budget=r.get(d, "budget", r.number(0.1, 30), c.budget),
        tries=r.get(d, "tries", r.integer(1, 5), c.tries),
        heartbeat=heartbeat,
        alive_after=alive_after,
    )
