"""Outbound plans: site, carrier trunks in order, local caller ID."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ccbridge.config import Config, load_config
from ccbridge.config.model import Number, NumberKind
from ccbridge.routing.outbound import caller_id_for, destination_country, plan_outbound
from ccbridge.routing.state import LiveState, SiteState

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "y")
    c = load_config(REPO / "examples" / "lab.yaml")
    local = Number("+918045000000", NumberKind.LOCAL, "IN", "orders", "bangalore")
    return replace(c, numbers=(*c.numbers, local))


def up(*names: str, drained: str = "") -> LiveState:
    return LiveState(sites={n: SiteState(n, up=True, drained=(n == drained)) for n in names})


def test_destination_country_by_longest_calling_code(config: Config) -> None:
    assert destination_country(config, "+919812345678") == "IN"
    assert destination_country(config, "008801712345678") == "BD"
    assert destination_country(config, "+15551234567") is None


def test_local_number_is_presented_not_the_toll_free_one(config: Config) -> None:
    assert caller_id_for(config, "bangalore", "IN") == "+918045000000"
    assert caller_id_for(config, "bangalore", "PH") is None


def test_plan_uses_the_sites_carriers_in_order_healthy_first(config: Config) -> None:
    plan = plan_outbound(config, up("bangalore", "dhaka", "manila"), "+919812345678")
    assert plan.site == "bangalore" and plan.trunks == ("blr-pstn1", "blr-pstn2")
    assert plan.caller_id == "+918045000000" and plan.possible
    sick = replace(up("bangalore"), unhealthy_trunks=frozenset({"blr-pstn1"}))
    plan = plan_outbound(config, sick, "+919812345678")
    assert plan.trunks == ("blr-pstn2", "blr-pstn1") and "unhealthy_trunks_last" in plan.reasons


def test_no_plan_when_the_site_with_carriers_is_down_or_drained(config: Config) -> None:
    assert not plan_outbound(config, up("dhaka", "manila"), "+919812345678").possible
    plan = plan_outbound(config, up("bangalore", drained="bangalore"), "+919812345678")
    assert not plan.possible and "bangalore:drained" in plan.reasons
    # Carriers that serve only India do not take a call to the Philippines.
    assert not plan_outbound(config, up("bangalore"), "+639171234567").possible
