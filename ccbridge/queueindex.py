"""What the config says about each queue of each site: the KPI tracker's labels and the
rollup's service levels. A module of its own so the record writer's child, which runs the
rollup, does not import the KPI tracker and prometheus_client with it (~2 MB of RSS)."""

from __future__ import annotations

from dataclasses import dataclass

from ccbridge.config.model import Config, queue_name


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """What the config says about one queue at one site."""

    service: str
    language: str
    servicelevel: int  # seconds: an answer within this counts towards the service level


def queue_index(config: Config) -> dict[tuple[str, str], QueueInfo]:
    """(site, queue) -> service, language and service-level threshold, for every offering."""
    out: dict[tuple[str, str], QueueInfo] = {}
    for site in config.sites:
        for o in site.offerings:
            for lang in o.languages:
                info = QueueInfo(o.service, lang, o.queue.servicelevel)
                out[(site.name, queue_name(o.service, lang))] = info
    return out
