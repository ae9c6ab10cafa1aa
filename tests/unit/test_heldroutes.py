"""The held-route publisher against a fake AMI server: what it writes, when, and what it hears."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ccbridge import variables as v
from ccbridge.ami.client import SiteLink
from ccbridge.clock import Clock
from ccbridge.config import Config, load_config
from ccbridge.heldroutes import HeldRoutePublisher
from ccbridge.loadtest.predict import rest_state
from ccbridge.routing.engine import CallRequest, Decision, Router
from ccbridge.routing.held import decode, held_key, same_routes
from ccbridge.routing.state import LiveState, set_drained
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
    server = FakeAmi()
    for action in ("DBPut", "DBDel", "DBDelTree"):
        server.replies[action.lower()] = {"Message": "ok"}
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
        return [m["Val"] for m in fake.actions_named("DBPut") if key is None or m.get("Key") == key]

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


async def test_first_pass_clears_the_tree_then_writes_each_key_once(
    harness: Harness, fake: FakeAmi, config: Config
) -> None:
    await until(lambda: harness.pub.passes["bangalore"] >= 3, 5, "three passes")
    assert [m["Key"] for m in fake.actions_named("DBDelTree")] == [v.HELD_ROUTE_KEY]
    routes = [m for m in fake.actions_named("DBPut") if m["Key"] != v.HELD_HEARTBEAT_KEY]
    keys = [m["Key"] for m in routes]
    assert len(keys) == len(set(keys))  # unchanged routes are not written again
    dids = {n.did for n in config.numbers if n.site == "bangalore"}
    assert {k.split("/")[1] for k in keys} == dids
    assert all(m["Family"] == v.HELD_FAMILY for m in routes)
    assert decode(harness.puts(fake, KEY_BN)[0]).now.site == "dhaka"
    beats = harness.puts(fake, v.HELD_HEARTBEAT_KEY)
    assert len(beats) >= 3 and int(beats[-1]) >= int(beats[0])
    # In the PBX's time, not the shifted clock's.
    assert abs(int(beats[-1]) - (harness.clock.time() - harness.clock.offset)) < 5
    assert harness.metric("ccbridge_held_route_writes_total", site="bangalore") == len(keys)


async def test_a_state_change_rewrites_only_the_routes_it_changes(
    harness: Harness, fake: FakeAmi
) -> None:
    await until(lambda: harness.pub.passes["bangalore"] >= 3, 5, "three passes")
    keys = {m["Key"] for m in fake.actions_named("DBPut")} - {v.HELD_HEARTBEAT_KEY}
    writes = harness.metric("ccbridge_held_route_writes_total", site="bangalore")
    harness.state = set_drained(harness.state, "dhaka", True)
    harness.pub.state_changed()
    await until(lambda: len(harness.puts(fake, KEY_BN)) >= 2, 5, "the Bengali route again")
    # Dhaka drained: Bengali callers of the Indian number get the after-hours site.
    assert decode(harness.puts(fake, KEY_BN)[-1]).now.site == "manila"
    # The pass counts its writes after its last DBPut (the heartbeat): wait for the count,
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
            "Source": v.HELD_FRESH,
        },
    )
    [d] = harness.remembered
    assert harness.calls == [CallRequest("+918000000001", "", "bangalore")]
    assert (d.site, d.queue, d.language) == ("dhaka", "orders-bn", "bn")
    labels = {"site": "bangalore", "source": v.HELD_FRESH}
    assert harness.metric("ccbridge_held_route_used_total", **labels) == 1
