"""The load-test harness on the real lab, small: a few calls, one bridge restart, a report.

Keeps `ccbridge loadtest` from rotting; the real runs are `make bench`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from ccbridge.config import Config
from ccbridge.lab.sipp import Agent
from ccbridge.lab.sites import Lab
from ccbridge.loadtest.options import LoadPlan, parse_ivr, plain_groups
from ccbridge.loadtest.run import EVERY_SITE_OPEN, Setup, run
from ccbridge.loadtest.timeline import parse_fault


async def test_smoke_run_with_a_bridge_restart_writes_a_consistent_report(
    lab: Lab, lab_config: Config, agents: dict[str, Agent], tmp_path: Path
) -> None:
    # English callers spread over two sites' orders-en queues (2 agents each, 5 s wrap-up):
    # the lab carries this load without callers waiting anywhere near SIPp's timeout.
    groups = plain_groups(lab_config, ["+918000000001", "+6328000001"], {"GB": 1})
    plan = LoadPlan(
        rate=2,
        duration=5,
        groups=tuple(groups),
        talk_ms=300,
        faults=(parse_fault("2s:restart-bridge"),),
        at=EVERY_SITE_OPEN,
        out_dir=tmp_path,
    )
    lines: list[str] = []
    # The session's lab and agents stay up: the harness only adds the bridge and callers.
    setup = Setup(lab_config, plan, lab, agents=False, fresh_lab=False)
    report = await run(setup, progress=lines.append)
    paths = await asyncio.to_thread(report.write, tmp_path)  # a chart: seconds of CPU

    for p in paths.values():
        assert p.exists() and p.stat().st_size > 0, p
    data = json.loads(paths["json"].read_text())
    t = data["totals"]
    assert t["placed"] == plan.expected_calls == sum(g["placed"] for g in data["groups"])
    assert t["successful"] + t["failed"] == t["placed"]
    assert t["failed_saveable"] == 0, data["failed_calls"]
    assert all(f["placed"] <= f["t"] for f in data["failed_calls"])  # judged from placement
    assert sum(r["observed"] for r in data["distribution"]) == t["placed"]
    assert sum(r["predicted"] for r in data["distribution"]) == t["placed"]
    [fault] = data["faults"]
    assert fault["kind"] == "restart-bridge" and fault["error"] is None
    assert fault["started"] is not None and fault["recovered"] is not None
    assert any("placed=" in line for line in lines)  # the progress line


async def test_ivr_callers_with_the_default_talk_time_reach_the_predicted_queue(
    lab: Lab, lab_config: Config, agents: dict[str, Agent], tmp_path: Path
) -> None:
    # The run: `--ivr +918000000003:11:en:orders` with the default talk time (1 s).
    # Before, the callers hung up while the menu still had them: predicted 2 at
    # bangalore's orders-en, observed 0, and the run said "2 successful, 0 failed".
    # Two calls 2 s apart for bangalore's two English agents: none waits, none overflows
    # (the prediction does not model the load the run itself builds up).
    plan = LoadPlan(
        rate=0.5,
        duration=4,
        groups=(parse_ivr(lab_config, "+918000000003:11:en:orders"),),
        at=EVERY_SITE_OPEN,
        out_dir=tmp_path,
    )
    assert plan.talk_ms == 1000  # the default the defect was seen with
    report = await run(Setup(lab_config, plan, lab, agents=False, fresh_lab=False), lambda _: None)
    t = report.totals
    assert t["placed"] == plan.expected_calls == 2
    rows = {(r["site"], r["queue"]): (r["predicted"], r["observed"]) for r in report.distribution}
    assert rows[("bangalore", "orders-en")] == (2, 2), report.distribution
    assert t["misrouted"] == 0 and t["failed"] == 0
    assert report.passed, (report.summary_line(), [f.as_dict() for f in report.failed_calls])
