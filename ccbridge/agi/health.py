"""FastAGI `health` route: the AGI guard's proof that the bridge's event loop answers."""

from __future__ import annotations

from ccbridge import variables
from ccbridge.agi.server import AgiSession

ROUTE = variables.AGI_HEALTH
# The guard (dialplans/haproxy.cfg.j2) sends a request for this path, expects this
# command back and answers it as Asterisk would. A bridge that accepts the connection
# but never writes (stopped, event loop blocked, partitioned) fails the check.
COMMAND = "NOOP ccbridge-alive"
REPLY = "200 result=0"


CHECK_URL = variables.agi_url("guard", ROUTE)


def check_request() -> str:
    """The FastAGI request header the guard sends, blank line included."""
    return (
        f"agi_network: yes\nagi_network_script: {ROUTE}\nagi_request: {CHECK_URL}\n"
        "agi_channel: ccb-guard-check\nagi_uniqueid: 0\n\n"
    )


async def health(session: AgiSession) -> None:
    await session.command(COMMAND)
