"""Shared values defined once: AGI route names, outcomes and reasons, the number masker."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from ccbridge import variables as v
from ccbridge.app import Bridge
from ccbridge.config import load_config
from ccbridge.render import render_site
from ccbridge.routing.reasons import AFTER_HOURS_REASON, HOME_REASON, Outcome, Reason, Skip

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "ccbridge"


def lab_bridge() -> Bridge:
    return Bridge(load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False))


def test_one_number_masker_in_the_package() -> None:
    defs = [
        f"{p.relative_to(REPO)}:{i}"
        for p in sorted(PACKAGE.rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.match(r"\s*def mask_number\b", line)
    ]
    assert len(defs) == 1 and defs[0].startswith("ccbridge/logs.py:"), defs


def test_agi_route_names_are_the_bridges_handlers_and_the_dialplans_urls() -> None:
    bridge = lab_bridge()
    assert set(bridge.agi._handlers) == set(v.AGI_ROUTES)
    config = bridge.config
    files = render_site(config, config.sites[0])
    text = "\n".join(files.values())
    urls = set(re.findall(r"agi://[^/\s]+/([a-z]+)", text))
    assert urls == set(v.AGI_ROUTES)
    # The FastAGI metrics exist from the start for exactly these routes.
    exposition = generate_latest(bridge.registry).decode()
    routes = set(re.findall(r'ccbridge_fastagi_session_seconds_count\{route="([^"]+)"', exposition))
    assert routes == set(v.AGI_ROUTES)


def test_every_skip_has_a_home_reason_and_reasons_are_unique() -> None:
    assert set(HOME_REASON) == set(Skip)
    assert set(AFTER_HOURS_REASON) <= set(Skip)
    assert len({r.value for r in Reason}) == len(Reason)
    # A home reason never reads like another site's skip reason.
    assert not {r.value for r in Reason} & {s.value for s in Skip}
    assert [o.value for o in Outcome] == ["queue", "after_hours", "reject"]
