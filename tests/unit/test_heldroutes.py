"""The held-route publisher against a fake AMI server: what it writes, when, and what it hears."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ccbridge import heldroutes
from ccbridge import variables as v
from ccbridge.ami.client import SiteLink
from ccbridge.clock import Clock
from ccbridge.config import Config, load_config
from ccbridge.heldroutes import HeldRoutePublisher
from ccbridge.loadtest.predict import rest_state
from ccbridge.routing.engine import CallRequest, Decision, Router
from ccbridge.routing.held import (
    Boundaries,
    HeldEntry,
    HeldRoute,
    call_id_step,
    decode,
    fresh_steps,
    held_entries,
    held_key,
    held_service_key,
    inbound_variants,
    route_id,
    same_routes,
)
from ccbridge.routing.state import (
    LiveState,
    QueueLoad,
    begin_sync,
    complete_sync,
    set_drained,
    set_site_up,
    set_sticky,
    set_trunk_health,
)
from tests.amifake import FakeAmi
from tests.polling import until

REPO = Path(__file__).resolve().parents[2]
WEDNESDAY = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
KEY_BN = held_key("+918000000001", "bn")


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "s3cret")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "t")
    c = load_config(REPO / "examples" / "lab.yaml")
    held = replace(c.routing.held_routes, refresh=0.2, min_interval=0.05, fresh_age=1)
    return replace(c, routing=replace(c.routing, held_routes=held))


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()  # it keeps the globals Setvar sets and Getvar reads
    server.replies["dialplanextensionadd"] = {"Message": "Added extension"}
    await server.start()
    yield server
    await server.close()


class Harness:
    def __init__(self, config: Config, fake: FakeAmi) -> None:
        self.clock = Clock(WEDNESDAY)
        self.state: LiveState = rest_state(config, self.clock.time(), set(), set())
        ami = replace(config.site("bangalore").ami, host="127.0.0.1", port=fake.port)
        self.link = SiteLink("bangalore", ami, lambda s, e: None, logger=logging.getLogger("t"))
        self.remembered: list[Decision] = []
        self.calls: list[CallRequest] = []
        self.registry = CollectorRegistry()
        self.pub = HeldRoutePublisher(
            config,
            Router(config),
            lambda: self.state,
            self.clock,
            {"bangalore": self.link},
            self.registry,
            on_held_call=self._held,
        )

    def _held(self, call: CallRequest, decision: Decision) -> None:
        self.calls.append(call)
        self.remembered.append(decision)

    def puts(self, fake: FakeAmi, key: str | None = None) -> list[str]:
        sets = fake.actions_named("Setvar")
        return [m["Value"] for m in sets if key is None or m.get("Variable") == key]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def harness(config: Config, fake: FakeAmi) -> AsyncIterator[Harness]:
    h = Harness(config, fake)
    await h.link.start()
    await h.pub.start()
    yield h
    await h.pub.stop()
    await h.link.stop()


TABLE_WIDE = {v.HELD_HEARTBEAT, v.HELD_FRESH_UNTIL}


def _route_sets(fake: FakeAmi) -> list[str]:
    """The held-route globals set so far, in order, one per Setvar (table-wide ones apart)."""
    return [m["Variable"] for m in fake.actions_named("Setvar") if m["Variable"] not in TABLE_WIDE]


async def test_each_key_is_written_once_then_the_heartbeat_and_fresh_deadline(
    harness: Harness, fake: FakeAmi, config: Config
) -> None:
    await until(lambda: harness.pub.passes["bangalore"] >= 3, 5, "three passes")
    keys = _route_sets(fake)
    assert len(keys) == len(set(keys))  # unchanged routes are not written again
    assert all("Channel" not in m for m in fake.actions_named("Setvar"))  # globals
    dids = {n.did for n in config.numbers if n.site == "bangalore"}
    by_number = [k for k in keys if k.startswith(v.HELD_GLOBAL_PREFIX)]
    assert {k.removeprefix(v.HELD_GLOBAL_PREFIX).rsplit("_", 1)[0] for k in by_number} == dids
    # The number with a menu also has a key per service its IVR callers can pick.
    by_service = {
        k.removeprefix(v.HELD_SERVICE_PREFIX).rsplit("_", 1)[0]
        for k in keys
        if k.startswith(v.HELD_SERVICE_PREFIX)
    }
    assert by_service == {"+918000000003_orders", "+918000000003_returns"}
    assert decode(harness.puts(fake, KEY_BN)[0], "bangalore").now.site == "dhaka"
    await until(lambda: len(harness.puts(fake, v.HELD_HEARTBEAT)) >= 2, 5, "a second heartbeat")
    beats = harness.puts(fake, v.HELD_HEARTBEAT)
    # Once a second, not once a pass (4 a second a site under traffic): the passes of
    # the same second read back and write no heartbeat or deadline.
    assert [int(b) for b in beats] == sorted({int(b) for b in beats})
    gets = len(fake.actions_named("Getvar"))
    assert gets <= len(beats) < harness.pub.passes["bangalore"]
    # In the PBX's time, not the shifted clock's.
    assert abs(int(beats[-1]) - (harness.clock.time() - harness.clock.offset)) < 5
    fresh = int(fake.globals[v.HELD_FRESH_UNTIL])
    assert fresh - int(fake.globals[v.HELD_HEARTBEAT]) == int(config.routing.held_routes.fresh_age)
    assert harness.metric("ccbridge_held_route_writes_total", site="bangalore") == len(keys)


async def test_globals_emptied_by_a_reload_are_written_again(
    harness: Harness, fake: FakeAmi
) -> None:
    await until(lambda: harness.pub.passes["bangalore"] >= 2, 5, "two passes")
    keys = set(_route_sets(fake))
    # `dialplan reload` with clearglobalvars=yes (the rendered [general]) empties them all.
    fake.globals.clear()
    await until(lambda: keys <= set(fake.globals), 5, "every key written again")
    assert decode(fake.globals[KEY_BN], "bangalore").now.site == "dhaka"
    assert len(_route_sets(fake)) == 2 * len(keys)  # each key once more, no more


async def test_a_state_change_rewrites_only_the_routes_it_changes(
    harness: Harness, fake: FakeAmi
) -> None:
    await until(lambda: harness.pub.passes["bangalore"] >= 3, 5, "three passes")
    keys = set(_route_sets(fake))
    writes = harness.metric("ccbridge_held_route_writes_total", site="bangalore")
    harness.state = set_drained(harness.state, "dhaka", True)
    harness.pub.state_changed()
    await until(lambda: len(harness.puts(fake, KEY_BN)) >= 2, 5, "the Bengali route again")
    # Dhaka drained: Bengali callers of the Indian number get the after-hours site.
    assert decode(harness.puts(fake, KEY_BN)[-1], "bangalore").now.site == "manila"
    # The pass counts its writes after its last Setvar (the deadline): wait for the count,
    # not only for the Bengali key the fake has already seen.
    await until(
        lambda: harness.metric("ccbridge_held_route_writes_total", site="bangalore") > writes,
        5,
        "the pass's writes counted",
    )
    changed = harness.metric("ccbridge_held_route_writes_total", site="bangalore") - writes
    assert 0 < changed < len(keys)  # only the routes that went to dhaka


async def test_a_refused_value_is_counted_and_written_again(
    harness: Harness, fake: FakeAmi
) -> None:
    await until(lambda: harness.pub.passes["bangalore"] >= 2, 5, "two passes")
    harness.pub.on_event(
        "bangalore",
        {
            "Event": "UserEvent",
            "UserEvent": v.EVENT_HELD_REJECTED,
            "Did": "+918000000001",
            "Lang": "bn",
            "Reason": v.HELD_REJECT_INVALID,
        },
    )
    labels = {"site": "bangalore", "reason": v.HELD_REJECT_INVALID}
    assert harness.metric("ccbridge_held_route_rejected_total", **labels) == 1
    await until(lambda: len(harness.puts(fake, KEY_BN)) == 2, 5, "the key written again")
    first, again = harness.puts(fake, KEY_BN)
    assert same_routes(first, again)  # the same route; its computed time is the new write


async def test_a_value_refused_on_the_fresh_path_rewrites_every_key_of_its_number(
    harness: Harness, fake: FakeAmi
) -> None:
    # The fresh path reads the key of a language it does not name in the event.
    await until(lambda: harness.pub.passes["bangalore"] >= 2, 5, "two passes")
    mine = [k for k in _route_sets(fake) if k.startswith(held_key("+918000000001", ""))]
    other = held_key("+918000000002", "bn")
    harness.pub.on_event(
        "bangalore",
        {
            "Event": "UserEvent",
            "UserEvent": v.EVENT_HELD_REJECTED,
            "Did": "+918000000001",
            "Lang": "",
            "Reason": v.HELD_REJECT_INVALID,
        },
    )
    await until(
        lambda: all(len(harness.puts(fake, k)) == 2 for k in mine), 5, "the number's keys again"
    )
    assert len(mine) > 1 and len(harness.puts(fake, other)) == 1


async def test_garbage_events_get_bounded_labels_and_change_nothing(harness: Harness) -> None:
    await until(lambda: harness.pub.passes["bangalore"] >= 1, 5, "a pass")
    for event in (
        {"Event": "UserEvent", "UserEvent": v.EVENT_HELD_REJECTED, "Reason": "x" * 500},
        {"Event": "UserEvent", "UserEvent": v.EVENT_HELD_ROUTE, "Source": "?", "Did": "+1"},
        {"Event": "UserEvent", "UserEvent": v.EVENT_HELD_ROUTE},
        {"Event": "Newchannel"},
    ):
        harness.pub.on_event("bangalore", event)
        harness.pub.on_event("nowhere", event)
    assert harness.metric("ccbridge_held_route_rejected_total", site="bangalore", reason="other")
    assert harness.metric("ccbridge_held_route_used_total", site="bangalore", source="other")
    assert (
        harness.registry.get_sample_value(
            "ccbridge_held_route_used_total", {"site": "nowhere", "source": "other"}
        )
        is None
    )
    assert harness.remembered == []


async def test_a_held_call_is_remembered_as_the_engines_decision(harness: Harness) -> None:
    await until(lambda: harness.pub.passes["bangalore"] >= 1, 5, "a pass")
    harness.pub.on_event(
        "bangalore",
        {
            "Event": "UserEvent",
            "UserEvent": v.EVENT_HELD_ROUTE,
            "Did": "+918000000001",
            "Lang": "bn",
            "Source": v.HELD_FALLBACK,
        },
    )
    [d] = harness.remembered
    assert harness.calls == [CallRequest("+918000000001", "", "bangalore")]
    assert (d.site, d.queue, d.language) == ("dhaka", "orders-bn", "bn")
    labels = {"site": "bangalore", "source": v.HELD_FALLBACK}
    assert harness.metric("ccbridge_held_route_used_total", **labels) == 1


KEY_IVR_RETURNS_BN = held_service_key("+918000000003", "returns", "bn")


async def test_an_ivr_callers_held_call_and_refusal_name_the_service_picked(
    harness: Harness, fake: FakeAmi
) -> None:
    await until(lambda: harness.pub.passes["bangalore"] >= 2, 5, "two passes")
    assert decode(fake.globals[KEY_IVR_RETURNS_BN], "bangalore").service == "returns"
    base = {"Event": "UserEvent", "Did": "+918000000003", "Lang": "bn", "IvrService": "returns"}
    harness.pub.on_event(
        "bangalore", {**base, "UserEvent": v.EVENT_HELD_ROUTE, "Source": "fallback"}
    )
    [d] = harness.remembered
    assert harness.calls == [CallRequest("+918000000003", "", "bangalore", service="returns")]
    assert (d.service, d.language) == ("returns", "bn")
    other = held_key("+918000000003", "bn")
    harness.pub.on_event(
        "bangalore", {**base, "UserEvent": v.EVENT_HELD_REJECTED, "Reason": "invalid"}
    )
    await until(
        lambda: len(harness.puts(fake, KEY_IVR_RETURNS_BN)) == 2, 5, "the service's key again"
    )
    assert len(harness.puts(fake, other)) == 1  # the number's own key was not refused


async def test_the_fresh_path_writes_each_inbound_route_once_and_caps_the_deadline(
    config: Config, fake: FakeAmi
) -> None:
    """use_without_bridge: each ccb-inbound extension of a number without a menu gets its
    route step (a queue here: one GotoIf; dhaka's: the number first), written again only
    after a reload; the fresh deadline never passes the table's first boundary."""
    held = replace(config.routing.held_routes, use_without_bridge=True, fresh_age=60)
    config = replace(config, routing=replace(config.routing, held_routes=held))
    h = Harness(config, fake)
    # 10 s before Dhaka's orders close (18:00 there, 12:00 UTC): the boundary caps it.
    h.clock = h.pub.clock = Clock(datetime(2026, 11, 25, 11, 59, 50, tzinfo=UTC))
    await h.link.start()
    await h.pub.start()
    try:
        blr = config.site("bangalore")
        variants = {x.extension: x for x in inbound_variants(config, blr)}
        await until(lambda: h.pub.passes["bangalore"] >= 3, 5, "three passes")
        adds = fake.actions_named("DialplanExtensionAdd")
        firsts = [m["Extension"] for m in adds if m["Priority"] == str(v.HELD_ROUTE_PRIORITY)]
        assert sorted(firsts) == sorted(variants)  # each once: unchanged routes stay
        assert {m["Context"] for m in adds} == {v.HELD_INBOUND_CONTEXT}
        assert all(m["Replace"] == "yes" for m in adds)
        hindi = [m for m in adds if m["Extension"] == "+918000000001/_+91."]
        # The call ID's step too, as rendered: an extension the rendered dialplan lacks
        # (an older config's render) is whole, never a route step alone.
        callid = "__CCB_CALLID=" + v.new_callid("bangalore")
        assert [(m["Application"], m["ApplicationData"]) for m in hindi] == [
            ("Set", callid),
            ("GotoIf", "$[${EPOCH}<0${CCB_HELD_FRESH}]?ccb-queue,orders-hi,1:ccb-route,${EXTEN},1"),
        ]
        assert [m["Priority"] for m in hindi] == ["1", "2"]
        bengali = [m for m in adds if m["Extension"] == "+918000000001/_+880."]
        assert [m["Priority"] for m in bengali] == ["1", "2", "3", "4"]
        assert bengali[2]["ApplicationData"] == "__CCB_DID=${EXTEN}"
        assert bengali[3]["ApplicationData"].startswith("ccb-held,remote.dhaka.orders-bn.")
        # No number with a menu: its callers go through the IVR.
        assert not any(e.startswith("+918000000003") for e in firsts)
        closes = int(datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp() - h.clock.offset)
        fresh = int(fake.globals[v.HELD_FRESH_UNTIL])
        assert fresh == closes < int(fake.globals[v.HELD_HEARTBEAT]) + 60
        # A reload puts the rendered steps back and empties the globals: all written again.
        fake.globals.clear()
        await until(
            lambda: len(fake.actions_named("DialplanExtensionAdd")) == 2 * len(adds),
            5,
            "every route step written again",
        )
    finally:
        await h.pub.stop()
        await h.link.stop()


class CountingRouter(Router):
    """The engine, counting its decisions (a held entry takes two: now and next)."""

    decisions = 0

    def decide(self, call: CallRequest, state: LiveState, now: datetime) -> Decision:
        self.decisions += 1
        return super().decide(call, state, now)


async def test_sites_woken_together_compute_their_tables_one_slice_a_loop_turn(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One state change wakes every site's pass at once: 20 sites each computing a slice in
    # the same turn held the loop 6-12 ms, the route latency's tail (BENCHMARKS §12).
    monkeypatch.setattr(heldroutes, "COMPUTE_SLICE", 0.0)  # a slice is one entry
    router = CountingRouter(config)
    clock = Clock(WEDNESDAY)
    state = rest_state(config, clock.time(), set(), set())
    pub = HeldRoutePublisher(config, router, lambda: state, clock, {}, CollectorRegistry())
    per_turn: list[int] = []
    done = asyncio.Event()

    async def each_turn() -> None:  # one step a loop turn: what ran since the last
        seen = 0
        while not done.is_set():
            await asyncio.sleep(0)
            per_turn.append(router.decisions - seen)
            seen = router.decisions

    ticker = asyncio.create_task(each_turn())
    tables = await asyncio.gather(*(pub.table(site) for site in config.sites))
    done.set()
    await ticker
    assert len(config.sites) >= 3 and all(len(t) >= 2 for t in tables)
    assert router.decisions == 2 * sum(len(t) for t in tables)
    assert max(per_turn) == 2, per_turn  # one entry a turn, over all the sites
    # Each table is the same as one computed alone.
    alone = await pub.table(config.sites[0])
    assert [e.key for e in alone] == [e.key for e in tables[0]]


async def test_a_pass_skips_what_its_routes_were_made_from_while_they_stay_and_not_after(
    config: Config, fake: FakeAmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass whose routes are the ones last written makes no route steps and encodes no
    value (the state moves on every AMI event, the routes rarely: BENCHMARKS §12); a pass
    after a route changed writes that key's value and extension's steps again."""
    held = replace(config.routing.held_routes, use_without_bridge=True)
    config = replace(config, routing=replace(config.routing, held_routes=held))
    made: list[str] = []
    real = heldroutes.fresh_steps

    def counted(route: HeldRoute, rid: str, direct: bool) -> tuple[tuple[str, str], ...]:
        made.append(rid)
        return real(route, rid, direct)

    monkeypatch.setattr(heldroutes, "fresh_steps", counted)
    encoded: list[str] = []
    real_encode = heldroutes.encode_entry

    def encode_counted(entry: HeldEntry, computed: float, wall_offset: float = 0.0) -> str:
        encoded.append(entry.key)
        return real_encode(entry, computed, wall_offset)

    monkeypatch.setattr(heldroutes, "encode_entry", encode_counted)
    h = Harness(config, fake)
    await h.link.start()
    await h.pub.start()
    try:
        await until(lambda: h.pub.passes["bangalore"] >= 1, 5, "a first pass")
        first, passes = len(made), h.pub.passes["bangalore"]
        assert first > 0  # the first pass made every extension's steps
        values = len(encoded)
        assert values > 0  # ... and encoded every key's value
        adds = len(fake.actions_named("DialplanExtensionAdd"))
        # The state moves without changing a route: passes run, no step is made.
        for _ in range(3):
            h.pub.state_changed()
            await until(lambda n=passes: h.pub.passes["bangalore"] > n, 5, "another pass")
            passes = h.pub.passes["bangalore"]
        assert len(made) == first
        assert len(encoded) == values  # made from the same: not encoded again
        assert len(fake.actions_named("DialplanExtensionAdd")) == adds
        # Dhaka drained: the Bengali caller's route changes, its extension is rewritten.
        h.state = set_drained(h.state, "dhaka", True)
        h.pub.state_changed()
        bengali = "+918000000001/_+880."
        await until(
            lambda: any(
                m["Extension"] == bengali for m in fake.actions_named("DialplanExtensionAdd")[adds:]
            ),
            5,
            "the Bengali extension written again",
        )
        assert len(made) > first
        assert KEY_BN in encoded[values:]
        assert decode(h.puts(fake, KEY_BN)[-1], "bangalore").now.site == "manila"
        # Its steps (the deadline's GotoIf, the number, the Goto into ccb-held) differ in
        # the last alone: that priority is the one written again, and the extension's
        # priorities are those a whole write gives.
        passes = h.pub.passes["bangalore"]
        await until(lambda: h.pub.passes["bangalore"] > passes, 5, "the pass done")
        again = [
            m
            for m in fake.actions_named("DialplanExtensionAdd")[adds:]
            if m["Extension"] == bengali
        ]
        assert [(m["Priority"], m["Application"]) for m in again] == [("4", "Goto")]
        assert again[0]["ApplicationData"].startswith("ccb-held,remote.manila.")
        now = {}
        for m in fake.actions_named("DialplanExtensionAdd"):
            if m["Extension"] == bengali:
                now[int(m["Priority"])] = (m["Application"], m["ApplicationData"])
        entry = next(e for e in await h.pub.table(config.site("bangalore")) if e.key == KEY_BN)
        rid = route_id(entry.now, entry.service)
        whole = (call_id_step("bangalore"), *fresh_steps(entry.now, rid, False))
        assert [now[p] for p in sorted(now)] == list(whole)
    finally:
        await h.pub.stop()
        await h.link.stop()


class StillClock(Clock):
    """A clock that moves only when told (``offset``): the memo and a fresh table are
    computed at the same instant."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.at = start.timestamp()

    def time(self) -> float:
        return self.at + self.offset


async def test_a_table_from_the_memo_is_the_table_computed_anew_at_every_step(
    config: Config,
) -> None:
    """A random walk over what a decision reads (queue loads, sites up, down, drained and
    unsynced, hold-offs, sticky sites, trunk health, time across schedule boundaries) and
    what it does not: after every step each site's table equals a fresh engine's."""
    rng = random.Random(15)
    router = CountingRouter(config)
    clock = StillClock(WEDNESDAY)
    state = rest_state(config, clock.time(), set(), set())
    pub = HeldRoutePublisher(config, router, lambda: state, clock, {}, CollectorRegistry())
    names = [s.name for s in config.sites]
    queues = sorted({q for s in config.sites for a in s.agents for q in a.queues})
    pairs = sorted({tuple(q.split("-", 1)) for q in queues})
    rows = reused = 0
    for step in range(120):
        what = rng.randrange(9)
        name = rng.choice(names)
        s = state.sites[name]
        if what <= 1:  # a queue's load moves (read when it changes the expected wait)
            q = QueueLoad(
                logged_in=(n := rng.randrange(4)),
                available=rng.randrange(n + 1),
                waiting=rng.choice((0, 0, 1, 6)),
                avg_talk=rng.choice((0.0, 60.0, 600.0)),
            )
            state = replace(
                state,
                sites={**state.sites, name: replace(s, queues={**s.queues, rng.choice(queues): q})},
            )
        elif what == 2:  # what no decision reads
            q_name = rng.choice(queues)
            q = s.queues.get(q_name, QueueLoad())
            state = replace(
                state,
                sites={
                    **state.sites,
                    name: replace(
                        s,
                        queues={
                            **s.queues,
                            q_name: replace(q, avg_hold=rng.random(), completed=step),
                        },
                    ),
                },
            )
        elif what <= 4:
            svc, lang = rng.choice(pairs)
            state = set_sticky(state, svc, lang, rng.choice(names))
        elif what == 5:
            state = set_site_up(state, name, not s.up, clock.time())
            if state.sites[name].up:
                state = (
                    complete_sync(begin_sync(state, name), name) if rng.random() < 0.5 else state
                )
                state = replace(
                    state,
                    sites={
                        **state.sites,
                        name: replace(
                            state.sites[name], queues=s.queues, synced=rng.random() < 0.7
                        ),
                    },
                )
        elif what == 6:
            state = set_drained(state, name, not s.drained)
        elif what == 7:
            trunk = rng.choice(config.trunks).name
            state = set_trunk_health(state, trunk, trunk in state.unhealthy_trunks)
        else:  # time: within a hold-off, a minute, past a schedule boundary
            clock.offset += rng.choice((1.0, 4.0, 30.0, 61.0, 1800.0, 3 * 3600.0))
        for site in config.sites:
            before = router.decisions
            table = await pub.table(site)
            fresh = list(held_entries(Router(config), Boundaries(config), site, state, clock.now()))
            assert [(e, e.decisions) for e in table] == [(e, e.decisions) for e in fresh], step
            rows += len(table)
            reused += len(table) - (router.decisions - before) // 2
    # Not vacuous: many rows came from the memo (most steps change what they read, on
    # purpose), and the others were decided again.
    assert rows > 0 and rows // 4 < reused < rows


async def test_a_pass_writes_in_batches_in_order_routes_then_heartbeat_and_deadline(
    config: Config, fake: FakeAmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass writes every key, ccb-inbound's route steps, then the heartbeat and
    the fresh deadline, in batches of BATCH actions (3 here, so many): in that order, each
    once; a link that answers nothing fails the pass (the next writes it all again)."""
    monkeypatch.setattr(heldroutes, "BATCH", 3)
    fresh = replace(config.routing.held_routes, use_without_bridge=True)
    h = Harness(replace(config, routing=replace(config.routing, held_routes=fresh)), fake)
    await h.link.start()
    try:
        await until(lambda: h.link.ready, 5, "the link up")
        site = config.site("bangalore")
        written = await h.pub.publish(site, h.link)
        got = [m for m in fake.received if m["Action"] in ("Setvar", "DialplanExtensionAdd")]
        names = [m.get("Variable") or m["Action"] for m in got]
        assert names[-2:] == [v.HELD_HEARTBEAT, v.HELD_FRESH_UNTIL]
        routes = names[:-2]
        keys = [n for n in routes if n != "DialplanExtensionAdd"]
        assert len(keys) == written == len(set(keys)) and written > 3 * heldroutes.BATCH
        adds = [i for i, n in enumerate(routes) if n == "DialplanExtensionAdd"]
        assert adds and min(adds) > max(routes.index(k) for k in keys)  # keys, then steps
        assert fake.globals[v.HELD_HEARTBEAT] and fake.globals[v.HELD_FRESH_UNTIL]
        fake.mute("Setvar")
        h.pub._written["bangalore"] = None  # everything again, and nobody answers
        h.link.settings = replace(h.link.settings, action_timeout=0.2)
        with pytest.raises(heldroutes.AmiError):
            await h.pub.publish(site, h.link)
    finally:
        await h.link.stop()
