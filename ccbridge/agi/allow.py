"""Who may open a FastAGI session: the configured sites' addresses and `bridge.agi_allow`.

FastAGI has no authentication and no encryption in Asterisk: anyone who reaches the port
can ask for routes and feed the bridge made-up calls. The bridge therefore accepts it
only from the sites' own addresses (their SIP, TLS and AMI hosts; an AGI guard runs on a
site's host) and the networks listed in `bridge.agi_allow`; keep the port on a private
network as well.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ccbridge.config.model import Config

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourceAllowlist:
    """Addresses and networks; ``host in allowlist`` for a peer address as asyncio gives it."""

    __slots__ = ("_addresses", "_networks")

    def __init__(self, entries: Iterable[str]) -> None:
        networks: list[IPNetwork] = []
        for entry in entries:
            networks.append(ipaddress.ip_network(entry, strict=False))
        single = {n for n in networks if n.num_addresses == 1}
        self._addresses = frozenset(str(n.network_address) for n in single)
        self._networks = tuple(n for n in networks if n not in single)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        if host in self._addresses:  # the common case: one string lookup
            return True
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            mapped = address.ipv4_mapped  # a dual-stack listener shows IPv4 peers this way
            return str(mapped) in self._addresses or any(mapped in n for n in self._networks)
        return any(address in n for n in self._networks)

    def __repr__(self) -> str:
        shown = sorted(self._addresses) + [str(n) for n in self._networks]
        return f"SourceAllowlist({shown})"


def site_addresses(config: Config) -> tuple[str, ...]:
    """The sites' addresses that are IP literals (a host name would need a DNS look-up on
    every restart: list its address in `bridge.agi_allow` instead)."""
    hosts: list[str] = []
    for site in config.sites:
        hosts += [site.sip.host, site.ami.host, *(a.host for a in site.sip_alternates)]
        if site.sip_tls is not None:
            hosts.append(site.sip_tls.host)
    out = []
    for host in dict.fromkeys(hosts):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        out.append(host)
    return tuple(out)


def allowlist(config: Config) -> SourceAllowlist:
    return SourceAllowlist((*site_addresses(config), *config.bridge.agi_allow))
