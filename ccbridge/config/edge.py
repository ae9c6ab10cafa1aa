"""The `edge:` section: Kamailio in front of the sites, spreading carriers' calls over them."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ccbridge.config.model import HostPort, Site
from ccbridge.config.reader import Reader

# `ccbridge render` writes the edge's files to OUT/EDGE_DIR, beside OUT/SITE for each site.
EDGE_DIR = "edge"


class EdgeAlgorithm(StrEnum):
    """How the edge picks the first site for a call (Kamailio dispatcher algorithms)."""

    ROUND_ROBIN = "round_robin"  # 4: spread over every site that serves the number
    PRIORITY = "priority"  # 8: the number's own site first, the others in config order

    @property
    def dispatcher(self) -> int:
        return 4 if self is EdgeAlgorithm.ROUND_ROBIN else 8


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Kamailio as the SIP edge (rendered kamailio.cfg + dispatcher.list); the bridge
    keeps its view of the sites right over JSON-RPC on the loopback ``rpc`` listener."""

    sip: HostPort  # where carriers send calls (UDP); the sites see calls come from here
    rpc: HostPort  # JSON-RPC over HTTP (xhttp has no authentication: loopback only)
    enabled: bool = True
    # Networks allowed to send calls to the edge; () accepts any source.
    carrier_sources: tuple[str, ...] = ()
    algorithm: EdgeAlgorithm = EdgeAlgorithm.ROUND_ROBIN
    probe_interval: int = 2  # seconds between the edge's OPTIONS probes of each site
    # No reply at all from a site for this long: the same call goes to the next site.
    invite_timeout: float = 1.5
    # After a site's first reply, how long the call may wait for its final answer (a
    # call ringing in a queue): longer than any queue's max_wait.
    ring_timeout: float = 330.0
    rpc_timeout: float = 1.0  # seconds for one JSON-RPC request from the bridge
    # Every site's state is sent again this often (an edge restarted forgets it).
    resync: float = 5.0
    children: int = 4  # Kamailio's UDP worker processes
    install_dir: str = "/etc/kamailio"  # where kamailio.cfg finds dispatcher.list

    @property
    def rpc_url(self) -> str:
        return f"http://{self.rpc}/RPC"


_KEYS = {
    "enabled",
    "sip",
    "rpc",
    "carrier_sources",
    "algorithm",
    "probe_interval",
    "invite_timeout",
    "ring_timeout",
    "rpc_timeout",
    "resync",
    "children",
    "install_dir",
}


def parse_edge(r: Reader, v: Any, sites: Mapping[str, Site]) -> EdgeSettings | None:
    """`edge: false` (or absent) is off; a mapping describes the edge."""
    if v is False:
        return None
    d = r.mapping(v, _KEYS, {"sip", "rpc"})
    sip = r.req(d, "sip", r.host_port())
    rpc = r.req(d, "rpc", r.host_port())
    with r.at("sip", d):
        if _ipv4(sip.host) is None:
            raise r.fail(
                f"expected an IPv4 address (the sites identify the edge's calls by it), "
                f"not '{sip.host}'"
            )
    with r.at("rpc", d):
        address = _ipv4(rpc.host)
        if address is None or not address.is_loopback:
            raise r.fail(
                f"the JSON-RPC listener has no authentication: it must be on a loopback "
                f"address (127.0.0.0/8), not '{rpc.host}'"
            )
        if rpc == sip:
            raise r.fail(f"{rpc} is the edge's SIP address: the RPC listener needs its own port")
    with r.at("sip", d):
        for site in sites.values():
            if sip in site.sip_addresses:
                raise r.fail(f"{sip} is site {site.name}'s own SIP address")
    if EDGE_DIR in sites:
        with r.at("sip", d):
            raise r.fail(f"a site named '{EDGE_DIR}' clashes with the edge's render folder")
    install = r.get(d, "install_dir", r.string, "/etc/kamailio")
    if not install.startswith("/") or '"' in install:
        with r.at("install_dir", d):
            raise r.fail(f"expected an absolute path without quotes, got '{install}'")
    got = r.given(
        d,
        {
            "enabled": r.boolean,
            "carrier_sources": r.str_list(r.ip),
            "algorithm": r.one_of({a.value: a for a in EdgeAlgorithm}, "algorithm"),
            "probe_interval": r.integer(1, 3600),
            "invite_timeout": r.number(0.1, 32),
            "ring_timeout": r.number(1, 3600),
            "rpc_timeout": r.number(0.05, 30),
            "resync": r.number(0.5, 3600),
            "children": r.integer(1, 64),
        },
    )
    edge = EdgeSettings(sip=sip, rpc=rpc, install_dir=install, **got)
    if edge.ring_timeout < edge.invite_timeout:
        with r.at("ring_timeout", d):
            raise r.fail(f"{edge.ring_timeout:g}s is shorter than invite_timeout")
    _check_queue_waits(r, d, edge, tuple(sites.values()))
    return edge


def _check_queue_waits(r: Reader, d: Any, edge: EdgeSettings, sites: Sequence[Site]) -> None:
    """A call ringing in a queue has had its first reply: the edge must let it wait."""
    for site in sites:
        for o in site.offerings:
            if o.queue.max_wait >= edge.ring_timeout:
                with r.at("ring_timeout", d):
                    r.fail(
                        f"{edge.ring_timeout:g}s would cut calls waiting in {site.name}'s "
                        f"{o.service} queues (max_wait {o.queue.max_wait}s)"
                    )
                return


def _ipv4(host: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None
