"""End to end: highest calls/s with zero failed calls, ccbridge routing vs a static dialplan.

One lab, one run, the same site (bangalore) and the same target: Answer, Wait(0.2),
Hangup — the dialplan the 300 calls/s floor in asterisk-lab.md was measured with.

* static: ``ccb-inbound`` -> Answer/Wait/Hangup.
* routed: the real route step first — Set(CCB_DID), AGI(agi://bridge/route?site=...)
  answered by a real `ccbridge run` subprocess (its decision, live AMI state, metrics,
  logging) — and a call the bridge did not route (AGISTATUS != SUCCESS or CCB_ROUTE
  empty) is rejected with cause 34, so SIPp counts it failed. Then Answer/Wait/Hangup.
* agi-floor: the same route step, but answered by the cheapest FastAGI server there can
  be (read the header, send the one ``EXEC MSet`` ccbridge sends for this call, close),
  in its own process. Asterisk does the same AGI work as for ``routed``; the difference
  between the two is ccbridge's own cost, and between ``agi-floor`` and ``static`` it
  is what FastAGI costs Asterisk whoever answers it.
* held: the production held-route step alone (``Gosub(ccb-held,DID,1(5,fresh))`` of the
  rendered dialplan: heartbeat and route read from AstDB, validated, the route's
  variables set, the ``CcbHeldRoute`` UserEvent to the bridge), no FastAGI; a call it
  does not route is rejected with cause 34.
* production: the rendered ``ccb-route`` logic in full (held route while fresh, else
  FastAGI, else the last held route), with a realistic mix: ``--agi-share`` of the calls
  (default 0.1) come from an IVR where the caller picked another service than the
  number's, which no held route answers, so they ask the bridge over FastAGI; the rest
  take the held route. Two SIPp callers split the rate.

All contexts are added at run time with `dialplan add extension` (no template changes).
Rates are tried upward, the variants in turn at each rate, each for ``--seconds``; a
variant stops at the first rate where ``--trials`` tries in a row each fail a call (the
machine is shared: one noisy step should not end a variant). Every step records the CPU
seconds per call of the site's Asterisk, the AGI server (bridge or floor) and SIPp.

    .venv/bin/python -m tests.bench.bench_e2e [--rates 100,200,300,350,400] [--seconds 10]

``--ami-tls`` runs another set in one run: static, routed with the bridge's AMI link to
bangalore in plain text (port 5038) and routed-tls with it over TLS (5039, verified; the
lab's TLS pair, ccbridge.lab.tls). The two bridges take turns behind the same AGI guard
and dialplan, so their ratio is what AMI over TLS costs the routed path.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
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
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.schema import calls
from tests.bench.bench_fastagi import ServerProcess

SITE = "bangalore"
DID = "+918000000001"
CALLER = "+919812345678"
TARGET_RATIO = 0.95
TARGET_PRODUCTION = 0.97
VARIANTS = ("static", "routed", "agi-floor", "held", "production")
# The extension each variant's calls dial at the site ("bq": no N/X/Z pattern letters).
EXTENS = {
    "static": "bench-static",
    "routed": f"br{DID}",
    "agi-floor": f"bq{DID}",
    "held": f"bh{DID}",
    "production": f"bp{DID}",
}
EXTENS["routed-tls"] = EXTENS["routed"]  # the same route step; another bridge behind it
TLS_VARIANTS = ("static", "routed", "routed-tls")
IVR_OTHER_SERVICE = f"bi{DID}"  # production's FastAGI share: an IVR choice of "returns"
AGI_SHARE = 0.1
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
TICK = os.sysconf("SC_CLK_TCK")


# The call ID as ccb-inbound gives it (dialplans/extensions.conf.j2), sent in the route
# request: with records on, the bridge's decision starts the call's record.
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


def _held_context(name: str) -> list[str]:
    held = f"Gosub(ccb-held,${{EXTEN}},1(5,{v.HELD_FRESH}))"
    return [
        f"dialplan add extension _[+0-9].,1,Set(__{v.DID}=${{EXTEN}}) into {name} replace",
        f"dialplan add extension _[+0-9].,2,Set({v.ROUTE}=) into {name} replace",
        f"dialplan add extension _[+0-9].,3,{held} into {name} replace",
        f"dialplan add extension _[+0-9].,4,GotoIf($[${{LEN(${{{v.ROUTE}}})}}=0]?10) into {name}"
        " replace",
        # priorities run on one by one: a gap would end the call ("auto fall through")
        f"dialplan add extension _[+0-9].,5,Answer() into {name} replace",
        f"dialplan add extension _[+0-9].,6,Wait(0.2) into {name} replace",
        f"dialplan add extension _[+0-9].,7,Hangup() into {name} replace",
        f"dialplan add extension _[+0-9].,10,Hangup(34) into {name} replace",
    ]


def _production_context(name: str, site: str) -> list[str]:
    """ccb-route as rendered (held fresh, FastAGI, held fallback), Answer/Wait/Hangup after."""
    agi = (
        f"AGI(${{CCB_AGI_URL}}?site={site}&lang=${{{v.IVR_LANGUAGE}}}&service=${{{v.IVR_SERVICE}}})"
    )
    route = f"${{LEN(${{{v.ROUTE}}})}}"
    lines = [
        f"_[+0-9].,1,Set(__{v.DID}=${{EXTEN}})",
        f"_[+0-9].,2,Set({v.ROUTE}=)",
        f"_[+0-9].,3,Gosub(ccb-held,${{EXTEN}},1(5,{v.HELD_FRESH}))",
        f"_[+0-9].,4,GotoIf($[{route}>0]?20)",
        f"_[+0-9].,5,{agi}",
        f"_[+0-9].,6,GotoIf($[${{AGISTATUS}}=SUCCESS&{route}>0]?20)",
        f"_[+0-9].,7,Gosub(ccb-held,${{EXTEN}},1(300,{v.HELD_FALLBACK}))",
        f"_[+0-9].,8,GotoIf($[{route}>0]?20)",
        "_[+0-9].,9,Hangup(34)",
        "_[+0-9].,20,Answer()",
        "_[+0-9].,21,Wait(0.2)",
        "_[+0-9].,22,Hangup()",
    ]
    return [f"dialplan add extension {line} into {name} replace" for line in lines]


def dialplan_commands(site: str) -> list[str]:
    """CLI lines adding every variant (no spaces or quotes: the CLI splits and strips them)."""
    route, floor = f"ccb-bench-route-{site}", f"ccb-bench-floor-{site}"
    held, prod = f"ccb-bench-held-{site}", f"ccb-bench-prod-{site}"
    ivr = f"{v.IVR_SERVICE}=returns"
    return [
        "dialplan add extension bench-static,1,Answer() into ccb-inbound replace",
        "dialplan add extension bench-static,2,Wait(0.2) into ccb-inbound replace",
        "dialplan add extension bench-static,3,Hangup() into ccb-inbound replace",
        f"dialplan add extension _br+.,1,Goto({route},${{EXTEN:2}},1) into ccb-inbound replace",
        f"dialplan add extension _bq+.,1,Goto({floor},${{EXTEN:2}},1) into ccb-inbound replace",
        f"dialplan add extension _bh+.,1,Goto({held},${{EXTEN:2}},1) into ccb-inbound replace",
        f"dialplan add extension _bp+.,1,Goto({prod},${{EXTEN:2}},1) into ccb-inbound replace",
        f"dialplan add extension _bi+.,1,Set({ivr}) into ccb-inbound replace",
        f"dialplan add extension _bi+.,2,Goto({prod},${{EXTEN:2}},1) into ccb-inbound replace",
        *_route_context(route, "${CCB_AGI_URL}", site),
        *_route_context(floor, f"agi://127.0.0.1:{FLOOR_PORT}/route", site),
        *_held_context(held),
        *_production_context(prod, site),
    ]


# --------------------------------------------------------------------------- CPU per call


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


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
    calls: int
    successful: int
    failed: int
    response_ms: float | None
    routed: int  # route decisions the bridge logged for these calls (routed variant)
    seconds: float
    cpu_ms_per_call: dict[str, float] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.successful == self.calls


def place(
    target: str, variant: str, rate: float, seconds: float, port: int, out: Path, share: float
) -> Step:
    """One SIPp caller per part of the variant's mix, in parallel; their stats summed."""
    parts = [(EXTENS[variant], rate)]
    if variant == "production" and share > 0:
        parts = [(EXTENS[variant], rate * (1 - share)), (IVR_OTHER_SERVICE, rate * share)]
    procs, files, calls = [], [], 0
    t0 = time.monotonic()
    for i, (exten, r) in enumerate(parts):
        n = int(r * seconds)
        calls += n
        stat, err = out / f"{exten}-{rate:g}.csv", out / f"{exten}-{rate:g}.err"
        argv = caller_argv(
            scenario=SCENARIOS / "loadtest_far_hangup.xml",
            target=target,
            did=exten,
            caller=CALLER,
            calls=n,
            rate=r,
            limit=max(50, int(r * 3)),
            talk_ms=0,
            port=port + i,
            max_seconds=seconds + 30,
            stat_file=stat,
            error_file=err,
            recv_timeout_ms=10_000,  # a lost 200 or BYE fails the call within the step
        )
        files.append((stat, n))
        procs.append(
            subprocess.Popen(
                argv,
                cwd=out,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    for p in procs:
        try:
            p.wait(seconds + 45)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    ok = failed = 0
    rts: list[float] = []
    for stat, n in files:
        rows = read_stat_file(stat)
        last = rows[-1] if rows else None
        ok += last.successful if last else 0
        failed += last.failed if last else n
        rts += [r.response_ms for r in rows if r.response_ms > 0]
    return Step(
        variant,
        rate,
        calls,
        ok,
        failed,
        round(sum(rts) / len(rts), 2) if rts else None,
        0,
        round(time.monotonic() - t0, 1),
    )


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
    seconds: float,
    wd: Path,
    pids: dict[str, int],
    share: float = AGI_SHARE,
) -> Step:
    """One step, with the CPU seconds per call of every process named in ``pids`` and SIPp."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    with SippCpu(str(wd)) as sipp:
        step = place(str(site.sip), variant, rate, seconds, 6400, wd, share)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    used["sipp"] = sipp.total
    step.cpu_ms_per_call = {name: round(1000 * sec / step.calls, 3) for name, sec in used.items()}
    return step


def run(
    rates: list[float],
    seconds: float,
    max_total: float,
    variants: tuple[str, ...] = VARIANTS,
    trials: int = 2,
    share: float = AGI_SHARE,
    records: bool = False,
) -> dict[str, object]:
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    lab = Lab(config)
    scratch = Path(tempfile.mkdtemp(prefix="ccb-e2e-records-"))
    if records:
        # The lab's config with a store: the bridge records every call (SQLite, migrated).
        path = scratch / "lab-records.yaml"
        text = (REPO_ROOT / "examples" / "lab.yaml").read_text(encoding="utf-8")
        path.write_text(text + f"\nstore:\n  url: sqlite:///{scratch}/records.db\n")
        recorded = load_config(path)
        engine = make_engine(recorded.store)
        asyncio.run(_upgrade(engine))
    site = config.site(SITE)
    steps: list[Step] = []
    with lab_lock(on_wait=lambda: print("e2e: waiting for the lab lock", flush=True)):
        lab.down()
        lab.up()
        bridge = BridgeProcess(lab, EVERY_SITE_OPEN)
        if records:
            bridge.config = dataclasses.replace(config, source=str(path))
        try:
            asyncio.run(bridge.start())
            for cmd in dialplan_commands(SITE):
                out = lab.cli(site, cmd)
                if "Extension" not in out and out.strip():
                    raise RuntimeError(f"{cmd}: {out.strip()}")
            offset = bridge.log_file.stat().st_size
            asterisk_pid = lab.pid(site)
            assert bridge.proc is not None and asterisk_pid is not None
            # The cheapest FastAGI answer: bench_fastagi's bare server sending our MSet line.
            with (
                ServerProcess("bare", port=FLOOR_PORT, command=FLOOR_COMMAND) as floor,
                tempfile.TemporaryDirectory(prefix="ccb-e2e-") as wd,
            ):
                # The bridge answers routed's FastAGI and hears held's UserEvents.
                servers = {
                    "routed": bridge.proc.pid,
                    "agi-floor": floor.pid,
                    "held": bridge.proc.pid,
                    "production": bridge.proc.pid,
                }
                _wait_for_held_routes(lab, site)
                _check_held_path(lab, site, Path(wd))
                started = time.monotonic()
                alive = {var: var in variants for var in VARIANTS}
                for rate in rates:
                    for variant in VARIANTS:
                        # A noisy step (this machine is shared) gets another go before a
                        # variant stops: its ceiling is the last rate with a clean trial.
                        for _ in range(trials):
                            if not alive[variant] or time.monotonic() - started > max_total:
                                break
                            time.sleep(3)  # the previous step's channels close
                            pids = {"asterisk": asterisk_pid}
                            if variant in servers:
                                pids["agi_server"] = servers[variant]
                            step = measured_step(
                                site, variant, rate, seconds, Path(wd), pids, share
                            )
                            if variant == "routed":
                                step.routed, offset = count_routed(bridge.log_file, offset)
                            steps.append(step)
                            print(f"e2e: {json.dumps(asdict(step))}", flush=True)
                            if step.clean:
                                break
                        else:
                            alive[variant] = False
        finally:
            bridge.stop()
            lab.down()
    recorded_calls = asyncio.run(_count_calls(scratch / "records.db")) if records else None
    shutil.rmtree(scratch, ignore_errors=True)
    best = {
        var: max((s.rate for s in steps if s.variant == var and s.clean), default=0.0)
        for var in VARIANTS
    }
    ratio = best["routed"] / best["static"] if best["static"] else 0.0
    floor_ratio = best["routed"] / best["agi-floor"] if best["agi-floor"] else 0.0
    to_static = {
        var: round(best[var] / best["static"], 3) if best["static"] else 0.0 for var in VARIANTS
    }
    return {
        "bench": "e2e",
        "records": records,
        "recorded_calls": recorded_calls,
        "site": SITE,
        "seconds_per_step": seconds,
        "trials_per_rate": trials,
        "steps": [asdict(s) for s in steps],
        "best_static": best["static"],
        "best_routed": best["routed"],
        "best_agi_floor": best["agi-floor"],
        "best": best,
        "ratio": round(ratio, 3),
        "ratio_to_agi_floor": round(floor_ratio, 3),
        "ratio_to_static": to_static,
        "agi_share": share,
        "cpu_ms_per_call": _cpu_at_common_rate(steps),
        "target_ratio": TARGET_RATIO,
        "target_production": TARGET_PRODUCTION,
        "met": to_static["production"] >= TARGET_PRODUCTION,
        "capped": best["static"] == max(rates),
    }


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
            for cmd in dialplan_commands(SITE):
                out = lab.cli(site, cmd)
                if "Extension" not in out and out.strip():
                    raise RuntimeError(f"{cmd}: {out.strip()}")
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
                            step = measured_step(site, variant, rate, seconds, Path(wd), pids)
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


def _wait_for_held_routes(lab: Lab, site: Site, within: float = 20.0) -> None:
    """The bridge has written the site's held table and keeps its heartbeat fresh."""
    key = f"{v.HELD_ROUTE_KEY}/{DID}/hi"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if "Value: 1/" in lab.cli(site, f"database get {v.HELD_FAMILY} {key}"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no held route {key} at {site.name} after {within:g}s")


def _check_held_path(lab: Lab, site: Site, wd: Path) -> None:
    """A few held calls at a walk must all succeed, or the bench stops with what AstDB
    held: a broken held path would otherwise read as a capacity ceiling of 0."""
    step = place(str(site.sip), "held", 2, 2, 6400, wd, 0.0)
    if not step.clean:
        raise RuntimeError(
            f"held path failed {step.failed} of {step.calls} calls at 2/s; now "
            f"{int(time.time())}; AstDB:\n{lab.cli(site, f'database show {v.HELD_FAMILY}')}"
        )


def _cpu_at_common_rate(steps: list[Step]) -> dict[str, object]:
    """CPU ms per call of each variant at the highest rate all of them ran clean."""
    clean = {var: {s.rate: s for s in steps if s.variant == var and s.clean} for var in VARIANTS}
    common = (
        set.intersection(*(set(c) for c in clean.values() if c)) if any(clean.values()) else set()
    )
    if not common:
        return {}
    rate = max(common)
    return {
        "rate": rate,
        **{var: clean[var][rate].cpu_ms_per_call for var in VARIANTS if clean[var]},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rates", default="300,400,500,550,600,650,700,750,800,900,1000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-total", type=float, default=900.0, help="seconds for all steps")
    ap.add_argument("--trials", type=int, default=2, help="tries per rate before a variant stops")
    ap.add_argument("--only", choices=VARIANTS, help="one variant (e.g. to find a ceiling)")
    ap.add_argument("--variants", help="comma-separated variants to run (default: all)")
    ap.add_argument("--records", action="store_true", help="the bridge keeps call records (SQLite)")
    ap.add_argument(
        "--agi-share", type=float, default=AGI_SHARE, help="production calls that need FastAGI"
    )
    ap.add_argument("--json", help="write the result here too")
    ap.add_argument(
        "--ami-tls", action="store_true", help="static, routed over plain AMI and over TLS AMI"
    )
    args = ap.parse_args(argv)
    if args.ami_tls:
        rates = [float(r) for r in args.rates.split(",")]
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
    variants = (args.only,) if args.only else VARIANTS
    if args.variants:
        variants = tuple(x for x in args.variants.split(",") if x in VARIANTS)
    rates = [float(r) for r in args.rates.split(",")]
    result = run(
        rates, args.seconds, args.max_total, variants, args.trials, args.agi_share, args.records
    )
    best = result["best"]
    assert isinstance(best, dict)
    print(
        "e2e: highest calls/s with 0 failed: "
        + ", ".join(f"{var} {best[var]:g}" for var in VARIANTS)
        + f"; ratio to static {result['ratio_to_static']} (production target >= "
        f"{TARGET_PRODUCTION}, {result['agi_share']:g} of its calls over FastAGI); "
        f"routed/agi-floor {result['ratio_to_agi_floor']}; CPU ms per call "
        f"{result['cpu_ms_per_call']}"
        + (" [the highest rate tried: the real ceiling may be higher]" if result["capped"] else "")
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
