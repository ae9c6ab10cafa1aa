"""Outbound calls and callbacks: which site, which carrier trunks in order, which caller ID."""

from __future__ import annotations

from dataclasses import dataclass

from ccbridge.config.model import Config, NumberKind
from ccbridge.routing.state import LiveState


@dataclass(frozen=True, slots=True)
class OutboundPlan:
    site: str | None
    trunks: tuple[str, ...]
    caller_id: str | None
    country: str | None
    reasons: tuple[str, ...]

    @property
    def possible(self) -> bool:
        return self.site is not None and bool(self.trunks)


def destination_country(config: Config, number: str) -> str | None:
    """The country of an E.164 number by the longest configured calling code."""
    digits = number[1:] if number.startswith("+") else number.removeprefix("00")
    best: tuple[int, str] | None = None
    for c in config.countries:
        if digits.startswith(c.calling_code) and (best is None or len(c.calling_code) > best[0]):
            best = (len(c.calling_code), c.code)
    return best[1] if best else None


def caller_id_for(config: Config, site: str, country: str | None) -> str | None:
    """The site's local presentation number for a destination country.

    In order: a number at the site that lists the country in `caller_id_for`, then a local
    (not toll-free) number of that country at the site. None: the carrier's default.
    """
    mine = [n for n in config.numbers if n.site == site]
    for n in mine:
        if country in n.caller_id_for:
            return n.did
    for n in mine:
        if n.country == country and n.kind is NumberKind.LOCAL:
            return n.did
    return None


def plan_outbound(
    config: Config, state: LiveState, to: str, site: str | None = None
) -> OutboundPlan:
    """Pick the site (given, or the first up site with a carrier for the destination),
    its carrier trunks for that country in order (healthy ones first), and a caller ID."""
    country = destination_country(config, to)
    candidates = [site] if site else [s.name for s in config.sites]
    reasons: list[str] = []
    for name in candidates:
        s = state.sites.get(name)
        if s is None or not s.up:
            reasons.append(f"{name}:site_down")
            continue
        if s.drained:
            reasons.append(f"{name}:drained")
            continue
        trunks = [
            t.name
            for t in config.carrier_trunks(name)
            if not t.countries or (country is not None and country in t.countries)
        ]
        if not trunks:
            reasons.append(f"{name}:no_carrier")
            continue
        healthy = [t for t in trunks if t not in state.unhealthy_trunks]
        # Unhealthy trunks stay at the end: a failing attempt beats no attempt at all.
        ordered = tuple(healthy + [t for t in trunks if t not in healthy])
        if len(healthy) < len(trunks):
            reasons.append("unhealthy_trunks_last")
        cid = caller_id_for(config, name, country)
        reasons.append("local_caller_id" if cid else "no_local_caller_id")
        return OutboundPlan(name, ordered, cid, country, tuple(reasons))
    return OutboundPlan(None, (), None, country, tuple(reasons) or ("no_site",))
