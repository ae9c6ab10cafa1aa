"""What the services need from the running bridge, as protocols: no import of ccbridge.app."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, Protocol

from ccbridge.access.audit import AuditEvent
from ccbridge.agents import AgentMirror
from ccbridge.ami.client import LinkState
from ccbridge.ami.codec import AmiMessage
from ccbridge.clock import Clock
from ccbridge.config.model import Config, Trunk
from ccbridge.desk.live import LiveCalls
from ccbridge.recording.part import RecordingPart
from ccbridge.routing.engine import Router
from ccbridge.routing.state import LiveState
from ccbridge.routing.trunks import TrunkHealth
from ccbridge.screenpop.publisher import ScreenPop
from ccbridge.services.errors import ServiceError

ActionFields = Mapping[str, str | Sequence[str]]  # as SiteLink.action takes them


class AmiLink(Protocol):
    """One site's AMI link (ccbridge.ami.client.SiteLink), as far as the services use it."""

    @property
    def state(self) -> LinkState: ...

    @property
    def connected(self) -> bool: ...

    async def action(
        self,
        name: str,
        fields: ActionFields | None = ...,
        *,
        as_list: Literal[False],
        timeout: float | None = ...,  # noqa: ASYNC109 (SiteLink's per-action override)
    ) -> AmiMessage: ...


class TrunkNow(NamedTuple):
    """One trunk as the bridge sees it now; see ``Runtime.trunks_now``."""

    trunk: Trunk
    health: TrunkHealth
    usable: bool


class Runtime(Protocol):
    """The live parts of the bridge the services read and change (ccbridge.app.Bridge)."""

    config: Config
    state: LiveState  # the services replace it (drain) like the event reducer does
    clock: Clock
    router: Router
    agents: AgentMirror
    recording: RecordingPart | None  # `recording:` configured (with a store for its index)
    desk: LiveCalls  # calls and supervision sessions the desk may act on
    screen_pop: ScreenPop  # the pops' hub: what GET /api/v1/events subscribes to

    @property
    def links(self) -> Mapping[str, AmiLink]: ...

    def trunks_now(self) -> list[TrunkNow]:
        """Every configured trunk's health as of now and whether routes may use it."""
        ...

    def audit(self, event: AuditEvent) -> None:
        """Append to the audit trail (what the desk does besides answering a request)."""
        ...

    def readiness(self) -> dict[str, bool]:
        """Named checks, all True when the bridge can take calls."""
        ...

    def readiness_detail(self) -> dict[str, object]:
        """What /readyz shows beside the checks (the record database's state)."""
        ...


def connected_link(links: Mapping[str, AmiLink], site: str) -> AmiLink:
    """The site's AMI link, or 503 ``site-down``: checked before anything is sent, so a
    change asked of a site that is down fails the same way whatever it would have sent."""
    link = links.get(site)
    if link is None or not link.connected:
        raise ServiceError("site-down", f"site {site} is not connected", site=site)
    return link
