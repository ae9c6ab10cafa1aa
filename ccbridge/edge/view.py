"""What the edge knows, derived once from the config: dispatcher sets, numbers, site URIs.

kamailio.cfg and dispatcher.list are rendered from it, and the bridge's driver uses the
same sets to tell the edge which sites take calls, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccbridge.config.edge import EdgeSettings
from ccbridge.config.model import Config, Number

# Kamailio dispatcher states (`dispatcher.set_state`): a site the bridge keeps out is
# *disabled*, not inactive: the edge's own probing re-activates an inactive destination
# as soon as it answers OPTIONS (a drained or held-off site does), never a disabled one.
STATE_ACTIVE = "a"
STATE_DISABLED = "d"


@dataclass(frozen=True, slots=True)
class DispatchSet:
    """One dispatcher set: the sites a group of numbers is spread over, first first."""

    id: int
    sites: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EdgeView:
    settings: EdgeSettings
    sets: tuple[DispatchSet, ...]
    numbers: tuple[tuple[str, int], ...]  # (did, set id), in config order
    uris: dict[str, str]  # site -> sip:HOST:PORT, the destination the edge sends to

    def sets_of(self, site: str) -> tuple[int, ...]:
        """The ids of the sets ``site`` is in: each needs its own set_state."""
        return tuple(s.id for s in self.sets if site in s.sites)

    @property
    def algorithm(self) -> int:
        return self.settings.algorithm.dispatcher


def serving_sites(config: Config, number: Number) -> tuple[str, ...]:
    """The sites a call to ``number`` may enter at: its own site, its home site, then
    every other site that offers its service (each asks the bridge where the call goes)."""
    first = [number.site] + ([number.home_site] if number.home_site else [])
    others = [s.name for s in config.sites if s.offering(number.service) is not None]
    return tuple(dict.fromkeys(first + others))


def edge_view(config: Config) -> EdgeView | None:
    """None without an edge; numbers sharing the same sites in the same order share a set."""
    edge = config.edge
    if edge is None:
        return None
    by_sites: dict[tuple[str, ...], int] = {}
    numbers = []
    for n in config.numbers:
        sites = serving_sites(config, n)
        set_id = by_sites.setdefault(sites, len(by_sites) + 1)
        numbers.append((n.did, set_id))
    sets = tuple(DispatchSet(i, sites) for sites, i in by_sites.items())
    uris = {s.name: f"sip:{s.sip.host}:{s.sip.port}" for s in config.sites}
    return EdgeView(edge, sets, tuple(numbers), uris)
