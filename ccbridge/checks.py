"""Deployment checks beyond the schema: every number has somewhere to go, trunks connect."""

from __future__ import annotations

from ccbridge.config.model import Config, TrunkKind
from ccbridge.render import fallback_for


def check_deployment(config: Config) -> list[str]:
    """Problems that would strand calls at run time, worded for a PBX admin."""
    problems: list[str] = []
    for n in config.numbers:
        site = config.site(n.site)
        if fallback_for(config, site, n) is None:
            problems.append(
                f"numbers.{n.did}: no static fallback: no site serving '{n.service}' is "
                f"reachable from {n.site} (add an intersite trunk or a queue at {n.site})"
            )
        serving = [s.name for s in config.sites if s.offering(n.service)]
        unreachable = [s for s in serving if s != n.site and not config.trunks_between(n.site, s)]
        for s in unreachable:
            problems.append(
                f"numbers.{n.did}: site {s} serves '{n.service}' but {n.site} has no "
                f"intersite trunk to it, so calls to this number can never overflow there"
            )
    for t in config.trunks:
        if t.kind is TrunkKind.INTERSITE and t.peer_site:
            peer = config.site(t.peer_site)
            if t.remote.host != peer.sip.host:
                problems.append(
                    f"trunks.{t.name}: remote {t.remote} is not site {peer.name}'s SIP "
                    f"address {peer.sip}; the far site will not recognise the calls"
                )
    return problems
