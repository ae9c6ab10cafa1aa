"""Sites: their live view, queues, trunks, readiness, maintenance drain and route previews."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

from ccbridge.logs import ctx
from ccbridge.routing.engine import CallRequest, Decision
from ccbridge.routing.state import ewt, set_drained
from ccbridge.services.errors import ServiceError
from ccbridge.services.ports import Runtime, TrunkNow

log = logging.getLogger("ccbridge.services.sites")


@dataclass(frozen=True, slots=True)
class SiteView:
    name: str
    timezone: str
    country: str
    up: bool
    synced: bool
    drained: bool
    up_since: float | None
    link: str | None  # the AMI link's state; None without a link (not started)


@dataclass(frozen=True, slots=True)
class QueueView:
    site: str
    queue: str
    logged_in: int
    available: int
    paused: int
    waiting: int
    expected_wait: float | None  # seconds; None when nobody can answer (infinite)
    avg_talk: float
    avg_hold: float
    completed: int
    abandoned: int


@dataclass(frozen=True, slots=True)
class Preview:
    at: datetime
    decision: Decision


class SiteService:
    """Reads and changes what the router knows about sites."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def readiness(self) -> dict[str, bool]:
        return self._rt.readiness()

    def readiness_detail(self) -> dict[str, object]:
        return self._rt.readiness_detail()

    def sites(self) -> tuple[list[SiteView], bool]:
        """Every configured site, and whether all of them are synced."""
        st = self._rt.state
        out = []
        for site in self._rt.config.sites:
            s = st.sites.get(site.name)
            link = self._rt.links.get(site.name)
            out.append(
                SiteView(
                    name=site.name,
                    timezone=site.timezone,
                    country=site.country,
                    up=bool(s and s.up),
                    synced=bool(s and s.synced),
                    drained=bool(s and s.drained),
                    up_since=s.up_since if s else None,
                    link=link.state.value if link else None,
                )
            )
        return out, st.synced

    def queues(self) -> list[QueueView]:
        out = []
        for name, s in self._rt.state.sites.items():
            for qname, q in sorted(s.queues.items()):
                e = ewt(q)
                out.append(
                    QueueView(
                        site=name,
                        queue=qname,
                        logged_in=q.logged_in,
                        available=q.available,
                        paused=q.paused,
                        waiting=q.waiting,
                        expected_wait=None if math.isinf(e) else round(e, 1),
                        avg_talk=q.avg_talk,
                        avg_hold=q.avg_hold,
                        completed=q.completed,
                        abandoned=q.abandoned,
                    )
                )
        return out

    def trunks(self) -> list[TrunkNow]:
        return self._rt.trunks_now()

    def set_drained(self, site: str, drained: bool) -> None:
        """Take a site out of routing for maintenance (or back); its calls in progress go on."""
        if site not in {s.name for s in self._rt.config.sites}:
            raise ServiceError("no-such-site", f"no site named {site!r}", site=site)
        self._rt.state = set_drained(self._rt.state, site, drained)
        log.warning("site %s", "drained" if drained else "undrained", extra=ctx(site=site))

    def preview(
        self,
        did: str,
        *,
        caller: str = "",
        at: datetime | None = None,
        language: str | None = None,
        site: str | None = None,
        service: str | None = None,
    ) -> Preview:
        """The decision the router would make for this call at ``at`` (default: the
        bridge's clock) over the live state; nothing is remembered."""
        now = self._rt.clock.now() if at is None else at
        call = CallRequest(
            did=did,
            caller=caller,
            receiving_site=site or self._receiving_site(did),
            ivr_language=language,
            service=service,
        )
        return Preview(now, self._rt.router.decide(call, self._rt.state, now))

    def _receiving_site(self, did: str) -> str:
        config = self._rt.config
        number = config.number(did)
        return number.site if number else (config.sites[0].name if config.sites else "")
