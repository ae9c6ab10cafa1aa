"""Kamailio as the SIP edge in front of the lab: SIPp carriers call the edge, the edge spreads
the calls over the sites, the bridge disables a drained or dead site there, and a site
that dies costs no call. Each test prints what it measured with `pytest -s`."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from ccbridge.app import Bridge
from ccbridge.config import Config
from ccbridge.config.model import Site
from ccbridge.edge.rpc import KamailioRpc
from ccbridge.edge.view import edge_view
from ccbridge.lab.edge import LabEdge
from ccbridge.lab.sipp import Agent, CallResult, aborted_calls, place_calls
from ccbridge.lab.sites import Lab
from tests.integration.conftest import AmiRecorder, BridgeFactory, answering
from tests.polling import until, until_async

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # every site open
ORDERS_IN = "+918000000001"  # orders: served by all three sites, so spread over them
ENGLISH = "+447700900123"
POLL = 0.02
CARRIER_IN = "PJSIP/carrier-in-"  # the channel of a call the edge delivered to a site
CHANNEL_UP = "6"  # AMI ChannelState of an answered channel


def report(what: str, **figures: object) -> None:
    print(f"\nMEASURED {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture(scope="module")
def edge_config(lab_config: Config) -> Config:
    """The lab's config with its edge on (examples/lab.yaml has it, off): the sites already
    take carrier calls from the edge's address, so none restarts."""
    assert lab_config.edge is not None, "examples/lab.yaml lost its edge section"
    return dataclasses.replace(lab_config, edge=dataclasses.replace(lab_config.edge, enabled=True))


@pytest.fixture(scope="module")
def edge(lab: Lab, edge_config: Config) -> Iterator[LabEdge]:
    running = lab.edge(edge_config)
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def through_edge(
    config: Config,
    n: int,
    *,
    rate: float = 5,
    duration_ms: int = 200,
    port: int = 6600,
    max_seconds: float = 40,
    extra: tuple[str, ...] = (),
) -> CallResult:
    assert config.edge is not None
    return await asyncio.to_thread(
        place_calls,
        str(config.edge.sip),
        ORDERS_IN,
        caller=ENGLISH,
        calls=n,
        rate=rate,
        duration_ms=duration_ms,
        max_seconds=max_seconds,
        local_port=port,
        scenario="edge_caller.xml",
        extra=extra,
    )


def entered(ami: AmiRecorder, site: str, since: int = 0) -> int:
    """Calls the edge delivered to ``site`` (its carrier endpoint's channels)."""
    return sum(
        1
        for s, e in ami.events[since:]
        if s == site
        and e.get("Event") == "Newchannel"
        and e.get("Channel", "").startswith(CARRIER_IN)
    )


def held_calls(ami: AmiRecorder, site: str) -> tuple[int, int]:
    """Calls ``site`` holds now, as its AMI events tell, from the edge or from another site
    over a trunk (one call has several channels: counted by Linkedid): (in setup, answered).
    A call is answered once every open channel of it is Up (the caller's too)."""
    up: dict[str, bool] = {}  # open channel -> Up
    linked: dict[str, str] = {}
    for s, e in ami.events:
        if s != site:
            continue
        name, uid = e.get("Event"), e.get("Uniqueid", "")
        if name == "Newchannel":
            linked[uid] = e.get("Linkedid", uid)
            up[uid] = e.get("ChannelState") == CHANNEL_UP
        elif name == "Newstate" and uid in up:
            up[uid] = e.get("ChannelState") == CHANNEL_UP
        elif name == "Hangup":
            up.pop(uid, None)
            linked.pop(uid, None)
    calls: dict[str, bool] = {}
    for uid, is_up in up.items():
        calls[linked[uid]] = calls.get(linked[uid], True) and is_up
    answered = sum(calls.values())
    return len(calls) - answered, answered


async def edge_flags(rpc: KamailioRpc, config: Config, site: str) -> set[str]:
    """The dispatcher flags of ``site`` in every set it is in (``AP``, ``DX``, ...)."""
    view = edge_view(config)
    assert view is not None
    states = await rpc.states()
    return {states[(group, view.uris[site])] for group in view.sets_of(site)}


def disabled(flags: set[str]) -> bool:
    return bool(flags) and all(f.startswith("D") for f in flags)


def active(flags: set[str]) -> bool:
    return bool(flags) and all(f.startswith("A") for f in flags)


async def watch(rpc: KamailioRpc, config: Config, site: str, wanted: str) -> float:
    """Seconds until the edge shows ``site`` ``wanted`` ("active" or "disabled") in every
    set it is in, polling its RPC every POLL."""
    check = disabled if wanted == "disabled" else active
    t0 = time.monotonic()
    last: set[str] = set()
    while time.monotonic() - t0 < 10.0:
        last = await edge_flags(rpc, config, site)
        if check(last):
            return time.monotonic() - t0
        await asyncio.sleep(POLL)
    raise AssertionError(f"{site} not {wanted} at the edge within 10s (flags {last})")


async def test_edge_spreads_calls_and_a_drained_site_gets_none_within_1s(
    lab: Lab,
    edge_config: Config,
    edge: LabEdge,
    agents: dict[str, Agent],
    ami: AmiRecorder,
    bridge_at: BridgeFactory,
) -> None:
    assert edge_config.edge is not None
    rpc = KamailioRpc(edge_config.edge.rpc_url, 1.0)
    try:
        async with bridge_at(WEDNESDAY_MORNING, config=edge_config) as bridge:
            for site in ("bangalore", "dhaka", "manila"):
                await watch(rpc, edge_config, site, "active")
            mark = len(ami.events)
            spread = await through_edge(edge_config, 6, port=6600)
            assert spread.ok, spread.output[-1500:]
            await ami.wait_for(
                lambda: sum(entered(ami, s, mark) for s in ("bangalore", "dhaka", "manila")) == 6,
                10,
                "six calls delivered by the edge",
            )
            per_site = {s: entered(ami, s, mark) for s in ("bangalore", "dhaka", "manila")}
            assert all(n >= 1 for n in per_site.values()), per_site

            drained_at = time.monotonic()
            await drain(bridge, edge_config, "dhaka", "drain")
            await watch(rpc, edge_config, "dhaka", "disabled")
            took = time.monotonic() - drained_at
            assert took < 1.0, f"the edge learnt of the drain after {took:.2f}s"
            mark = len(ami.events)
            after = await through_edge(edge_config, 6, port=6610)
            assert after.ok, after.output[-1500:]
            assert entered(ami, "dhaka", mark) == 0
            await drain(bridge, edge_config, "dhaka", "undrain")
            await watch(rpc, edge_config, "dhaka", "active")
            report("edge drain", spread=per_site, edge_disabled_after_s=f"{took:.2f}")
    finally:
        await rpc.close()


async def drain(bridge: Bridge, config: Config, site: str, action: str) -> None:
    token = config.bridge.api_token
    assert token is not None
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"http://127.0.0.1:{bridge.http_port}/api/v1/sites/{site}/{action}",
            headers={"Authorization": f"Bearer {token.reveal()}"},
        )
        assert resp.status == 200, await resp.text()


def read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


async def restart(lab: Lab, name: str) -> None:
    site = lab.config.site(name)
    await asyncio.to_thread(lab.stop_site, site)
    await asyncio.to_thread(lab.start_site, site)
    await asyncio.to_thread(lab.wait_ami, site, 20)


def before_route(lab: Lab, site: Site, *apps: str) -> None:
    """A call to ORDERS_IN at ``site`` runs ``apps`` before its route step: until the
    site's next dialplan reload."""
    for priority, app in enumerate(apps, 1):
        lab.cli(site, f"dialplan add extension {ORDERS_IN},{priority},{app} into ccb-route replace")
    assert apps[0] in lab.cli(site, f"dialplan show {ORDERS_IN}@ccb-route")


RING = ("Ringing()", "Wait(60)")  # 180, never a final reply: a call ringing an agent
ANSWER = ("Answer()", "Wait(5)", "Hangup()")  # longer than a caller talks


@pytest.fixture
def ringing_at_dhaka(lab: Lab) -> Iterator[None]:
    """orders-en answers at once at bangalore and manila; every call the edge gives dhaka
    rings there (RING): it is in setup at dhaka when dhaka dies."""
    dhaka = lab.config.site("dhaka")
    with answering(lab, {"bangalore": "orders-en", "manila": "orders-en"}):
        before_route(lab, dhaka, *RING)
        try:
            yield
        finally:
            lab.cli(dhaka, "dialplan reload")


async def in_setup_at(rpc: KamailioRpc, uri: str) -> bool:
    """Whether the edge holds a call in setup at the site ``uri`` (its htable `setup`)."""
    dump = await rpc.call("htable.dump", "setup")
    return any(item["value"] == uri for entry in dump for item in entry["slot"])


async def test_sigkilled_site_behind_the_edge_costs_no_call(
    lab: Lab,
    edge_config: Config,
    edge: LabEdge,
    agents: dict[str, Agent],
    ringing_at_dhaka: None,
    ami: AmiRecorder,
    bridge_at: BridgeFactory,
    tmp_path: Path,
) -> None:
    """dhaka is SIGKILLed under load through the edge while calls ring there. What is
    asserted, per call, with SIPp's per-call trace (-trace_calldebug) telling answered
    calls from unanswered ones:

    - no unanswered call fails. The calls ringing at dhaka (its 180 relayed: the edge
      would wait ring_timeout for them) move on to the next site inside the call when the
      bridge reports the site lost (POST /site-lost), and are answered there; the ones the
      edge sends dhaka before it learns of the death get no reply within invite_timeout
      and fail over too (the last part shows that failover alone);
    - a call dhaka had answered dies with it (its media is there): at most as many
      answered calls fail as dhaka held answered at the kill.

    The calls dhaka held are counted from AMI at the kill. A per-call receive timeout
    (15 s) fails a ringing call that is not moved, well before dhaka's 60 s of ringing.
    """
    assert edge_config.edge is not None
    dhaka = lab.config.site("dhaka")
    holdoff = 2.0
    config = dataclasses.replace(
        edge_config, routing=dataclasses.replace(edge_config.routing, site_holdoff=holdoff)
    )
    rpc = KamailioRpc(edge_config.edge.rpc_url, 1.0)
    view = edge_view(config)
    assert view is not None
    trace = tmp_path / "calldebug.log"
    traced = ("-recv_timeout", "15000", "-trace_calldebug", "-calldebug_file", str(trace))
    try:
        async with bridge_at(WEDNESDAY_MORNING, config=config) as bridge:
            assert bridge.edge is not None
            await watch(rpc, config, "dhaka", "active")
            load = asyncio.create_task(through_edge(config, 16, rate=2, port=6620, extra=traced))
            await until(lambda: held_calls(ami, "dhaka")[0] >= 2, 15, "two calls ringing at dhaka")
            ringing, answered = held_calls(ami, "dhaka")
            killed = time.monotonic()
            lab.signal_site(dhaka, signal.SIGKILL)

            def moved() -> float:
                value = bridge.registry.get_sample_value(
                    "ccbridge_edge_calls_moved_total", {"site": "dhaka"}
                )
                return value or 0.0

            await until(lambda: moved() >= ringing, 10, "the calls ringing at dhaka moved on")
            moved_after = time.monotonic() - killed
            await watch(rpc, config, "dhaka", "disabled")
            detect = time.monotonic() - killed
            result = await load
            text = await asyncio.to_thread(read_from, trace, 0) if trace.exists() else ""
            aborted = aborted_calls(text)
            died_answered = sum(aborted.values())
            failed_unanswered = len(aborted) - died_answered
            why = (ringing, answered, aborted, result.output[-2000:])
            assert result.created == 16, why
            assert result.successful + result.failed == 16 and len(aborted) == result.failed, why
            assert failed_unanswered == 0 and died_answered <= answered, why

            await restart(lab, "dhaka")
            back = time.monotonic()
            await watch(rpc, config, "dhaka", "active")
            # Not before the bridge's hold-off: a site just back takes no call at once.
            up_since = bridge.state.sites["dhaka"].up_since
            assert up_since is not None and bridge.clock.time() - up_since >= holdoff
            measured = {
                "in_setup_at_dhaka_at_kill": ringing,
                "moved_on": int(moved()),
                "moved_after_s": f"{moved_after:.2f}",
                "answered_by_dhaka_at_kill": answered,
                "calls": result.created,
                "failed_unanswered": failed_unanswered,
                "died_answered": died_answered,
                "edge_disabled_after_s": f"{detect:.2f}",
                "active_again_after_ami_s": f"{time.monotonic() - back:.2f}",
            }
        # The edge alone, with no bridge to tell it anything: dhaka dead but active at the
        # edge (as before its probes notice), one call ringing there. Three calls at once:
        # round robin sends dhaka one, which never answers and goes on to the next site;
        # that unanswered INVITE (or a probe) tells the edge dhaka is lost, and the call
        # ringing there moves on too. The others answer before their route step: with no
        # bridge, a held route could send a call over a trunk to the dead dhaka.
        alone = time.monotonic()
        before_route(lab, dhaka, *RING)  # the restart reloaded its dialplan
        for other in ("bangalore", "manila"):
            before_route(lab, lab.config.site(other), *ANSWER)
        log_mark = edge.log.stat().st_size
        ringer = asyncio.create_task(through_edge(config, 3, rate=30, port=6640))
        await until_async(
            lambda: in_setup_at(rpc, view.uris["dhaka"]), 10, "a call at dhaka", interval=POLL
        )
        lab.signal_site(dhaka, signal.SIGKILL)
        for group in view.sets_of("dhaka"):
            await rpc.set_state("a", group, view.uris["dhaka"])
        burst = await through_edge(config, 3, rate=30, port=6630)
        ringing_moved = await ringer
        text = await asyncio.to_thread(read_from, edge.log, log_mark)
        alone = time.monotonic() - alone
        await restart(lab, "dhaka")
        assert burst.ok, burst.output[-2000:]
        assert ringing_moved.ok, ringing_moved.output[-2000:]
        failovers = text.count(f"site {dhaka.sip.host} failed (408)")
        assert failovers >= 1, "no call reached the dead site: the failover was not exercised"
        assert f"site {view.uris['dhaka']} lost: 1 call(s)" in text, text[-2000:]
        report(
            "edge site killed",
            failed_over_in_call=failovers,
            burst_failed=burst.failed,
            edge_alone_calls_ok=ringing_moved.successful + burst.successful,
            edge_alone_part_s=f"{alone:.2f}",
            **measured,
        )
    finally:
        await rpc.close()
