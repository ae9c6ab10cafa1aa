"""Rendering the dialplan templates: the contract with the code and the static fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccbridge import variables
from ccbridge.config import Config, load_config
from ccbridge.deploy.sourcemap import render_site_mapped
from ccbridge.deploy.static import variable_findings
from ccbridge.render import TEMPLATE_FILES, fallback_for, render_all, render_site

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> Config:
    mp = pytest.MonkeyPatch()
    mp.setenv("CCBRIDGE_AMI_SECRET", "s3cret-ami")
    mp.setenv("CCBRIDGE_API_TOKEN", "tok")
    try:
        return load_config(REPO / "examples" / "lab.yaml")
    finally:
        mp.undo()


def test_every_site_gets_every_file(config: Config, tmp_path: Path) -> None:
    written = render_all(config, tmp_path)
    # + haproxy.cfg: the lab config turns the AGI guard on; + the SIP edge's two files
    # (the lab config has an `edge:` section, turned off: rendered all the same)
    assert len(written) == len(config.sites) * (len(TEMPLATE_FILES) + 1) + 2
    manager = tmp_path / "dhaka" / "manager.conf"
    assert manager.stat().st_mode & 0o777 == 0o600
    assert "secret=s3cret-ami" in manager.read_text()
    assert "bindaddr=127.0.2.1" in manager.read_text()


def test_dialplan_uses_only_variables_the_code_defines(config: Config) -> None:
    # the check `ccbridge render --verify` runs (ccbridge/deploy/static.py): every CCB_
    # name is in ccbridge/variables.py, a numbered family of it, or a [globals] of its own
    for site in config.sites:
        files = render_site_mapped(config, site)
        assert variable_findings(files, site.name) == []
        text = files["extensions.conf"].text
        for name in (variables.ROUTE, variables.QUEUE, variables.TRUNK_COUNT, variables.DID):
            assert name in text


def test_every_inbound_call_asks_the_bridge_then_falls_back(config: Config) -> None:
    text = render_site(config, config.site("bangalore"))["extensions.conf"]
    assert "AGI(${CCB_AGI_URL}?site=bangalore" in text
    assert (
        'GotoIf($["${AGISTATUS}"!="SUCCESS" | "${CCB_ROUTE}"=""]?ccb-fallback,${EXTEN},1)' in text
    )
    assert "exten => +918000000001,1,Set(__CCB_FALLBACK=1)" in text
    # the lab config turns the AGI guard on: the site's own HAProxy, not the bridge
    assert "CCB_AGI_URL=agi://127.0.1.1:4580/route" in text


def test_trunks_fail_over_only_on_unavailable_or_congestion(config: Config) -> None:
    text = render_site(config, config.site("bangalore"))["extensions.conf"]
    assert '"${DIALSTATUS}"="CHANUNAVAIL" | "${DIALSTATUS}"="CONGESTION"' in text
    assert "BUSY" not in text.split("[ccb-dial-trunks]")[1].split("[ccb-predial]")[0]


def test_fallback_prefers_the_local_queue_in_the_numbers_language(config: Config) -> None:
    blr = config.site("bangalore")
    number = config.number("+918000000001")
    assert number is not None
    fb = fallback_for(config, blr, number)
    assert fb is not None and fb.queue == "orders-hi" and fb.trunks == ()


def test_fallback_crosses_a_trunk_when_the_site_does_not_serve_the_service(config: Config) -> None:
    # Dhaka does not serve returns in English or Hindi; Bangalore's number for returns
    # received at dhaka would go over the trunk to the home site.
    from dataclasses import replace

    number = config.number("+918000000002")
    assert number is not None
    moved = replace(number, site="manila")
    cfg = replace(config, numbers=(*config.numbers, moved))
    fb = fallback_for(cfg, cfg.site("manila"), moved)
    assert fb is not None
    assert fb.queue == "returns-en"  # manila serves returns in English itself
    only_home = replace(
        cfg,
        sites=tuple(
            replace(s, offerings=tuple(o for o in s.offerings if o.service != "returns"))
            if s.name == "manila"
            else s
            for s in cfg.sites
        ),
    )
    fb = fallback_for(only_home, only_home.site("manila"), moved)
    assert fb is not None and fb.trunks == ("mnl-blr",) and fb.queue == "returns-hi"


def test_queues_and_members_are_rendered(config: Config) -> None:
    text = render_site(config, config.site("dhaka"))["queues.conf"]
    assert "[orders-bn]" in text and "[orders-en]" in text and "[returns-bn]" in text
    assert "member => PJSIP/dac-agent2,0,dac-agent2" in text


def test_pjsip_identifies_peers_and_carriers_by_address(config: Config) -> None:
    text = render_site(config, config.site("dhaka"))["pjsip.conf"]
    assert "bind=127.0.2.1:5060" in text
    assert "[dac-blr-identify]" in text and "match=127.0.1.1" in text
    assert "direct_media=no" in text and "send_connected_line=no" in text


def test_a_template_typo_fails_loudly(config: Config, tmp_path: Path) -> None:
    import jinja2

    for name in TEMPLATE_FILES:
        (tmp_path / f"{name}.j2").write_text((REPO / "dialplans" / f"{name}.j2").read_text())
    (tmp_path / "rtp.conf.j2").write_text("rtpstart={{ site.rtp_strat }}\n")
    with pytest.raises(jinja2.UndefinedError):
        render_site(config, config.sites[0], tmp_path)


def test_held_routes_are_read_before_and_after_asking_the_bridge(config: Config) -> None:
    from dataclasses import replace

    from ccbridge.config.model import HeldRouteSettings
    from ccbridge.routing.held import inbound_variants, routes_at

    blr = config.site("bangalore")

    def routing(**kw: object) -> Config:
        held = replace(HeldRouteSettings(), **kw)  # type: ignore[arg-type]
        return replace(config, routing=replace(config.routing, held_routes=held))

    text = render_site(routing(use_without_bridge=True), blr)["extensions.conf"]
    inbound = _section(text, "ccb-inbound")
    # A number without a menu: two steps per caller prefix (the caller-ID pattern is the
    # language resolver): the call ID, then the route step the bridge replaces with the
    # held route (routing/held.py fresh_steps); as rendered it asks the bridge.
    bengali = inbound.split("exten => +918000000001/_+880.,1,")[1].split("exten =>")[0]
    steps = [s for s in bengali.strip().splitlines() if not s.startswith(";")]
    assert steps[0].startswith("Set(__CCB_CALLID=bangalore:${STRFTIME(")
    assert steps[1] == " same => n,Goto(ccb-route,${EXTEN},1)" and len(steps) == 2
    # nothing hand-writable is read on the way: no FILTER, no CUT, no held global
    assert "FILTER" not in bengali and "CCB_H_" not in bengali and "DB(" not in bengali
    assert "exten => +918000000001/_00880.,1," in inbound
    # Every extension the bridge writes into is rendered, its language per the patterns.
    for var in inbound_variants(config, blr):
        assert f"exten => {var.extension},1,Set(__CCB_CALLID=" in inbound, var
    # The number's own language for callers no prefix decides.
    assert "exten => +918000000001,1,Set(__CCB_CALLID=" in inbound
    menu = inbound.split("exten => +918000000003,1,")[1].split("exten =>")[0]
    assert "Goto(ccb-ivr-entry,${EXTEN},1)" in menu  # a menu
    route = _section(text, "ccb-route")
    agi = route.index("n(ask),AGI(${CCB_AGI_URL}")
    fallback = route.index("?ccb-held-last,")
    static = route.index("?ccb-fallback,${EXTEN},1)")
    # IVR callers' fresh step: through ccb-held-fresh, which marks the route source
    assert route.index("?ccb-held-fresh,") < agi < fallback < static
    # asked: not held; the number, the route cleared and the held language in one step
    assert "n,MSet(__CCB_DID=${EXTEN},CCB_ROUTE=,CCB_HELD_LANGUAGE=${IF(" in route
    fresh = _section(text, "ccb-held-fresh")
    assert "CCB_HL_+918000000001=hi" in text
    # Every route a value may name is an extension of ccb-held (a queue's through the
    # included ccb-queue); anything else lands on `i`.
    held = _section(text, "ccb-held")
    assert "include => ccb-queue" in held and "\nexten => i,1,UserEvent(CcbHeldRejected" in held
    queues = _section(text, "ccb-queue")
    last = _section(text, "ccb-held-last")
    for r in routes_at(config, blr):
        assert f"exten => {r.id},1," in ("\n".join((held, queues))), r.id
        assert f"exten => {r.id},1,Set(CCB_HELD=fallback)" in last
        assert f"exten => {r.id},1,Set(__CCB_HELD=fresh)" in fresh
    assert "exten => remote.dhaka.orders-bn.blr-dac,1,MSet(" in held

    # The default (measured, BENCHMARKS §1) takes held routes; off: ask first, the held
    # route when the bridge does not answer.
    assert render_site(routing(), blr)["extensions.conf"] == text
    ask_first = render_site(routing(use_without_bridge=False), blr)["extensions.conf"]
    first = _section(ask_first, "ccb-inbound").split("exten => +918000000001,1,")[1]
    assert first.split("exten =>")[0].strip().endswith("Goto(ccb-route,${EXTEN},1)")
    assert "?ccb-held," not in _section(ask_first, "ccb-route")
    assert "?ccb-held-last," in ask_first
    off = render_site(routing(enabled=False), blr)["extensions.conf"]
    assert "ccb-held" not in off and "CCB_H" not in off


def _section(text: str, name: str) -> str:
    """The lines of the first [name] section of a rendered config."""
    start = text.index(f"[{name}]\n")
    end = text.find("\n[", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_a_site_listens_on_its_alternate_addresses_too(config: Config) -> None:
    text = render_site(config, config.site("dhaka"))["pjsip.conf"]
    alt = _section(text, "transport-udp-alt1")
    assert "protocol=udp" in alt and "bind=127.0.2.1:5062" in alt
    # Endpoints keep sending from the main transport.
    assert "transport=transport-udp-alt1" not in text
    assert "transport-udp-alt" not in render_site(config, config.site("manila"))["pjsip.conf"]


def test_two_trunks_to_one_peer_never_claim_the_same_caller(config: Config) -> None:
    text = render_site(config, config.site("bangalore"))["pjsip.conf"]
    first = text.index("; ---- Inter-site trunk blr-dac:")
    second = text.index("; ---- Inter-site trunk blr-dac-2:")
    assert "contact=sip:127.0.2.1:5060" in text[first:second]
    assert "contact=sip:127.0.2.1:5062" in text[second : text.index("; ---- Inter", second + 1)]
    assert "match=127.0.2.1" in _section(text, "blr-dac-identify")
    assert "[blr-dac-2-identify]" not in text
    assert text.count("match=127.0.2.1\n") == 1


def test_carrier_identity_is_rendered_per_carrier(config: Config) -> None:
    from dataclasses import replace

    from ccbridge.config.model import CarrierPrivacy

    text = render_site(config, config.site("bangalore"))["pjsip.conf"]
    pstn1 = _section(text, "blr-pstn1")
    assert "send_pai=yes" in pstn1 and "send_rpid=no" in pstn1
    assert "trust_id_outbound=no" in pstn1
    trunks = tuple(
        replace(t, pai=False, rpid=True, privacy=CarrierPrivacy.ASSERT)
        if t.name == "blr-pstn2"
        else t
        for t in config.trunks
    )
    text = render_site(replace(config, trunks=trunks), config.site("bangalore"))["pjsip.conf"]
    pstn2 = _section(text, "blr-pstn2")
    assert "send_pai=no" in pstn2 and "send_rpid=yes" in pstn2
    assert "trust_id_outbound=yes" in pstn2
