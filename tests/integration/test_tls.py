"""Encryption in transit on the lab: bangalore and manila talk AMI over TLS with the bridge
and SIP over TLS with SRTP with each other (ccbridge.lab.tls); Asterisk itself says so."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from ccbridge.ami.client import SiteLink
from ccbridge.config import Config
from ccbridge.config.model import AmiTls
from ccbridge.lab.sipp import Agent, place_calls
from ccbridge.lab.sites import Lab
from ccbridge.lab.tls import LAB_TLS_SITES, make_ca
from tests.integration.conftest import AmiRecorder, BridgeFactory
from tests.polling import until

# Wednesday 25 Nov 2026, 10:30 in Bangalore: a Tagalog speaker on bangalore's Indian orders
# number goes to manila (the only site with orders in Tagalog), over the blr-mnl trunk.
WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
ORDERS_IN = "+918000000001"
TAGALOG_CALLER = "+639171234567"


def _channels(ami: AmiRecorder, site: str, prefix: str) -> list[str]:
    return [
        e["Channel"]
        for e in ami.named("Newchannel", site)
        if e.get("Channel", "").startswith(prefix)
    ]


async def _getvar(link: SiteLink, channel: str, variable: str) -> str:
    reply = await link.action("Getvar", {"Channel": channel, "Variable": variable})
    return reply.get("Value", "")


async def test_a_call_from_bangalore_to_manila_runs_over_tls_with_srtp(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder, bridge_at: BridgeFactory
) -> None:
    assert set(LAB_TLS_SITES) == {s.name for s in lab.config.sites if s.tls}
    async with bridge_at(WEDNESDAY_MORNING) as bridge:
        # The bridge's own links: TLS to the pair, plain to dhaka.
        for site in LAB_TLS_SITES:
            assert bridge.links[site].tls_version in ("TLSv1.2", "TLSv1.3"), site
            assert bridge.links[site].settings.link_port == 5039
        assert bridge.links["dhaka"].tls_version is None
        # A freshly started site qualifies its TLS trunk once the TLS connection is up:
        # until then the bridge would rightly send the caller elsewhere.
        await until(
            lambda: all(t.up for t in bridge.trunk_snapshots() if t.name in ("blr-mnl", "mnl-blr")),
            15,
            "the TLS trunks between bangalore and manila qualified",
        )

        call = asyncio.create_task(
            asyncio.to_thread(
                place_calls,
                "127.0.1.1:5060",
                ORDERS_IN,
                caller=TAGALOG_CALLER,
                calls=1,
                duration_ms=4000,
                local_port=6170,
                max_seconds=30,
            )
        )
        await ami.wait_for(
            lambda: any(e.get("Queue") == "orders-tl" for e in ami.named("AgentConnect", "manila")),
            within=15,
            what="manila's agent answering the Tagalog call",
        )
        inbound = _channels(ami, "manila", "PJSIP/mnl-blr-")
        outbound = _channels(ami, "bangalore", "PJSIP/blr-mnl-")
        assert len(inbound) == 1 and len(outbound) == 1, (inbound, outbound)
        # Asterisk's own view of both legs of the trunk while the call is up: signalling on
        # a secure (TLS) transport, media encrypted (SRTP).
        for site, channel in (("manila", inbound[0]), ("bangalore", outbound[0])):
            link = bridge.links[site]
            assert await _getvar(link, channel, "CHANNEL(pjsip,secure)") == "1", site
            assert await _getvar(link, channel, "CHANNEL(rtp,secure,audio)") == "1", site
        # ... from bangalore (the far end's TLS port) to manila, from bangalore's address.
        target = await _getvar(bridge.links["bangalore"], outbound[0], "CHANNEL(pjsip,target_uri)")
        assert "127.0.3.1:5061" in target and "transport=tls" in target.lower(), target
        remote = await _getvar(bridge.links["manila"], inbound[0], "CHANNEL(pjsip,remote_addr)")
        assert remote.startswith("127.0.1.1:"), remote
        result = await call
        assert result.ok, result.output[-2000:]
        # And the trunk's contact as pjsip itself lists it: manila's TLS port (the column
        # cuts the URI's `;transport=tls`), qualified over TLS and reachable (Avail).
        contacts = await asyncio.to_thread(
            lab.cli, lab.config.site("bangalore"), "pjsip show contacts"
        )
        line = next((x for x in contacts.splitlines() if "blr-mnl/" in x), "")
        assert "blr-mnl/sip:127.0.3.1:5061" in line and "Avail" in line, contacts


async def test_an_ami_certificate_not_verified_leaves_the_site_down(
    lab: Lab, lab_config: Config, tmp_path: Path
) -> None:
    """The bridge trusting another CA than the one that signed manila's certificate: manila
    stays down (no plain-text fallback to its port 5038), the other sites route."""
    other = await asyncio.to_thread(make_ca, tmp_path / "other-ca", "not the sites' CA")
    sites = []
    for site in lab_config.sites:
        if site.name == "manila":
            assert site.ami.tls is not None
            wrong = AmiTls(ca=str(other.cert), port=site.ami.tls.port)
            site = dataclasses.replace(site, ami=dataclasses.replace(site.ami, tls=wrong))
        sites.append(site)
    config = dataclasses.replace(lab_config, sites=tuple(sites))

    from ccbridge.app import Bridge
    from ccbridge.clock import Clock

    bridge = Bridge(config, Clock(WEDNESDAY_MORNING))
    await bridge.start()
    try:
        link = bridge.links["manila"]
        await until(
            lambda: (
                link.tls_failures >= 2
                and bridge.state.sites["bangalore"].up
                and bridge.state.sites["dhaka"].up
            ),
            15,
            "two failed TLS handshakes with manila while the others are up",
        )
        assert not link.connected and not bridge.state.sites["manila"].up
        failures = bridge.registry.get_sample_value(
            "ccbridge_ami_tls_failures_total", {"site": "manila"}
        )
        assert failures is not None and failures >= 2
    finally:
        await bridge.stop()
