"""bench_e2e_callgrind: reading callgrind's dumps and SIPp's counters, and the arithmetic
from instructions per window to each path's ratio to static."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from tests.bench.bench_e2e_callgrind import (
    CgStep,
    by_object_and_function,
    callgrind_command,
    composed_production,
    parse_costs,
    parse_totals,
    per_call,
    plan,
    ratios,
    resummarise,
    sipp_retransmissions,
    summarise,
)

# The shape of a dump callgrind 3.19 writes on `vgdb ... dump` (--dump-line=no still
# says "positions: line"), names compressed: "(n) name" defines n, "(n)" refers to it.
DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 28962
cmd:  /usr/sbin/asterisk -C /etc/ast-bangalore/asterisk.conf -f -n -q
part: 1

desc: Trigger: dump

positions: line
events: Ir
summary: 1654820


ob=(1) /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
fl=(1) ???
fn=(2) __tls_get_addr
0 132

ob=(3) /usr/sbin/asterisk
fl=(3) ???
fn=(4) pbx_exec
0 1000
cob=(5) /usr/lib/x86_64-linux-gnu/asterisk/modules/res_agi.so
cfi=(3)
cfn=(6) 0x0000000000002490
calls=2 0
0 50000
fn=(6)
0 10
ob=(5)
fn=(6)
0 7000
ob=(1)
fn=(2)
+2 8

totals: 8150
"""


def test_totals_are_the_dumps_ir() -> None:
    assert parse_totals(DUMP) == 8150
    # a dump with only the header's summary (older callgrind), and Ir not first
    assert parse_totals("events: Dr Ir\nsummary: 5 77\n") == 77


@pytest.mark.parametrize(
    "text", ["", "events: Ir\n", "events: Dr\ntotals: 5\n", "totals: x\n", "<html>"]
)
def test_garbage_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError):
        parse_totals(text)


def test_self_costs_skip_the_inclusive_cost_of_a_call_and_follow_compressed_names() -> None:
    own, incl = parse_costs(DUMP)
    agi = "/usr/lib/x86_64-linux-gnu/asterisk/modules/res_agi.so"
    assert own == {
        ("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "__tls_get_addr"): 140,
        ("/usr/sbin/asterisk", "pbx_exec"): 1000,
        ("/usr/sbin/asterisk", "0x0000000000002490"): 10,  # fn=(6) while ob is asterisk
        (agi, "0x0000000000002490"): 7000,
    }
    assert sum(own.values()) == parse_totals(DUMP)  # self costs add up to the total
    # pbx_exec's inclusive cost: its own and the call's (the callee's inclusive cost)
    assert incl[("/usr/sbin/asterisk", "pbx_exec")] == 51_000
    named = by_object_and_function(own, incl)
    assert named["res_agi.so:*"] == 7000 and named["asterisk:*"] == 1010
    assert named["asterisk:pbx_exec"] == 1000 and named["incl asterisk:pbx_exec"] == 51_000
    assert "incl res_agi.so:0x0000000000002490" not in named  # an address: self cost only


def test_sipp_retransmissions_come_from_the_last_full_line() -> None:
    head = "StartTime;CurrentTime;Retransmissions(C);SuccessfulCall(C)\n"
    assert sipp_retransmissions(head + "a;b;0;3\na;b;2;7\n") == 2
    assert sipp_retransmissions(head + "a;b;1;3\na;b;") == 1  # SIPp still writing
    assert sipp_retransmissions("StartTime;CurrentTime\na;b\n") == 0
    assert sipp_retransmissions("") == 0


def step(variant: str, rnd: int, seq: int, ir: int, calls: int = 10, **kw: int) -> CgStep:
    return CgStep(
        variant,
        rnd,
        seq,
        calls,
        kw.get("ok", calls),
        kw.get("failed", 0),
        kw.get("retrans", 0),
        ir,
        ir / 1e9,
    )


def run_of(paths: dict[str, list[int]], idle: int = 1000) -> list[CgStep]:
    """Steps in ``plan`` order: each path's Ir per round as given; static 10,000 a call."""
    steps: list[CgStep] = []
    for rnd, var in plan(list(paths), len(next(iter(paths.values()))), False):
        if var == "idle":
            steps.append(step("idle", rnd, len(steps), idle, calls=0))
        elif var == "static":
            steps.append(step("static", rnd, len(steps), idle + 10 * 10_000))
        else:
            steps.append(step(var, rnd, len(steps), idle + 10 * paths[var][rnd]))
    return steps


def test_the_plan_puts_an_idle_step_and_static_beside_every_path_each_round() -> None:
    got = plan(["held", "routed"], 2, records=True)
    first = ["idle", "static", "held", "static", "routed", "static"]
    assert got[:6] == [(0, x) for x in first]
    assert got[6:9] == [(0, "static-records"), (0, "routed-records"), (0, "static-records")]
    assert got[9:12] == [(1, "idle"), (1, "static"), (1, "routed")]  # the order turns


def test_ratio_is_static_per_call_over_the_paths_with_the_idle_window_taken_off() -> None:
    steps = run_of({"held": [10_000, 10_100, 9_900], "routed": [12_500, 12_500, 12_500]})
    held = next(s for s in steps if s.variant == "held")
    assert per_call(steps, held) == 10_000
    assert ratios(steps, "routed") == {0: 0.8, 1: 0.8, 2: 0.8}
    got = summarise(steps, ["static", "held", "routed"], (0.0, 0.0))
    row = got["held"]
    assert isinstance(row, dict)
    assert row["ratio_ir"]["median"] == 1.0
    assert row["ir_per_call"]["spread_pct"] == 2.0
    routed = got["routed"]
    assert isinstance(routed, dict) and routed["verdict_ir"]["verdict"] == "MISSED"


def test_a_step_with_a_failed_call_or_a_retransmission_is_left_out() -> None:
    steps = run_of({"held": [10_000, 10_000]})
    steps[2] = step("held", 0, 2, 1000 + 10 * 20_000, retrans=1)  # a SIP timer fired
    assert not steps[2].usable and ratios(steps, "held") == {1: 1.0}
    steps[1] = step("static", 0, 1, 1000 + 10 * 10_000, ok=9, failed=1)
    steps[2] = step("held", 0, 2, 1000 + 10 * 10_000)
    # round 0's held step has one usable static beside it (after), still a ratio
    assert ratios(steps, "held") == {0: 1.0, 1: 1.0}


def test_no_idle_step_means_no_cost_per_call() -> None:
    steps = [step("static", 0, 0, 5000), step("held", 0, 1, 5000)]
    assert per_call(steps, steps[1]) is None and ratios(steps, "held") == {}


def test_production_composed_from_its_parts() -> None:
    per = {"static": 100.0, "held": 100.0, "ivr": 110.0, "routed-guard": 200.0}
    assert composed_production(per, (0.1, 0.1)) == pytest.approx(100 / 111)
    assert composed_production({"static": 1.0}, (0.1, 0.1)) is None


def test_records_difference_per_round() -> None:
    steps: list[CgStep] = []
    for rnd in range(3):
        for var, cost in [
            ("idle", 0),
            ("static", 10_000),
            ("routed", 12_500),
            ("static", 10_000),
            ("static-records", 11_000),
            ("routed-records", 13_750),
            ("static-records", 11_000),
        ]:
            calls = 0 if var == "idle" else 10
            steps.append(step(var, rnd, len(steps), 1000 + calls * cost, calls=calls))
    got = summarise(steps, ["static", "routed", "static-records", "routed-records"], (0, 0))
    diff = got["records-difference"]
    assert isinstance(diff, dict)
    assert diff["per_round"] == [0.0, 0.0, 0.0] and diff["verdict"] == "met"


def test_the_command_runs_valgrind_inside_the_root_with_its_own_proc() -> None:
    argv = callgrind_command(__import__("pathlib").Path("/lab/root"), ["/usr/sbin/asterisk", "-f"])
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "sh"]
    inner = argv[-1]
    assert inner.startswith("mount -t proc proc /lab/root/proc && exec chroot /lab/root env")
    assert "--tool=callgrind" in inner and inner.endswith("/usr/sbin/asterisk -f")


def test_the_idle_windows_median_is_taken_off_every_step() -> None:
    # one round's idle window caught a qualify: the median of the three is the baseline
    steps = run_of({"held": [10_000, 10_000, 10_000]})
    idle = [s for s in steps if s.variant == "idle"]
    idle[0].ir = 31_000
    assert per_call(steps, next(s for s in steps if s.variant == "held")) == 10_000


def test_a_saved_run_is_summarised_again_from_its_steps() -> None:
    steps = run_of({"held": [10_000, 10_500], "routed": [12_500, 12_500]})
    saved = {"steps": [asdict(s) for s in steps], "ivr_share": 0.0, "agi_share": 0.0}
    again = resummarise(json.loads(json.dumps(saved)))
    assert again["summary"] == summarise(steps, ["static", "held", "routed"], (0.0, 0.0))
