"""The call record's contract with the PBX and the bridge: the rendered configs give every
call its ID and the events the record needs; the route request carries the ID; coverage
gaps and the heartbeat file."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ccbridge import variables as v
from ccbridge.agi.codec import AgiRequest
from ccbridge.agi.handlers import call_request
from ccbridge.app import Bridge
from ccbridge.config import Config, load_config
from ccbridge.records import alive
from ccbridge.records.gaps import CoverageGaps
from ccbridge.records.machine import BRIDGE_EVENTS, CEL, HOLD_EVENTS, QUEUE_EVENTS, USER_EVENTS
from ccbridge.render import render_site

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False)


def test_cel_sends_only_linkedid_end_over_ami(config: Config) -> None:
    files = render_site(config, config.site("bangalore"))
    cel = files["cel.conf"]
    assert re.search(r"^enable=yes$", cel, re.M) and re.search(r"^events=LINKEDID_END$", cel, re.M)
    assert re.search(r"^apps=$", cel, re.M)
    assert "[manager]\nenabled=yes" in cel
    assert "load => cel_manager.so" in files["modules.conf"]
    manager = files["manager.conf"]
    assert "timestampevents=yes" in manager and f"channelvars={v.CALLID}" in manager
    # the events no part reads are not made at all (every priority and variable set of
    # every call made one: BENCHMARKS §1e)
    assert re.search(r"^disabledevents=Newexten,VarSet$", manager, re.M)


def test_every_call_gets_its_id_before_routing_and_keeps_it_across_sites(config: Config) -> None:
    text = render_site(config, config.site("bangalore"))["extensions.conf"]
    inbound = text.split("[ccb-inbound]")[1].split("\n[")[0]
    firsts = re.findall(r"^exten => ([^,]+),1,(.*)$", inbound, re.M)
    assert firsts and all(app.startswith(f"Set(__{v.CALLID}=bangalore:") for _, app in firsts)
    assert f"callid=${{{v.CALLID}}}" in text.split("[ccb-route]")[1].split("\n[")[0]
    predial = text.split("[ccb-predial]")[1].split("\n[")[0]
    assert f"PJSIP_HEADER(add,{v.HEADER_CALLID})=${{{v.CALLID}}}" in predial
    from_site = text.split("[ccb-from-site]")[1].split("\n[")[0]
    assert f"Set(__{v.CALLID}=${{PJSIP_HEADER(read,{v.HEADER_CALLID})}})" in from_site
    fallback = text.split("[ccb-fallback]")[1].split("\n[")[0]
    assert (
        fallback.count(f'ExecIf($["${{{v.CALLID}}}"=""]?Set(__{v.CALLID}=')
        == fallback.count(f"UserEvent({v.EVENT_FALLBACK},")
        > 0
    )
    queue = text.split("[ccb-queue]")[1].split("\n[")[0]
    assert queue.count("Queue(") == queue.count(f"UserEvent({v.EVENT_QUEUE_EXIT},")


def test_the_route_request_carries_the_call_id_and_the_channel() -> None:
    req = AgiRequest.from_env(
        {
            "agi_network_script": (
                "route?site=bangalore&lang=&service=&callid=bangalore:1795897305.383234:2"
            ),
            "agi_extension": "+918000000001",
            "agi_callerid": "+919812345678",
            "agi_uniqueid": "bangalore-1795897305.2",
        }
    )
    call = call_request(req)
    assert call.call_id == "bangalore:1795897305.383234:2"
    assert call.uniqueid == "bangalore-1795897305.2"


def test_the_bridge_reads_every_record_event_only_with_a_store(config: Config) -> None:
    without = Bridge(config)
    assert without.records is None
    names = without.bus.names()
    assert CEL not in names and "BridgeLeave" not in names
    with_store = Bridge(replace(config, store=replace(config.store, enabled=True)))
    assert with_store.records is not None
    assert {*QUEUE_EVENTS, *HOLD_EVENTS, *BRIDGE_EVENTS, CEL} <= with_store.bus.names()
    assert set(USER_EVENTS) <= with_store.bus.user_event_names()
    assert "CEL" in with_store.bus.ami_filter() and v.EVENT_SURVEY in USER_EVENTS


def test_a_gap_opens_once_and_closes_with_its_own_key() -> None:
    gaps = CoverageGaps()
    assert gaps.down("dhaka", T0) == [("coverage_gaps", {"site": "dhaka", "started_at": T0})]
    assert gaps.down("dhaka", T0 + timedelta(seconds=5)) == []  # still the same gap
    back = T0 + timedelta(seconds=9)
    assert gaps.up("dhaka", back) == [
        ("coverage_gaps", {"site": "dhaka", "started_at": T0, "ended_at": back})
    ]
    assert gaps.up("dhaka", back) == []  # nothing open
    assert [r[1]["site"] for r in gaps.all_down(["a", "b"], back)] == ["a", "b"]


def test_the_heartbeat_file(tmp_path: Path) -> None:
    path = alive.path_for(tmp_path / "records.journal")
    assert alive.read(path) is None  # a first start: no gap to open
    alive.write(path, T0)
    assert alive.read(path) == T0
    for garbage in ("", "x", "-5", "1e300", "\x00"):
        path.write_text(garbage)
        assert alive.read(path) is None
