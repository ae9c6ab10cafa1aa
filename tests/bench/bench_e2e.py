"""End to end: what each route step costs the site's Asterisk per call, every path side by
side in one run, against the static floor measured in the same run.

One lab, one site (bangalore), the same target for every path: Answer, Wait(0.2), Hangup
(the dialplan behind the 300 calls/s floor in asterisk-lab.md).

* static: ``ccb-inbound`` -> Answer/Wait/Hangup. The floor: no route step at all.
* agi-floor: a FastAGI step answered by the cheapest FastAGI server there can be (read
  the header, send the one ``EXEC MSet`` ccbridge sends, close), in its own process.
* routed: the same step answered by a real `ccbridge run` subprocess, Asterisk connecting
  to the bridge directly (``bridge.agi_listen``).
* routed-guard: the same, through the site's AGI guard (HAProxy, ``${CCB_AGI_URL}``): the
  guard's hop, and its CPU (it runs on the PBX's host) counted with Asterisk's.
  A call these three did not route (AGISTATUS != SUCCESS or CCB_ROUTE empty) is
  rejected with cause 34, so SIPp counts it failed.
* held: the production dialplan as rendered with ``use_without_bridge`` on, the real
  number (+918000000001) from a Hindi caller: ``ccb-inbound``'s two held steps, then the
  held route ``orders-hi`` (its ccb-queue extension is the target). The static fallback
  of the number is replaced by Hangup(34), so a call that missed every route fails.
* production: the production dialplan with the lab config's mix (one SIPp caller
  dials each call's extension from an injection file, the shares interleaved evenly:
  ``production_mix``). ``--ivr-share`` (default 0.08) are IVR callers of the menu number
  +918000000003 who picked returns in English: ccb-route takes the held route keyed by
  that service (CCB_HS_..., no FastAGI; ccb-queue's returns-en and ccb-dispatch's
  extensions are the target, the IVR choice's static fallback is Hangup(34)).
  ``--agi-share`` (default 0.02) stand for what still needs the bridge per call in the
  lab's config: the order-status self-service lookup (a per-call answer from caller
  data; every route, after it too, is held). Its FastAGI round trip through the guard
  is measured as the routed-guard path's (same guard, one AGI session, one answer);
  the lookup caller's held route after it is not added. The shares assume IVR callers
  are 10 % of calls (the previous mix) and one in five of them takes the lookup (one
  of the main menu's five routing choices: orders, returns, lookup, voicemail,
  operator): an assumption, not lab traffic. The rest take the number's held route.

At each rate every path runs once per round for ``--seconds``, in a different order each
round, with a static step before and after each one (static, A, static, B, ..., one
static step between rounds, not two: ``plan_steps``): the machine is shared and its load
drifts, so a path's ratio uses the static steps beside it, and the report gives the
median and the spread over ``--rounds``, and for each path the median's bootstrap
interval with a verdict against the production target (tests/bench/verdict.py): met
only when the interval clears it, "not resolved" when the median meets it inside the
noise. For the production figure alone, ``--variants production`` alternates static and
production only (twice the rounds in the same time). CPU comes from
/proc/PID/stat (utime + stime, all threads) of the site's Asterisk, its guard, the AGI
server (bridge or floor) and SIPp. The ratio to static is static's Asterisk CPU per call
over the path's (its guard's too for the guarded paths): the share of static's call
capacity the path keeps when the PBX's CPU is the limit.

``--records`` gives the bridge a call-record store (SQLite), as a deployment with records
runs it (records on against off in one run: tests/bench/bench_e2e_records.py).

``--webhook-hang`` gives the bridge a webhook target that accepts and never answers, and
pops for it from real queue calls beside the measured ones (tests/bench/webhook_hang.py):
the route paths' ratios and failures against a run without it show what a hung CRM
costs routing; the result adds the bridge's pop and webhook counters.

``--ami-tls`` runs another set in one run: static, routed with the bridge's AMI link to
bangalore in plain text (port 5038) and routed-tls with it over TLS (5039, verified; the
lab's TLS pair, ccbridge.lab.tls). The two bridges take turns behind the same AGI guard
and dialplan, so their ratio is what AMI over TLS costs the routed path.

    .venv/bin/python -m tests.bench.bench_e2e [--rates 150] [--seconds 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ccbridge import variables as v
from ccbridge.agi import codec
from ccbridge.config import load_config
from ccbridge.config.model import Site
from ccbridge.lab.lock import lab_lock
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sipp import SCENARIOS
from ccbridge.lab.sites import REPO_ROOT, Lab
from ccbridge.loadtest.bridgectl import BridgeProcess
from ccbridge.loadtest.run import EVERY_SITE_OPEN
from ccbridge.loadtest.sipp import caller_argv
from ccbridge.loadtest.stats import read_stat_file
from ccbridge.routing.held import held_key
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.schema import calls
from tests.bench import webhook_hang as hang
from tests.bench.bench_fastagi import ServerProcess, cpu_seconds
from tests.bench.verdict import Estimate, estimate, only

SITE = "bangalore"
DID = "+918000000001"
CALLER = "+919812345678"  # Hindi by its prefix: the held route is bangalore's orders-hi
TARGET_PRODUCTION = 0.97
VARIANTS = ("static", "agi-floor", "routed", "routed-guard", "held", "production")
GUARDED = ("routed-guard", "production")  # the guard's CPU counts as the PBX host's
# The extension each path's calls dial at the site ("bq": no N/X/Z pattern letters).
EXTENS = {
    "static": "bench-static",
    "agi-floor": f"bq{DID}",
    "routed": f"br{DID}",
    "routed-guard": f"bg{DID}",
    "held": DID,
    "production": DID,
}
EXTENS["routed-tls"] = EXTENS["routed-guard"]  # the same route step; another bridge behind it
TLS_VARIANTS = ("static", "routed", "routed-tls")
TLS_EXTENS = {**EXTENS, "routed": EXTENS["routed-guard"]}  # both bridges behind the guard
IVR_DID = "+918000000003"  # the lab's Indian number answered by a menu
IVR_OTHER_SERVICE = f"bi{IVR_DID}"  # production's IVR share: a choice of "returns" in English
IVR_SHARE = 0.08
AGI_SHARE = 0.02  # production's per-call FastAGI share: the self-service lookups
FLOOR_PORT = 4599
# What ccbridge sets for a queue decision: six variables in one MSet, CCB_ROUTE last.
FLOOR_COMMAND = (
    codec.exec_app(
        "MSet",
        f"{v.SITE}={SITE},{v.QUEUE}=orders-hi,{v.SERVICE}=orders,{v.LANGUAGE}=hi,"
        f"{v.REASONS}=caller_prefix home_site,{v.ROUTE}={v.ROUTE_QUEUE}",
    )
    + "\n"
).encode()
# The CPU window of a step runs this long past its last call's start (measured_step): a
# clean step's SIPp is done 0.8 s after it at 150 calls/s.
CPU_SETTLE = 1.5
LATE_AFTER = 2.0  # SIPp still running this long after the window: the step is not used
TARGET = ("Answer()", "Wait(0.2)", "Hangup()")
# The call ID as ccb-inbound gives it (dialplans/extensions.conf.j2), sent in the route
# request: with records on, the bridge's decision starts the call's record. Every path
# sets it, static too: the production dialplan gives every call one where it enters.
CALLID = "${STRFTIME(,UTC,%s.%6q)}:${CUT(UNIQUEID,.,${FIELDQTY(UNIQUEID,.)})}"


def _route_context(name: str, agi_url: str, site: str) -> list[str]:
    agi = f"AGI({agi_url}?site={site}&lang=&service=&callid=${{{v.CALLID}}})"
    return [
        f"dialplan add extension _[+0-9].,1,Set(__{v.DID}=${{EXTEN}}) into {name} replace",
        f"dialplan add extension _[+0-9].,2,Set(__{v.CALLID}={site}:{CALLID}) into {name} replace",
        f"dialplan add extension _[+0-9].,3,Set({v.ROUTE}=) into {name} replace",
        f"dialplan add extension _[+0-9].,4,{agi} into {name} replace",
        f"dialplan add extension _[+0-9].,5,GotoIf($[${{AGISTATUS}}!=SUCCESS]?10) into {name}"
        " replace",
        f"dialplan add extension _[+0-9].,6,GotoIf($[${{LEN(${{{v.ROUTE}}})}}=0]?10) into {name}"
        " replace",
        f"dialplan add extension _[+0-9].,7,Answer() into {name} replace",
        f"dialplan add extension _[+0-9].,8,Wait(0.2) into {name} replace",
        f"dialplan add extension _[+0-9].,9,Hangup() into {name} replace",
        f"dialplan add extension _[+0-9].,10,Hangup(34) into {name} replace",
    ]


def _target(exten: str, context: str, first: tuple[str, ...] = ()) -> list[str]:
    return [
        f"dialplan add extension {exten},{i},{app} into {context} replace"
        for i, app in enumerate((*first, *TARGET), 1)
    ]


def dialplan_commands(site: str, bridge_agi: str) -> list[str]:
    """CLI lines adding the bench paths (no spaces or quotes: the CLI splits and strips
    them). The held and production paths are the rendered dialplan, with its queue and
    dispatch steps replaced by the target and its static fallbacks by a failure."""
    route, guard, floor = (f"ccb-bench-{n}-{site}" for n in ("route", "guard", "floor"))
    ivr = f"{v.IVR_SERVICE}=returns,{v.IVR_LANGUAGE}=en"
    return [
        *_target("bench-static", "ccb-inbound", (f"Set(__{v.CALLID}={site}:{CALLID})",)),
        f"dialplan add extension _br+.,1,Goto({route},${{EXTEN:2}},1) into ccb-inbound replace",
        f"dialplan add extension _bg+.,1,Goto({guard},${{EXTEN:2}},1) into ccb-inbound replace",
        f"dialplan add extension _bq+.,1,Goto({floor},${{EXTEN:2}},1) into ccb-inbound replace",
        f"dialplan add extension _bi+.,1,MSet({ivr}) into ccb-inbound replace",
        "dialplan add extension _bi+.,2,Goto(ccb-route,${EXTEN:2},1) into ccb-inbound replace",
        *_route_context(route, f"agi://{bridge_agi}/{v.AGI_ROUTE}", site),
        *_route_context(guard, "${CCB_AGI_URL}", site),
        *_route_context(floor, f"agi://127.0.0.1:{FLOOR_PORT}/route", site),
        # the held route's queue, and every route the bridge may answer, end in the target
        *_target("orders-hi", "ccb-queue"),
        *_target("returns-en", "ccb-queue"),
        *(line for kind in v.ROUTE_KINDS for line in _target(kind, "ccb-dispatch")),
        # a call that missed its held or FastAGI route fails instead of reaching a queue
        f"dialplan add extension {DID},1,Hangup(34) into ccb-fallback replace",
        f"dialplan add extension {IVR_DID},1,Hangup(34) into ccb-fallback replace",
        "dialplan add extension returns-en,1,Hangup(34) into ccb-ivr-fallback replace",
    ]


LAB_HELD_LINE = "  held_routes: {use_without_bridge: false, fresh_age: 5, max_age: 300}\n"


def held_config_text() -> str:
    """examples/lab.yaml with held routes taken while the bridge is alive, for the bench's
    bridge process: it writes the routes into ccb-inbound only when its own config says
    so (the dialplan rendered from the same setting has the steps it writes into)."""
    text = (REPO_ROOT / "examples" / "lab.yaml").read_text(encoding="utf-8")
    assert LAB_HELD_LINE in text, "examples/lab.yaml's held_routes line changed"
    text = text.replace(LAB_HELD_LINE, LAB_HELD_LINE.replace("false", "true"))
    # its secrets' paths are relative to examples/
    return text.replace("file: ../.lab/", f"file: {REPO_ROOT / '.lab'}/")


def install_dialplan(lab: Lab, site: Site, agi_listen: str) -> None:
    """Add the bench paths to the site's running dialplan; a line the CLI refuses stops
    the bench (a path missing would be measured as failed calls)."""
    for cmd in dialplan_commands(site.name, agi_listen):
        out = lab.cli(site, cmd)
        if "Extension" not in out and out.strip():
            raise RuntimeError(f"{cmd}: {out.strip()}")


# --------------------------------------------------------------------------- CPU per call


class SippCpu:
    """Polls the CPU time of this step's SIPp (it exits with the step, taking its counters)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker.encode()
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> SippCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as fh:
                        cmd = fh.read()
                except OSError:
                    continue
                is_sipp = cmd.startswith(b"sipp") or b"/sipp\0" in cmd
                if is_sipp and self.marker in cmd:
                    self.seen[int(entry)] = cpu_seconds(int(entry))

    @property
    def total(self) -> float:
        return sum(self.seen.values())


@dataclass
class Step:
    variant: str
    rate: float
    round: int
    seq: int  # the step's place in the run: a path's static steps are its neighbours
    calls: int
    successful: int
    failed: int
    response_ms: float | None
    routed: int  # route decisions the bridge logged during the step
    seconds: float
    cpu_ms_per_call: dict[str, float] = field(default_factory=dict)
    late: bool = False  # SIPp ran LATE_AFTER past the CPU window: see measured_step

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.successful == self.calls

    @property
    def usable(self) -> bool:
        """Clean and on time: a step whose ratio to static means something."""
        return self.clean and not self.late

    @property
    def pbx_ms(self) -> float:
        """CPU per call on the PBX's host: Asterisk, and the guard when the path uses it."""
        guard = self.cpu_ms_per_call.get("guard", 0.0) if self.variant in GUARDED else 0.0
        return self.cpu_ms_per_call["asterisk"] + guard


def production_mix(n: int, held: str, share: tuple[float, float]) -> list[str]:
    """The extension each of ``n`` production calls dials: the shares interleaved evenly
    (each call goes to the part furthest behind its share so far), so one caller places
    the whole mix in a steady order, as a carrier's trunk delivers it."""
    ivr, agi = share
    parts = [(held, 1 - ivr - agi), (IVR_OTHER_SERVICE, ivr), (EXTENS["routed-guard"], agi)]
    got = dict.fromkeys((x for x, _ in parts), 0)
    mix = []
    for i in range(1, n + 1):
        exten = max(parts, key=lambda p: p[1] * i - got[p[0]])[0]
        got[exten] += 1
        mix.append(exten)
    return mix


def _mix_files(out: Path, mix: list[str]) -> tuple[Path, Path]:
    """A copy of the far-hangup caller dialling each call's own extension (``[field0]`` of
    an injection file read in order), and that file."""
    scenario = out / "far_hangup_mix.xml"
    text = (SCENARIOS / "loadtest_far_hangup.xml").read_text(encoding="utf-8")
    scenario.write_text(text.replace("[service]", "[field0]"), encoding="utf-8")
    inf = out / "production_mix.csv"
    inf.write_text("SEQUENTIAL\n" + "".join(f"{x};\n" for x in mix), encoding="utf-8")
    return scenario, inf


def place(
    target: str,
    variant: str,
    rate: float,
    seconds: float,
    port: int,
    out: Path,
    share: tuple[float, float],
    extens: dict[str, str] = EXTENS,
) -> tuple[int, int, int, float | None]:
    """The path's calls from one SIPp caller (production's mix too: one caller dialling
    each call's extension from an injection file); (calls, ok, failed, mean INVITE->200
    ms). Until the sixth session production ran one SIPp per part of its mix, in
    parallel: two more SIPp processes contending for the two cores than beside static,
    which the ratio charged to the production dialplan (BENCHMARKS §1)."""
    exten, extra = extens[variant], ()
    scenario = SCENARIOS / "loadtest_far_hangup.xml"
    calls = int(rate * seconds)
    if variant == "production":
        scenario, inf = _mix_files(out, production_mix(calls, exten, share))
        extra = ("-inf", str(inf))
    name = exten.replace("+", "")
    stat, err = out / f"{name}-{rate:g}.csv", out / f"{name}-{rate:g}.err"
    argv = caller_argv(
        scenario=scenario,
        target=target,
        did=exten,
        caller=CALLER,
        calls=calls,
        rate=rate,
        limit=max(50, int(rate * 3)),
        talk_ms=0,
        port=port,
        max_seconds=seconds + 30,
        stat_file=stat,
        error_file=err,
        recv_timeout_ms=10_000,  # a lost 200 or BYE fails the call within the step
    )
    proc = subprocess.Popen(
        (*argv, *extra),
        cwd=out,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc.wait(seconds + 45)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    rows = read_stat_file(stat)
    last = rows[-1] if rows else None
    ok = last.successful if last else 0
    failed = last.failed if last else calls
    rts = [r.response_ms for r in rows if r.response_ms > 0]
    return calls, ok, failed, (round(sum(rts) / len(rts), 2) if rts else None)


def count_routed(log: Path, offset: int) -> tuple[int, int]:
    """(route decisions for DID logged since ``offset``, new offset)."""
    with open(log, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    needle = f"did={DID}".encode()
    n = sum(1 for line in data.splitlines() if b"msg=routed" in line and needle in line)
    return n, offset + len(data)


def measured_step(
    site: Site,
    variant: str,
    rate: float,
    rnd: int,
    seconds: float,
    wd: Path,
    pids: dict[str, int],
    share: tuple[float, float] = (IVR_SHARE, AGI_SHARE),
    extens: dict[str, str] = EXTENS,
) -> Step:
    """One step, with the CPU seconds per call of every process named in ``pids`` and SIPp.

    The processes' CPU is read over the same window for every step, ``seconds`` +
    CPU_SETTLE from the start, not until SIPp exits: Asterisk burns 30-60 ms/s between
    calls (SIP transaction timers of earlier calls, its own housekeeping), so a step
    whose SIPp lingered 3 s on one retransmitted call was charged 0.1 ms more per call
    (5 % of static's cost: production's three SIPp callers lingered most, and its ratio
    fell with them). A call still running at the window's end leaves the rest of its
    hangup uncounted: a BYE's worth, for a few calls at most. A step whose SIPp ran on
    for LATE_AFTER past the window is ``late`` and left out of the ratios: then the
    machine was too busy to keep up (at load 17 on the 2 cores SIPp ran 5-13 s past, and
    Asterisk's rate after the window was 270-320 ms/s, real calls' work the window cut
    off, where until SIPp's exit charged the waiting), and neither window is right."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    at_end: dict[str, float] = {}
    window = threading.Timer(
        seconds + CPU_SETTLE,
        lambda: at_end.update({name: cpu_seconds(pid) for name, pid in pids.items()}),
    )
    window.start()
    with SippCpu(str(wd)) as sipp:
        calls, ok, failed, rt = place(
            str(site.sip), variant, rate, seconds, 6400, wd, share, extens
        )
    window.join()  # SIPp done early: the window still ends at seconds + CPU_SETTLE
    used = {name: at_end[name] - before[name] for name in pids}
    used["sipp"] = sipp.total
    took = time.monotonic() - t0
    step = Step(variant, rate, rnd, 0, calls, ok, failed, rt, 0, round(took, 1))
    step.cpu_ms_per_call = {name: round(1000 * sec / calls, 3) for name, sec in used.items()}
    step.late = took > seconds + CPU_SETTLE + LATE_AFTER
    return step


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def static_around(steps: list[Step], step: Step) -> float | None:
    """Static's PBX CPU per call around ``step``: the mean of the clean static steps just
    before and just after it (the load of this shared machine drifts within a round)."""
    by_seq = {s.seq: s for s in steps}
    near = [by_seq.get(step.seq + d) for d in (-1, 1)]
    got = [s.pbx_ms for s in near if s is not None and s.variant == "static" and s.usable]
    return sum(got) / len(got) if got else None


def summarise(steps: list[Step], rates: list[float]) -> dict[str, object]:
    """Per rate and path: CPU per call and the ratio to the static steps run just before
    and after it, as median and spread over the rounds (clean steps only)."""
    out: dict[str, object] = {}
    for rate in rates:
        at = [s for s in steps if s.rate == rate]
        per: dict[str, object] = {}
        for var in VARIANTS:
            mine = [s for s in at if s.variant == var and s.usable]
            if not mine:
                per[var] = {"clean_rounds": 0}
                continue
            around = [(static_around(steps, s), s.pbx_ms) for s in mine]
            ratios = [st / own for st, own in around if st is not None]
            per[var] = {
                "clean_rounds": len(mine),
                "failed_rounds": sum(1 for s in at if s.variant == var and not s.clean),
                "late_rounds": sum(1 for s in at if s.variant == var and s.clean and s.late),
                "pbx_ms": _spread([s.pbx_ms for s in mine]),
                **{
                    f"{name}_ms": _spread([s.cpu_ms_per_call[name] for s in mine])
                    for name in mine[0].cpu_ms_per_call
                },
                "ratio_to_static": _spread(ratios) if ratios else None,
                "routed_per_call": round(
                    sum(s.routed for s in mine) / sum(s.calls for s in mine), 3
                ),
            }
        out[f"{rate:g}"] = per
    return out


def plan_steps(paths: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, path) in the order to run them: static between every two paths and at
    both ends (A S B S A ...: each path's ratio is to the static steps beside it), the
    paths in another order each round, and no two static steps in a row where one
    round ends and the next begins (the old plan ran static twice there: a step in
    every round spent on nothing)."""
    out = [(0, "static")]
    for rnd in range(rounds):
        k = rnd % len(paths) if paths else 0
        for path in paths[k:] + paths[:k]:
            out += [(rnd, path), (rnd, "static")]
    return out


def judge_ratio(ratios: list[float], target: float = TARGET_PRODUCTION) -> Estimate:
    """A path's ratio to static over every round: the median, its bootstrap interval,
    and whether the interval clears the target (tests/bench/verdict.py)."""
    return estimate([ratios], only, target, at_least=True)


def judge_paths(steps: list[Step], rates: list[float]) -> dict[str, dict[str, object]]:
    """Per rate and path, the ratio to the static steps beside each clean step, judged
    against the production target with its interval."""
    out: dict[str, dict[str, object]] = {}
    for rate in rates:
        per: dict[str, object] = {}
        for var in VARIANTS:
            if var == "static":
                continue
            mine = [s for s in steps if s.rate == rate and s.variant == var and s.usable]
            around = [(static_around(steps, s), s.pbx_ms) for s in mine]
            ratios = [st / own for st, own in around if st is not None]
            if ratios:
                per[var] = {**judge_ratio(ratios).as_dict(), "rounds": len(ratios)}
        out[f"{rate:g}"] = per
    return out


def _pid_of(pid: int | None, what: str) -> int:
    if pid is None:
        raise RuntimeError(f"no {what} process")
    return pid


def run(
    rates: list[float],
    seconds: float,
    rounds: int,
    variants: tuple[str, ...] = VARIANTS,
    share: tuple[float, float] = (IVR_SHARE, AGI_SHARE),
    records: bool = False,
    webhook_hang: bool = False,
) -> dict[str, object]:
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    scratch = Path(tempfile.mkdtemp(prefix="ccb-e2e-records-"))
    path = scratch / "lab-records.yaml"
    path.write_text(held_config_text(), encoding="utf-8")
    if records:
        # The lab's config with a store: the bridge records every call (SQLite, migrated).
        text = held_config_text()
        path.write_text(text + f"\nstore:\n  url: sqlite:///{scratch}/records.db\n")
        recorded = load_config(path)
        engine = make_engine(recorded.store)
        asyncio.run(_upgrade(engine))
    crm = hang.HangingCrm() if webhook_hang else None
    if crm is not None:  # the same file with a screen_pop section for the hung CRM
        path.write_text(path.read_text() + hang.config_section(crm.url))
    # The production dialplan with held routes taken while the bridge is alive; the
    # bridge reads the same setting from its YAML (``held_config_text``).
    held = replace(config.routing.held_routes, enabled=True, use_without_bridge=True)
    config = replace(config, routing=replace(config.routing, held_routes=held))
    lab = Lab(config)
    site = config.site(SITE)
    steps: list[Step] = []
    pops: dict[str, float] | None = None  # --webhook-hang: the bridge's pop counters
    with lab_lock(on_wait=lambda: print("e2e: waiting for the lab lock", flush=True)):
        lab.down()
        lab.up()
        bridge = BridgeProcess(lab, EVERY_SITE_OPEN)
        bridge.config = dataclasses.replace(config, source=str(path))
        try:
            asyncio.run(bridge.start())
            listen = config.bridge.agi_listen
            install_dialplan(lab, site, f"{listen.host}:{listen.port}")
            offset = bridge.log_file.stat().st_size
            asterisk = _pid_of(lab.pid(site), "asterisk")
            guard = _pid_of(lab.guard_pid(site), "guard")
            assert bridge.proc is not None
            # The cheapest FastAGI answer: bench_fastagi's bare server sending our MSet line.
            with (
                ServerProcess("bare", port=FLOOR_PORT, command=FLOOR_COMMAND) as floor,
                tempfile.TemporaryDirectory(prefix="ccb-e2e-") as wd,
                hang.PopFeeder(lab, 60 + rounds * len(variants) * 2 * (seconds + 4))
                if webhook_hang
                else contextlib.nullcontext(),
            ):
                servers = {"agi-floor": floor.pid}
                _wait_for_held_routes(lab, site)
                _check_path(lab, site, Path(wd), "held")
                # production's IVR part alone: the service-keyed held route must route it
                _check_path(lab, site, Path(wd), "production", (1.0, 0.0))
                order = [var for var in VARIANTS if var in variants and var != "static"]
                for rate in rates:
                    for rnd, variant in plan_steps(order, rounds):
                        time.sleep(2)  # the previous step's channels close
                        pids = {"asterisk": asterisk, "guard": guard}
                        pids["agi_server"] = servers.get(variant, bridge.proc.pid)
                        _, offset = count_routed(bridge.log_file, offset)
                        step = measured_step(
                            site, variant, rate, rnd, seconds, Path(wd), pids, share
                        )
                        step.routed, offset = count_routed(bridge.log_file, offset)
                        step.seq = len(steps)
                        steps.append(step)
                        print(f"e2e: {json.dumps(asdict(step))}", flush=True)
                pops = hang.pop_metrics(bridge.base) if webhook_hang else None
        finally:
            bridge.stop()
            lab.down()
            if crm is not None:
                crm.close()
    recorded_calls = asyncio.run(_count_calls(scratch / "records.db")) if records else None
    shutil.rmtree(scratch, ignore_errors=True)
    summary = summarise(steps, rates)
    production = [
        (per.get("production") or {}).get("ratio_to_static")  # type: ignore[union-attr]
        for per in summary.values()
    ]
    medians = [p["median"] for p in production if isinstance(p, dict)]
    judged = judge_paths(steps, rates)
    return {
        "bench": "e2e",
        "site": SITE,
        "seconds_per_step": seconds,
        "rounds": rounds,
        "rates": rates,
        "ivr_share": share[0],
        "agi_share": share[1],
        "steps": [asdict(s) for s in steps],
        "summary": summary,
        "records": records,
        "recorded_calls": recorded_calls,
        "webhook_hang": pops,
        "target_production": TARGET_PRODUCTION,
        "production_ratio": min(medians) if medians else 0.0,
        "judged": judged,
        "met": bool(medians) and min(medians) >= TARGET_PRODUCTION,
    }


def _wait_for_held_routes(lab: Lab, site: Site, within: float = 20.0) -> None:
    """The bridge has written the site's held table, and the held path's route into
    ccb-inbound (without it the held path would ask the bridge: measured as held, it
    would be FastAGI's cost)."""
    key = held_key(DID, "hi")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        out = lab.cli(site, f"dialplan eval function GLOBAL({key})")
        if "Result: orders-hi/" in out and "ccb-queue,orders-hi,1:" in lab.cli(
            site, "dialplan show ccb-inbound"
        ):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no held route {key} at {site.name} after {within:g}s")


def _check_path(
    lab: Lab, site: Site, wd: Path, variant: str, share: tuple[float, float] = (0.0, 0.0)
) -> None:
    """A few calls at a walk must all succeed, or the bench stops with what the site
    holds: a broken path would otherwise read as a cost."""
    calls, ok, failed, _ = place(str(site.sip), variant, 2, 2, 6400, wd, share)
    if failed or ok != calls:
        raise RuntimeError(
            f"{variant} path failed {failed} of {calls} calls at 2/s; now {int(time.time())};"
            f" globals:\n{lab.cli(site, 'dialplan show globals')}"
        )


def run_ami_tls(rates: list[float], seconds: float, trials: int) -> dict[str, object]:
    """static, routed (plain AMI) and routed-tls (AMI over TLS) at each rate in turn."""
    from ccbridge.lab.tls import enable_lab_tls

    ensure_lab_secrets()
    plain = load_config(REPO_ROOT / "examples" / "lab.yaml")
    tls = enable_lab_tls(plain)
    assert tls.site(SITE).ami.tls is not None and plain.site(SITE).ami.tls is None
    lab = Lab(tls)  # manager.conf: plain 5038 and TLS 5039; the bridges pick one
    site = tls.site(SITE)
    bridges = {"routed": BridgeProcess(lab, EVERY_SITE_OPEN)}
    bridges["routed"].config = plain  # `ccbridge run` on the plain YAML
    bridges["routed-tls"] = BridgeProcess(lab, EVERY_SITE_OPEN)  # on the TLS YAML
    steps: list[Step] = []
    with lab_lock(on_wait=lambda: print("e2e: waiting for the lab lock", flush=True)):
        lab.down()
        lab.up()
        running: str | None = None
        try:
            listen = tls.bridge.agi_listen
            install_dialplan(lab, site, f"{listen.host}:{listen.port}")
            asterisk_pid = lab.pid(site)
            assert asterisk_pid is not None
            alive = dict.fromkeys(TLS_VARIANTS, True)
            with tempfile.TemporaryDirectory(prefix="ccb-e2e-") as wd:
                for rate in rates:
                    for variant in TLS_VARIANTS:
                        if not alive[variant]:
                            continue
                        pids = {"asterisk": asterisk_pid}
                        if variant in bridges and running != variant:
                            if running is not None:
                                bridges[running].stop()
                            asyncio.run(bridges[variant].start())
                            running = variant
                            if variant == "routed-tls":
                                _assert_tls_link(bridges[variant])
                        if variant in bridges:
                            proc = bridges[variant].proc
                            assert proc is not None
                            pids["agi_server"] = proc.pid
                        for _ in range(trials):
                            time.sleep(3)  # the previous step's channels close
                            step = measured_step(
                                site,
                                variant,
                                rate,
                                0,
                                seconds,
                                Path(wd),
                                pids,
                                (0.0, 0.0),
                                TLS_EXTENS,
                            )
                            step.seq = len(steps)
                            steps.append(step)
                            print(f"e2e: {json.dumps(asdict(step))}", flush=True)
                            if step.clean:
                                break
                        else:
                            alive[variant] = False
        finally:
            for bridge in bridges.values():
                bridge.stop()
            lab.down()
    best = {
        var: max((s.rate for s in steps if s.variant == var and s.clean), default=0.0)
        for var in TLS_VARIANTS
    }
    clean = {(s.variant, s.rate): s for s in steps if s.clean}
    common = [r for r in rates if ("routed", r) in clean and ("routed-tls", r) in clean]
    cpu: dict[str, object] = {}
    if common:
        rate = max(common)
        cpu = {"rate": rate, **{v_: clean[(v_, rate)].cpu_ms_per_call for v_ in bridges}}
    return {
        "bench": "e2e-ami-tls",
        "site": SITE,
        "seconds_per_step": seconds,
        "steps": [asdict(s) for s in steps],
        "best": best,
        "tls_to_plain": round(best["routed-tls"] / best["routed"], 3) if best["routed"] else 0.0,
        "routed_to_static": round(best["routed"] / best["static"], 3) if best["static"] else 0.0,
        "tls_to_static": round(best["routed-tls"] / best["static"], 3) if best["static"] else 0.0,
        "cpu_ms_per_call": cpu,
        "capped": best["static"] == max(rates),
    }


def _assert_tls_link(bridge: BridgeProcess) -> None:
    """The TLS bridge really logged in over TLS (its log says which port)."""
    site = bridge.config.site(SITE)
    assert site.ami.tls is not None
    needle = f"AMI logged in to {site.ami.host}:{site.ami.tls.port}"
    if needle not in bridge.log_text():
        raise RuntimeError(f"the routed-tls bridge did not log '{needle}'")


async def _upgrade(engine: AsyncEngine) -> None:
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _count_calls(db: Path) -> int:
    """Calls the bridge recorded over the run (its routed and production steps)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(calls))).scalar_one())
    finally:
        await engine.dispose()


def _print_summary(result: dict[str, object]) -> None:
    summary = result["summary"]
    assert isinstance(summary, dict)
    for rate, per in summary.items():
        for var, row in per.items():
            if not row.get("clean_rounds"):
                print(f"e2e: {rate}/s {var}: no clean round", flush=True)
                continue
            ratio = row["ratio_to_static"] or {}
            r_med, r_lo, r_hi = (ratio.get(k, 0) for k in ("median", "min", "max"))
            print(
                f"e2e: {rate}/s {var:13} PBX {row['pbx_ms']['median']:.3f} ms/call "
                f"[{row['pbx_ms']['min']:.3f}-{row['pbx_ms']['max']:.3f}]  ratio to static "
                f"{r_med:.3f} [{r_lo:.3f}-{r_hi:.3f}]"
                f"  bridge decisions/call {row['routed_per_call']}  clean rounds "
                f"{row['clean_rounds']}/{row['clean_rounds'] + row['failed_rounds']}"
                f" (+{row['late_rounds']} late, left out)",
                flush=True,
            )


def _print_judged(result: dict[str, object]) -> None:
    """Each path's ratio over all its rounds with its interval: how sure the figure is."""
    judged = result["judged"]
    assert isinstance(judged, dict)
    for rate, per in judged.items():
        for var, e in per.items():
            low, high = e["interval"]
            got = Estimate(e["value"], low, high, e["target"], e["at_least"])
            print(f"e2e: {rate}/s {var:13} ratio to static, {e['rounds']} rounds: {got.text()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rates", default="150", help="calls/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=VARIANTS, action="append", help="paths (static always)")
    ap.add_argument(
        "--agi-share", type=float, default=AGI_SHARE, help="production calls that need FastAGI"
    )
    ap.add_argument(
        "--ivr-share", type=float, default=IVR_SHARE, help="production IVR calls (service-held)"
    )
    ap.add_argument("--variants", help="comma-separated paths to run (default: all)")
    ap.add_argument("--records", action="store_true", help="the bridge keeps call records (SQLite)")
    ap.add_argument(
        "--webhook-hang", action="store_true", help="pops to a webhook target that never answers"
    )
    ap.add_argument(
        "--ami-tls", action="store_true", help="static, routed over plain AMI and over TLS AMI"
    )
    ap.add_argument("--trials", type=int, default=2, help="--ami-tls: tries per rate")
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    if args.ami_tls:
        got = run_ami_tls(rates, args.seconds, args.trials)
        print(
            f"e2e AMI TLS: highest calls/s with 0 failed {got['best']}; routed-tls/routed "
            f"{got['tls_to_plain']}; to static: routed {got['routed_to_static']}, routed-tls "
            f"{got['tls_to_static']}; CPU ms per call {got['cpu_ms_per_call']}"
            + (" [the highest rate tried: the real ceiling may be higher]" if got["capped"] else "")
        )
        if args.json:
            Path(args.json).write_text(json.dumps(got, indent=2) + "\n")
        return 0
    chosen = [*(args.only or []), *(args.variants.split(",") if args.variants else [])]
    variants = ("static", *(x for x in chosen if x in VARIANTS)) if chosen else VARIANTS
    result = run(
        rates,
        args.seconds,
        args.rounds,
        variants,
        (args.ivr_share, args.agi_share),
        args.records,
        args.webhook_hang,
    )
    _print_summary(result)
    if result["webhook_hang"]:
        print(f"e2e: webhook target hung: {json.dumps(result['webhook_hang'])}", flush=True)
    print(
        f"e2e: production ({result['ivr_share']:g} IVR held by service, {result['agi_share']:g} "
        "over FastAGI) ratio to static "
        f"{result['production_ratio']} (target >= {TARGET_PRODUCTION}): "
        + ("met" if result["met"] else "missed"),
        flush=True,
    )
    _print_judged(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
