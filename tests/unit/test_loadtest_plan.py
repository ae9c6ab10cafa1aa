"""Load test plan and report math: caller groups, rates and call counts, prediction, causes."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ccbridge.config import Config, load_config
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sites import REPO_ROOT
from ccbridge.loadtest.options import (
    CallerGroup,
    LoadPlan,
    PlanError,
    parse_ivr,
    parse_weights,
    plain_groups,
)
from ccbridge.loadtest.placement import CallSpan
from ccbridge.loadtest.predict import NO_QUEUE, compare, fault_sets, predict
from ccbridge.loadtest.report import FailedCallReport, Report, classify
from ccbridge.loadtest.sipp import caller_argv
from ccbridge.loadtest.stats import Second, Series
from ccbridge.loadtest.timeline import parse_fault

WEDNESDAY = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def config() -> Config:
    ensure_lab_secrets()
    return load_config(REPO_ROOT / "examples" / "lab.yaml")


def test_weights() -> None:
    assert parse_weights("IN=3, BD=1,GB") == {"IN": 3.0, "BD": 1.0, "GB": 1.0}
    with pytest.raises(PlanError):
        parse_weights("IN=x")
    with pytest.raises(PlanError):
        parse_weights("IN=0")


def test_groups_rates_and_counts_add_up(config: Config) -> None:
    groups = plain_groups(config, ["+918000000001", "+6328000001"], {"IN": 3, "GB": 1})
    assert len(groups) == 4
    assert {g.site for g in groups} == {"bangalore", "manila"}
    plan = LoadPlan(rate=8, duration=10, ramp=4, groups=tuple(groups), concurrency=80)
    assert sum(plan.group_rate(g) for g in groups) == pytest.approx(8)
    assert plan.group_rate(groups[0]) == pytest.approx(3)
    assert plan.group_calls(groups[0]) == 24  # 3/s over 10 s, the 4 s ramp counted as half
    assert plan.expected_calls == 24 + 8 + 24 + 8
    assert plan.group_limit(groups[0]) == 30
    with pytest.raises(PlanError, match="max-sipp"):
        LoadPlan(rate=8, duration=10, groups=tuple(groups), max_sipp=3)
    with pytest.raises(PlanError):
        LoadPlan(rate=8, duration=10, ramp=11, groups=tuple(groups))
    with pytest.raises(PlanError, match="not a number"):
        plain_groups(config, ["+10000"], {"IN": 1})


def test_ivr_groups(config: Config) -> None:
    g = parse_ivr(config, "+918000000003:12:bn:orders=2")
    assert (g.digits, g.language, g.service, g.weight, g.site) == (
        "12",
        "bn",
        "orders",
        2.0,
        "bangalore",
    )
    with pytest.raises(PlanError, match="digits"):
        parse_ivr(config, "+918000000003:1a:bn:orders")


def test_sipp_command_lines_are_bounded(tmp_path: Path) -> None:
    kw: dict[str, Any] = {
        "scenario": tmp_path / "x.xml",
        "target": "127.0.1.1:5060",
        "did": "+918000000001",
        "caller": "+441",
        "calls": 50,
        "rate": 6,
        "limit": 10,
        "talk_ms": 500,
        "port": 6300,
        "max_seconds": 40.2,
        "stat_file": tmp_path / "s.csv",
        "error_file": tmp_path / "e.log",
        "ramp": 3,
    }
    argv = caller_argv(**kw)
    flags = dict(itertools.pairwise(argv))  # each flag -> the word after it
    assert flags["-m"] == "50" and flags["-timeout"] == "41s" and flags["-l"] == "10"
    assert flags["-rp"] == "1s" and flags["-rate_max"] == "6" and flags["-r"] == "2"
    assert flags["-rate_increase"] == "2" and "-nostdin" in argv
    # below 2 calls/s SIPp cannot ramp: the group starts at its full rate, per 10 s
    slow = dict(itertools.pairwise(caller_argv(**{**kw, "rate": 0.5})))
    assert slow["-rp"] == "10s" and slow["-r"] == "5.000" and "-rate_increase" not in slow


def test_prediction_follows_faults(config: Config) -> None:
    g = CallerGroup("+8809600000001", "+8801712345678", 1, "dhaka")
    kill = parse_fault("10s:kill-site:dhaka:10s")
    assert fault_sets(config, [kill], 5) == (set(), set())
    assert fault_sets(config, [kill], 12) == ({"dhaka"}, set())
    # down until hold-off after recovery
    assert fault_sets(config, [kill], 20 + config.routing.site_holdoff - 0.1)[0] == {"dhaka"}
    got = predict(config, [g], {0: {0: 4, 12: 3}}, WEDNESDAY, [kill])
    assert sum(got.values()) == 7
    assert got[("dhaka", "orders-bn")] == 4
    assert len(got) >= 2  # the 3 placed while dhaka was dead go elsewhere


def test_compare_rows() -> None:
    rows = compare(Counter({("a", "q"): 5, NO_QUEUE: 1}), Counter({("a", "q"): 4, ("b", "q"): 1}))
    assert rows[0] == {"site": "a", "queue": "q", "predicted": 5, "observed": 4, "diff": -1}
    assert {(r["site"], r["diff"]) for r in rows} == {("a", -1), ("-", -1), ("b", 1)}


def test_classify_failed_calls() -> None:
    kill = parse_fault("10s:kill-site:dhaka:20s")
    bridge = parse_fault("60s:restart-bridge")
    faults = [kill, bridge]
    f, saveable, why = classify(CallSpan(14, 15), "dhaka", ["dhaka"], faults)
    assert (f, saveable) == (kill, False) and "receiving site" in why
    f, saveable, _ = classify(CallSpan(9, 11), "bangalore", ["dhaka"], faults)
    assert (f, saveable) == (kill, False)  # in progress at dhaka when it died
    f, saveable, _ = classify(CallSpan(24, 25), "bangalore", ["dhaka"], faults)
    assert (f, saveable) == (kill, True)  # a new call while dhaka was down: reroutable
    f, saveable, _ = classify(CallSpan(60.5, 61), "bangalore", ["bangalore"], faults)
    assert (f, saveable) == (bridge, True)
    assert classify(CallSpan(199, 200), "bangalore", [], faults)[:2] == (None, True)


def test_report_totals_json_and_markdown(tmp_path: Path) -> None:
    series = Series(0.0, [Second(0, 10, 9, 0), Second(1, 10, 9, 2), Second(2, 0, 2, 0)])
    failed = [
        FailedCallReport(1.2, "g", "1@x", "SIP/2.0 503", "kill-site:dhaka", False, "down"),
    ]
    report = Report(
        plan={"rate": 10, "duration": 2, "ramp": 0, "talk_ms": 500, "at": "now"},
        series=series,
        faults=[],
        failed_calls=failed,
        distribution=compare(Counter({("a", "q"): 20}), Counter({("a", "q"): 18})),
    )
    assert report.totals == {
        "placed": 20,
        "successful": 20,
        "failed": 2,
        "failed_saveable": 0,
        "failed_abandoned_in_queue": 0,
        "failed_unsaveable": 1,
        "failed_unexplained": 1,
        "misrouted": 2,  # 20 predicted at a/q, 18 observed there
    }
    assert report.mean_rate == 10.0  # 20 calls placed over seconds 0 and 1
    paths = report.write(tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["totals"]["failed"] == 2 and len(data["seconds"]) == 3
    md = paths["markdown"].read_text()
    assert "| a | q | 20 | 18 | -2 |" in md and "SIP/2.0 503" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_builds_a_plan_with_periodic_faults(config: Config, tmp_path: Path) -> None:
    from ccbridge.cli import build_parser
    from ccbridge.loadtest.cli import build_plan

    args = build_parser().parse_args(
        [
            "loadtest",
            "--rate",
            "4",
            "--duration",
            "5m",
            "--did",
            "+918000000001",
            "--countries",
            "IN=1,GB=1",
            "--ivr",
            "+918000000003:11:en:orders",
            "--fault",
            "30s:drain:manila:10s",
            "--fault-every",
            "2m",
            "--fault-kinds",
            "restart-bridge",
            "--carrier",
            "blr-pstn1=503",
            "--out",
            str(tmp_path),
        ]
    )
    plan = build_plan(config, args)
    assert len(plan.groups) == 3 and plan.groups[2].digits == "11"
    assert [(f.at, f.kind.value) for f in plan.faults] == [
        (30.0, "drain"),
        (120.0, "restart-bridge"),
        (240.0, "restart-bridge"),
    ]
    assert plan.carriers == (("blr-pstn1", "503"),) and plan.duration == 300
    args.carrier = ["blr-pstn1=loud"]
    with pytest.raises(PlanError, match="mode"):
        build_plan(config, args)


def test_cli_report_folder_is_absolute(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIPp runs in its own folder: a relative --out once made it fail to open its stat file.
    from ccbridge.cli import build_parser
    from ccbridge.loadtest.cli import build_plan

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["loadtest", "--rate", "1", "--out", "rel/run"])
    assert build_plan(config, args).out_dir == tmp_path / "rel" / "run"
