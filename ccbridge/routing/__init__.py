"""Pure routing core: schedules, language, live queue state and the routing decision."""

from ccbridge.routing.engine import CallRequest, Decision, Router, decide, remember
from ccbridge.routing.language import resolve_language
from ccbridge.routing.schedule import OpenState, is_open
from ccbridge.routing.state import (
    LiveState,
    QueueLoad,
    SiteState,
    apply_event,
    apply_events,
    begin_sync,
    complete_sync,
    ewt,
    initial_state,
    set_drained,
    set_site_up,
    set_sticky,
    set_trunk_health,
)

__all__ = [
    "CallRequest",
    "Decision",
    "LiveState",
    "OpenState",
    "QueueLoad",
    "Router",
    "SiteState",
    "apply_event",
    "apply_events",
    "begin_sync",
    "complete_sync",
    "decide",
    "ewt",
    "initial_state",
    "is_open",
    "remember",
    "resolve_language",
    "set_drained",
    "set_site_up",
    "set_sticky",
    "set_trunk_health",
]
