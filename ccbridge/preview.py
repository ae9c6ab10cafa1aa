"""`ccbridge preview`: the decision for one call at one instant, from config and optional state."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccbridge.config.model import Config
from ccbridge.routing.engine import CallRequest, Router
from ccbridge.routing.state import LiveState, QueueLoad, SiteState


def state_from_json(data: dict[str, Any], config: Config, ts: float) -> LiveState:
    """A LiveState from {"sites": {NAME: {"up": bool, "drained": bool, "queues": {Q: {...}}}}}.

    Sites missing from the file are up; a file with queue data makes the state synced, so
    staffing and load count; without it the engine routes by schedule alone.
    """
    raw_sites = data.get("sites", {})
    if not isinstance(raw_sites, dict):
        raise ValueError("state file: 'sites' must be an object")
    unknown = set(raw_sites) - {s.name for s in config.sites}
    if unknown:
        raise ValueError(f"state file: unknown sites {sorted(unknown)}")
    sites: dict[str, SiteState] = {}
    any_queues = False
    for site in config.sites:
        raw = raw_sites.get(site.name, {})
        queues: dict[str, QueueLoad] = {}
        for qname, q in (raw.get("queues") or {}).items():
            any_queues = True
            logged_in = int(q.get("logged_in", 0))
            queues[qname] = QueueLoad(
                logged_in=logged_in,
                available=int(q.get("available", logged_in)),
                paused=int(q.get("paused", 0)),
                waiting=int(q.get("waiting", 0)),
                member_count=logged_in,
                avg_talk=float(q.get("avg_talk", 0.0)),
                avg_hold=float(q.get("avg_hold", 0.0)),
            )
        up = bool(raw.get("up", True))
        sites[site.name] = SiteState(
            site.name,
            up=up,
            drained=bool(raw.get("drained", False)),
            up_since=ts - 86_400 if up else None,
            synced=any_queues,
            queues=queues,
        )
    return LiveState(sites=sites, synced=any_queues)


def preview(
    config: Config,
    *,
    did: str,
    caller: str = "",
    at: str | None = None,
    language: str | None = None,
    state_file: str | None = None,
    site: str | None = None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    if at:
        try:
            now = datetime.fromisoformat(at)
        except ValueError:
            raise ValueError(f"--at is not ISO 8601: {at!r}") from None
        if now.tzinfo is None:
            raise ValueError("--at needs an offset or Z, e.g. 2026-12-25T03:00:00Z")
    data: dict[str, Any] = {}
    if state_file:
        try:
            data = json.loads(Path(state_file).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read state file {state_file}: {exc}") from None
    state = state_from_json(data, config, now.timestamp())
    number = config.number(did)
    receiving = site or (number.site if number else config.sites[0].name)
    call = CallRequest(did=did, caller=caller, receiving_site=receiving, ivr_language=language)
    decision = Router(config).decide(call, state, now)
    return {
        "at": now.isoformat(),
        "call": {"did": did, "receiving_site": receiving},
        "decision": decision.as_dict(),
    }
