"""Staffing as the live state sees it: agents logged in and not paused, per queue."""

from __future__ import annotations

from ccbridge.routing.state import LiveState

__all__ = ["live_staff"]


def live_staff(state: LiveState) -> dict[tuple[str, str], int]:
    """(site, queue) -> agents logged in and not paused. A site whose AMI link is down
    staffs nothing: whoever sits there cannot be sent a call."""
    out: dict[tuple[str, str], int] = {}
    for name, site in state.sites.items():
        if not site.up:
            continue
        for qname, q in site.queues.items():
            out[(name, qname)] = max(q.logged_in - q.paused, 0)
    return out
