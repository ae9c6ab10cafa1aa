"""FastAGI `health` route: the AGI guard's proof that the bridge's event loop answers and
that the bridge has synced the sites it can reach."""

from __future__ import annotations

from collections.abc import Callable

from ccbridge import variables
from ccbridge.agi.codec import AgiRequest
from ccbridge.agi.server import Script, ScriptHandler, script

ROUTE = variables.AGI_HEALTH
# The guard (dialplans/haproxy.cfg.j2) sends a request for this path, expects this
# command back and answers it as Asterisk would. A bridge that accepts the connection
# but never writes (stopped, event loop blocked, partitioned) fails the check.
COMMAND = "NOOP ccbridge-alive"
REPLY = "200 result=0"
# Said instead while the bridge has not yet synced every site it reaches (just started or
# restarted): the guard's check does not match it, so the guard keeps the bridge out of
# service and calls take the other bridges or the dialplan's fallbacks, not a route
# decided on empty queue state.
SYNCING = "NOOP ccbridge-syncing"


CHECK_URL = variables.agi_url("guard", ROUTE)


def check_request() -> str:
    """The FastAGI request header the guard sends, blank line included."""
    return (
        f"agi_network: yes\nagi_network_script: {ROUTE}\nagi_request: {CHECK_URL}\n"
        "agi_channel: ccb-guard-check\nagi_uniqueid: 0\n\n"
    )


def health_route(ready: Callable[[], bool]) -> ScriptHandler:
    """The route handler: COMMAND once ``ready()`` (the bridge's first sync of every
    reachable site is done), SYNCING before."""

    def health(request: AgiRequest) -> Script:
        yield COMMAND if ready() else SYNCING

    return script(health)
