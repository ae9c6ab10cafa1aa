"""Parse `bridge.agi_guard` and `bridge.watchdog`; errors name file, line and key like the rest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ccbridge.config.model import AgiGuard, BridgeSettings, HostPort, Site, Watchdog
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
