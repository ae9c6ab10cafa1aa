"""End to end by instruction count: Asterisk's instructions per call on each route path,
under callgrind, against the static path's steps beside it.

bench_e2e measures each path by the CPU time of the site's Asterisk; on the 2-vCPU guest
static's own steps spread +-18 %, several times the effects to resolve (issue 18 part 3:
production >= 0.97 x static; issue 12: records on keeps the routed ratio within 0.02 of
off). Instructions do not depend on the host's load. bangalore's Asterisk runs under
``valgrind --tool=callgrind`` (the host's valgrind 3.19 run inside the lab root: its
launcher, the callgrind tool, its preload library and default.supp copied to
``/opt/ccb-valgrind`` in the root, ``VALGRIND_LIB`` pointing there, the root's ``/proc``
mounted in a private mount namespace that ends with the process: ``install_valgrind``,
``callgrind_command``). Each step: zero the counters (callgrind's ``zero`` through
``vgdb``, what ``callgrind_control -z`` sends), N calls of one path at a walk (default 4
calls/s: Asterisk under callgrind is ~50x slower, and SIP timers must not fire), the
window held for a fixed time after the first call, ``dump``: the dump's total is the
window's instructions (Ir). An ``idle`` step each round (no calls, the same window)
measures what Asterisk does by itself meanwhile (the bridge's held-route heartbeat, AMI
pings, qualifies, timers); a path's cost per call is (window Ir - the idle windows'
median) / calls. A step counts only when every call completed and SIPp sent no
retransmission (its timers did not fire).

Paths (bench_e2e's, installed the same way: ``install_dialplan``): static, held, production
(the mix of held, IVR by service and FastAGI through the guard, from one SIPp caller),
routed-guard (FastAGI through the site's HAProxy, whose CPU is not in these counts: it is
another process), routed (FastAGI straight to the bridge), ivr (production's IVR part
alone: a menu choice taking the service-keyed held route), and with ``--records`` a second
bridge with a call-record store (SQLite) takes over for static-records and routed-records
(records on vs off, issue 12). The order of the paths turns each round, static between
every two (``plan_steps``). Ratio per path = static Ir per call (mean of the static steps
beside it) / the path's Ir per call; the report gives per path the median and spread over
the rounds and the verdict against 0.97 (tests/bench/verdict.py), the records difference
against -0.02, each path's CPU time per call from the same steps beside it (the CPU of the
valgrind process, so callgrind's own overhead included: for the honest comparison only),
and with ``--profile N`` the N functions (and shared objects) where each path's
instructions go, self cost per call, from the dumps.

    .venv/bin/python -m tests.bench.bench_e2e_callgrind --calls 40 --rate 4 --rounds 3 [--records]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ccbridge.config import load_config
from ccbridge.config.model import Site
from ccbridge.lab.lock import lab_lock
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sites import REPO_ROOT, Lab
from ccbridge.loadtest.bridgectl import BridgeProcess
from ccbridge.loadtest.run import EVERY_SITE_OPEN
from ccbridge.store.engine import make_engine
from tests.bench.bench_e2e import (
    AGI_SHARE,
    EXTENS,
    IVR_OTHER_SERVICE,
    IVR_SHARE,
    SITE,
    TARGET_PRODUCTION,
    _check_path,
    _upgrade,
    _wait_for_held_routes,
    held_config_text,
    install_dialplan,
    place,
    plan_steps,
)
from tests.bench.bench_fastagi import cpu_seconds
from tests.bench.verdict import Estimate, estimate, only

WITHIN = 0.02  # issue 12: records on keeps the routed ratio within 0.02 of off
PATHS = ("held", "production", "routed-guard", "routed", "ivr")
RECORD_PATHS = ("static-records", "routed-records")
CG_EXTENS = {
    **EXTENS,
    "ivr": IVR_OTHER_SERVICE,
    "static-records": EXTENS["static"],
    "routed-records": EXTENS["routed"],
}
VG_INSIDE = "/opt/ccb-valgrind"  # the copy of the host's valgrind, as the root sees it
VGDB_PREFIX = "/tmp/ccb-vgdb"  # callgrind's control pipes, as the root sees them
OUT_INSIDE = "/tmp/ccb-callgrind"  # its dumps, as the root sees them
LIBEXEC = Path("/usr/libexec/valgrind")
HOST_VALGRIND = (
    (Path("/usr/bin/valgrind.bin"), "valgrind"),  # Debian's /usr/bin/valgrind is a wrapper
    (LIBEXEC / "callgrind-amd64-linux", "lib/callgrind-amd64-linux"),
    (LIBEXEC / "vgpreload_core-amd64-linux.so", "lib/vgpreload_core-amd64-linux.so"),
    (LIBEXEC / "default.supp", "lib/default.supp"),
)  # fmt: skip
SETTLE = 10.0  # seconds after a bridge starts: it writes the whole held table again
GAP = 2.0  # seconds between steps: the previous step's channels close


# --------------------------------------------------------------- callgrind's output


def parse_totals(text: str) -> int:
    """The Ir total of a callgrind dump: its ``totals:`` line (``summary:`` in older
    dumps), the column ``events:`` names Ir.

    ``events: Ir`` ... ``totals: 183442180`` -> 183442180."""
    events = ["Ir"]
    found: int | None = None
    for line in text.splitlines():
        if line.startswith("events:"):
            events = line.split(":", 1)[1].split()
        elif line.startswith(("totals:", "summary:")):
            fields = line.split(":", 1)[1].split()
            if "Ir" not in events or len(fields) <= events.index("Ir"):
                raise ValueError(f"no Ir in {line!r} (events {events})")
            found = int(fields[events.index("Ir")])
            if line.startswith("totals:"):
                return found
    if found is None:
        raise ValueError("not a callgrind dump: no totals: or summary: line")
    return found


_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def _name(table: dict[str, str], value: str) -> str:
    """A compressed name: ``(12) ast_str_hash`` defines 12, ``(12)`` refers to it."""
    m = _NAMED.match(value.strip())
    if m is None:
        return value.strip()
    ident, name = m.groups()
    if name is not None:
        table[ident] = name
        return name
    return table.get(ident, f"({ident})")


def parse_costs(text: str) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """Self and inclusive Ir per (shared object, function) of a callgrind dump. A cost
    line after ``calls=`` is that call's inclusive cost: the caller's inclusive cost, not
    its self cost (a recursive function counts its inner calls again). Positions
    (``positions: line`` by default, or ``instr line``) come first on a cost line, the
    events after them."""
    npos, ir_at = 1, 0
    objs: dict[str, str] = {}
    fns: dict[str, str] = {}
    obj = fn = ""
    a_call = False
    own: dict[tuple[str, str], int] = defaultdict(int)
    incl: dict[tuple[str, str], int] = defaultdict(int)
    for line in text.splitlines():
        if not line:
            continue
        if line[0].isdigit() or line[0] in "+-*":
            fields = line.split()
            ir = int(fields[npos + ir_at]) if len(fields) > npos + ir_at else 0
            incl[(obj, fn)] += ir
            if not a_call:
                own[(obj, fn)] += ir
            a_call = False
            continue
        key, _, value = line.partition("=")
        if key == "ob":
            obj = _name(objs, value)
        elif key == "fn":
            fn = _name(fns, value)
        elif key == "cob":
            _name(objs, value)  # a definition to remember
        elif key == "cfn":
            _name(fns, value)
        elif key == "calls":
            a_call = True
        elif line.startswith("positions:"):
            npos = len(line.split(":", 1)[1].split())
        elif line.startswith("events:"):
            ir_at = line.split(":", 1)[1].split().index("Ir")
    return dict(own), dict(incl)


def by_object_and_function(
    own: dict[tuple[str, str], int], incl: dict[tuple[str, str], int]
) -> dict[str, int]:
    """Self Ir keyed ``object:function`` and, summed, ``object:*`` (the Debian build's
    modules are stripped: a static function is only an address, its module still says
    whose work it is); inclusive Ir keyed ``incl object:function``, for named functions
    only (what a dialplan application, function or event costs with all it calls)."""
    out: dict[str, int] = defaultdict(int)
    for (obj, fn), ir in own.items():
        if ir:
            name = Path(obj).name or "?"
            out[f"{name}:{fn}"] += ir
            out[f"{name}:*"] += ir
    for (obj, fn), ir in incl.items():
        if ir and not fn.startswith("0x"):
            out[f"incl {Path(obj).name or '?'}:{fn}"] += ir
    return dict(out)


def sipp_retransmissions(stat_text: str) -> int:
    """SIPp's cumulative ``Retransmissions(C)`` on the last full line of a -trace_stat
    file (0 when the column is missing): a retransmission means a SIP timer fired."""
    lines = [ln.rstrip(";").split(";") for ln in stat_text.splitlines() if ln.strip()]
    if len(lines) < 2 or "Retransmissions(C)" not in lines[0]:
        return 0
    at = lines[0].index("Retransmissions(C)")
    for row in reversed(lines[1:]):
        if len(row) > at and row[at].strip().isdigit():
            return int(row[at])
    return 0


# --------------------------------------------------------------- steps and arithmetic


@dataclass
class CgStep:
    variant: str
    round: int
    seq: int
    calls: int
    successful: int
    failed: int
    retransmissions: int
    ir: int  # instructions of the window
    cpu_s: float  # CPU seconds of the valgrind process over the window
    profile: dict[str, int] = field(default_factory=dict)  # self Ir by "object:function"

    @property
    def usable(self) -> bool:
        """Every call completed, no SIP timer fired (an idle step has no calls)."""
        return self.failed == 0 and self.successful == self.calls and self.retransmissions == 0


def idle_of(steps: list[CgStep], rnd: int) -> CgStep | None:
    """The round's idle step (the machine's own work in a window with no calls)."""
    return next((s for s in steps if s.variant == "idle" and s.round == rnd), None)


def per_call(steps: list[CgStep], step: CgStep, what: str = "ir") -> float | None:
    """The step's instructions (or CPU seconds) per call with the idle windows' median
    taken off (the machine's own work in a window varies between windows: a qualify, a
    held-table pass; the median of every round's is steadier than one round's); None
    without an idle step or calls."""
    idle = [s.ir if what == "ir" else s.cpu_s for s in steps if s.variant == "idle"]
    if not idle or step.calls == 0:
        return None
    own = step.ir if what == "ir" else step.cpu_s
    return (own - statistics.median(idle)) / step.calls


def static_beside(steps: list[CgStep], step: CgStep, what: str = "ir") -> float | None:
    """The per-call cost of the usable static steps just before and after ``step`` (the
    records bridge's static-records for its own paths), averaged."""
    static = "static-records" if step.variant in RECORD_PATHS else "static"
    by_seq = {s.seq: s for s in steps}
    near = [by_seq.get(step.seq + d) for d in (-1, 1)]
    got = [
        c
        for s in near
        if s is not None and s.variant == static and s.usable
        if (c := per_call(steps, s, what)) is not None
    ]
    return sum(got) / len(got) if got else None


def ratios(steps: list[CgStep], variant: str, what: str = "ir") -> dict[int, float]:
    """Per round: static's cost per call beside the path's usable step / the path's."""
    out: dict[int, float] = {}
    for s in steps:
        if s.variant != variant or not s.usable:
            continue
        st, own = static_beside(steps, s, what), per_call(steps, s, what)
        if st is not None and own:
            out[s.round] = st / own
    return out


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and the spread (max - min) / median, in per cent."""
    med = statistics.median(values)
    return {
        "median": round(med, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "spread_pct": round(100 * (max(values) - min(values)) / med, 2) if med else 0.0,
    }


def plan(paths: list[str], rounds: int, records: bool) -> list[tuple[int, str]]:
    """(round, step) in order: each round an idle step, then bench_e2e's interleaving of
    static and the paths (the order turning each round), then with records the records
    bridge's own static-records / routed-records pair."""
    out: list[tuple[int, str]] = []
    for rnd in range(rounds):
        out.append((rnd, "idle"))
        out += [(rnd, p) for _, p in plan_steps(paths[rnd:] + paths[:rnd], 1)]
        if records:
            out += [(rnd, p) for p in ("static-records", "routed-records", "static-records")]
    return out


def judge(values: list[float], target: float, at_least: bool = True) -> Estimate:
    return estimate([values], only, target, at_least=at_least)


def composed_production(per: dict[str, float], share: tuple[float, float]) -> float | None:
    """Production's ratio from its parts' instructions per call, weighted as the mix
    (1 - ivr - agi held, ivr by service, agi through the guard): a check on the measured
    mix. ``per``: static's and each part's Ir per call (medians)."""
    ivr, agi = share
    need = ("static", "held", "ivr", "routed-guard")
    if any(per.get(k) is None for k in need):
        return None
    cost = (1 - ivr - agi) * per["held"] + ivr * per["ivr"] + agi * per["routed-guard"]
    return per["static"] / cost


def summarise(
    steps: list[CgStep], variants: list[str], share: tuple[float, float]
) -> dict[str, object]:
    """Per path: Ir per call, the ratio to static by instructions and by CPU time (median
    and spread over rounds), the verdicts; the records difference per round."""
    out: dict[str, object] = {}
    medians: dict[str, float] = {}
    for var in variants:
        mine = [s for s in steps if s.variant == var and s.usable]
        costs = [c for s in mine if (c := per_call(steps, s)) is not None]
        row: dict[str, object] = {
            "usable_steps": len(mine),
            "unusable_steps": sum(1 for s in steps if s.variant == var and not s.usable),
        }
        if costs:
            row["ir_per_call"] = spread(costs)
            medians[var] = statistics.median(costs)
        if not var.startswith("static"):
            by_ir = list(ratios(steps, var).values())
            by_cpu = list(ratios(steps, var, "cpu").values())
            if by_ir:
                row["ratio_ir"] = spread(by_ir)
                row["verdict_ir"] = judge(by_ir, TARGET_PRODUCTION).as_dict()
            if by_cpu:
                row["ratio_cpu"] = spread(by_cpu)
        out[var] = row
    composed = composed_production(medians, share)
    if composed is not None:
        out["production-composed"] = {"ratio_ir": round(composed, 4)}
    on, off = ratios(steps, "routed-records"), ratios(steps, "routed")
    both = sorted(set(on) & set(off))
    if both:
        diffs = [on[r] - off[r] for r in both]
        out["records-difference"] = {
            "per_round": [round(d, 4) for d in diffs],
            **judge(diffs, -WITHIN).as_dict(),
        }
    return out


# --------------------------------------------------------------- valgrind in the root


def install_valgrind(root: Path) -> Path:
    """Copy the host's valgrind launcher and its callgrind parts into the lab root (the
    root is a debootstrap chroot; valgrind must exec its tool from inside it)."""
    dest = root / VG_INSIDE.lstrip("/")
    for src, rel in HOST_VALGRIND:
        if not src.exists():
            raise RuntimeError(f"{src} missing: install valgrind (apt-get install valgrind)")
        to = dest / rel
        if not to.exists() or to.stat().st_size != src.stat().st_size:
            to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, to)
    return dest


def callgrind_command(root: Path, asterisk: list[str]) -> list[str]:
    """``asterisk`` (argv inside the root) under callgrind, chrooted, with the root's
    /proc mounted in a private mount namespace (valgrind reads /proc/self/maps; the mount
    ends with the process, and the shared root is left as it was)."""
    vg = [
        f"{VG_INSIDE}/valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={OUT_INSIDE}/callgrind.out.%p",
        f"--vgdb-prefix={VGDB_PREFIX}",
        "--dump-line=no",  # per function is enough: smaller dumps, faster to write
        "--error-limit=no",
    ]
    inner = " ".join(
        [
            f"mount -t proc proc {root}/proc && exec chroot {root}",
            f"env VALGRIND_LIB={VG_INSIDE}/lib",
            *vg,
            *asterisk,
        ]
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]


class CallgrindSite:
    """One lab site's Asterisk restarted under callgrind; zero and dump its counters."""

    def __init__(self, lab: Lab, site: Site) -> None:
        self.lab, self.site = lab, site
        self.out = lab.root / OUT_INSIDE.lstrip("/")
        self.pid = 0

    def start(self, timeout: float = 240.0) -> int:
        install_valgrind(self.lab.root)
        self.out.mkdir(parents=True, exist_ok=True)
        for old in self.out.glob("callgrind.out.*"):
            old.unlink()
        self.lab.stop_site(self.site)
        conf = self.lab.dirs(self.site).inside["etc"] + "/asterisk.conf"
        argv = callgrind_command(
            self.lab.root, ["/usr/sbin/asterisk", "-C", conf, "-f", "-n", "-q"]
        )
        with open(self.lab.console_log(self.site), "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = proc.pid  # unshare, sh, chroot and env exec: the same pid runs Asterisk
        self.lab.pidfile(self.site).write_text(f"{proc.pid}\n")  # lab.down() stops it
        self.lab.wait_ami(self.site, timeout)
        self.lab.start_guard(self.site)
        return self.pid

    def _control(self, command: str) -> None:
        """A callgrind monitor command through vgdb. callgrind_control cannot find a
        process in the root: it lists them by user and host, which the chrooted valgrind
        cannot look up (its pipes read ``by-???-on-???``), and it exits 0 on "not
        detected"."""
        done = subprocess.run(
            ["vgdb", f"--vgdb-prefix={self.lab.root}{VGDB_PREFIX}", f"--pid={self.pid}", command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"vgdb {command}: {done.stderr or done.stdout}")

    def zero(self) -> None:
        self._control("zero")

    def dump(self) -> str:
        """Dump the counters since the last zero or dump; the dump's text."""
        before = set(self.out.glob(f"callgrind.out.{self.pid}*"))
        self._control("dump")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            new = set(self.out.glob(f"callgrind.out.{self.pid}*")) - before
            for path in new:
                text = path.read_text(errors="replace")
                if "totals:" in text:
                    path.unlink()
                    return text
            time.sleep(0.1)
        raise RuntimeError(f"no callgrind dump from {self.pid} in {self.out}")


# --------------------------------------------------------------- the run


def measured(
    cg: CallgrindSite,
    variant: str,
    rnd: int,
    calls: int,
    rate: float,
    window: float,
    wd: Path,
    share: tuple[float, float],
    profile: bool,
) -> CgStep:
    """One step: zero, the calls (none for idle), the window held to ``window`` s, dump."""
    cg.zero()
    cpu0, t0 = cpu_seconds(cg.pid), time.monotonic()
    ok = failed = retrans = n = 0
    if variant != "idle":
        n, ok, failed, _ = place(
            str(cg.site.sip), variant, rate, calls / rate, 6400, wd, share, CG_EXTENS
        )
        stat = wd / f"{CG_EXTENS[variant].replace('+', '')}-{rate:g}.csv"
        retrans = sipp_retransmissions(stat.read_text(errors="replace")) if stat.exists() else 0
    late = time.monotonic() - t0 > window
    time.sleep(max(0.0, window - (time.monotonic() - t0)))
    cpu = cpu_seconds(cg.pid) - cpu0
    text = cg.dump()
    own, incl = parse_costs(text) if profile else ({}, {})
    step = CgStep(variant, rnd, 0, n, ok, failed if not late else max(failed, 1), retrans,
                  parse_totals(text), round(cpu, 3))  # fmt: skip
    step.profile = by_object_and_function(own, incl)
    return step


def run(
    calls: int,
    rate: float,
    rounds: int,
    paths: list[str],
    records: bool,
    share: tuple[float, float] = (IVR_SHARE, AGI_SHARE),
    profile: bool = False,
) -> dict[str, object]:
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    scratch = Path(tempfile.mkdtemp(prefix="ccb-e2e-cg-"))
    held = replace(config.routing.held_routes, enabled=True, use_without_bridge=True)
    config = replace(config, routing=replace(config.routing, held_routes=held))
    lab = Lab(config)
    site = config.site(SITE)
    # The bridges read the same held-route setting as the rendered dialplan: they write
    # the routes into ccb-inbound only with use_without_bridge on.
    bridges = {"off": BridgeProcess(lab, EVERY_SITE_OPEN)}
    held_path = scratch / "lab-held.yaml"
    held_path.write_text(held_config_text(), encoding="utf-8")
    bridges["off"].config = dataclasses.replace(config, source=str(held_path))
    if records:
        path = scratch / "lab-records.yaml"
        text = held_config_text()
        path.write_text(text + f"\nstore:\n  url: sqlite:///{scratch}/records.db\n")
        asyncio.run(_upgrade(make_engine(load_config(path).store)))
        bridges["on"] = BridgeProcess(lab, EVERY_SITE_OPEN)
        bridges["on"].config = dataclasses.replace(config, source=str(path))
    window = calls / rate + 4.0  # the last call's start, its 0.2 s and hangup, and room
    steps: list[CgStep] = []
    t_start = time.monotonic()
    with lab_lock(on_wait=lambda: print("e2e-cg: waiting for the lab lock", flush=True)):
        lab.down()
        lab.up()
        running: str | None = None
        try:
            cg = CallgrindSite(lab, site)
            cg.start()
            print(f"e2e-cg: {SITE} under callgrind, pid {cg.pid}", flush=True)
            listen = config.bridge.agi_listen
            with tempfile.TemporaryDirectory(prefix="ccb-e2e-cg-") as wd:
                for rnd, variant in plan(paths, rounds, records):
                    want = "on" if variant in RECORD_PATHS else "off"
                    if running != want:
                        if running is not None:
                            bridges[running].stop()
                        asyncio.run(bridges[want].start(ready_within=120.0))
                        if running is None:
                            install_dialplan(lab, site, f"{listen.host}:{listen.port}")
                        running = want
                        _wait_for_held_routes(lab, site, within=60.0)
                        time.sleep(SETTLE)
                        if want == "off" and not steps:
                            _check_path(lab, site, Path(wd), "held")
                            _check_path(lab, site, Path(wd), "production", (1.0, 0.0))
                    time.sleep(GAP)
                    step = measured(cg, variant, rnd, calls, rate, window, Path(wd), share, profile)
                    step.seq = len(steps)
                    steps.append(step)
                    shown = {k: v for k, v in asdict(step).items() if k != "profile"}
                    print(f"e2e-cg: {json.dumps(shown)}", flush=True)
        finally:
            for bridge in bridges.values():
                bridge.stop()
            lab.down()
    shutil.rmtree(scratch, ignore_errors=True)
    variants = ["static", *paths, *(RECORD_PATHS if records else ())]
    return {
        "bench": "e2e-callgrind",
        "site": SITE,
        "calls_per_step": calls,
        "rate": rate,
        "window_s": window,
        "rounds": rounds,
        "ivr_share": share[0],
        "agi_share": share[1],
        "minutes": round((time.monotonic() - t_start) / 60, 1),
        "steps": [asdict(s) for s in steps],
        "summary": summarise(steps, variants, share),
        "profile": top_functions(steps, variants) if profile else {},
    }


def top_functions(steps: list[CgStep], variants: list[str], n: int = 40) -> dict[str, object]:
    """Per path, the self Ir per call of each function above static's (medians over
    rounds, idle's work taken off the same way): where a path's extra instructions go."""

    def per_fn(var: str) -> dict[str, float]:
        got: dict[str, list[float]] = defaultdict(list)
        for s in steps:
            idle = idle_of(steps, s.round)
            if s.variant != var or not s.usable or idle is None or not s.calls:
                continue
            for name in set(s.profile) | set(idle.profile):
                got[name].append((s.profile.get(name, 0) - idle.profile.get(name, 0)) / s.calls)
        return {k: statistics.median(v) for k, v in got.items()}

    static = per_fn("static")
    out: dict[str, object] = {}
    for var in variants:
        if var == "static":
            continue
        mine = per_fn(var)
        extra = {k: mine.get(k, 0.0) - static.get(k, 0.0) for k in set(mine) | set(static)}
        top = sorted(extra.items(), key=lambda kv: -abs(kv[1]))[:n]
        out[var] = [(k, round(v)) for k, v in top]
    return out


def resummarise(saved: dict[str, object]) -> dict[str, object]:
    """An earlier run's result with its summary and profile made again from its steps
    (this module's arithmetic as it is now)."""
    raw = saved["steps"]
    assert isinstance(raw, list)
    steps = [CgStep(**row) for row in raw]
    seen = list(dict.fromkeys(s.variant for s in steps if s.variant != "idle"))
    share = (float(saved["ivr_share"]), float(saved["agi_share"]))  # type: ignore[arg-type]
    out = dict(saved)
    out["summary"] = summarise(steps, seen, share)
    out["profile"] = top_functions(steps, seen) if saved.get("profile") else {}
    return out


def _print(result: dict[str, object]) -> None:
    summary = result["summary"]
    assert isinstance(summary, dict)
    for var, row in summary.items():
        if var == "records-difference":
            print(
                f"e2e-cg: records on - off (routed ratio by Ir) per round {row['per_round']}: "
                f"median {row['value']} {row['interval']} (target >= -{WITHIN}): {row['verdict']}"
            )
            continue
        if var == "production-composed":
            print(f"e2e-cg: production composed from its parts' Ir: {row['ratio_ir']}")
            continue
        ir = row.get("ir_per_call") or {}
        line = f"e2e-cg: {var:15} Ir/call {ir.get('median', 0):>12,.0f}"
        line += f" (spread {ir.get('spread_pct', '-')} %)"
        if "ratio_ir" in row:
            r, c = row["ratio_ir"], row.get("ratio_cpu") or {}
            line += (
                f"  ratio by Ir {r['median']:.4f} [{r['min']:.4f}-{r['max']:.4f}]"
                f"  by CPU {c.get('median', 0):.3f} [{c.get('min', 0):.3f}-{c.get('max', 0):.3f}]"
                f"  {row['verdict_ir']['verdict']} vs {TARGET_PRODUCTION}"
            )
        line += f"  steps {row['usable_steps']}/{row['usable_steps'] + row['unusable_steps']}"
        print(line, flush=True)
    profile = result.get("profile") or {}
    assert isinstance(profile, dict)
    for var, top in profile.items():
        print(f"e2e-cg: {var}: Ir per call over static's, by function:")
        for name, ir in top[:25]:
            print(f"e2e-cg:   {ir:>+10,} {name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=40, help="calls per step")
    ap.add_argument("--rate", type=float, default=4.0, help="calls/s (Asterisk is ~50x slower)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {PATHS}")
    ap.add_argument("--records", action="store_true", help="static and routed with records on")
    ap.add_argument("--ivr-share", type=float, default=IVR_SHARE)
    ap.add_argument("--agi-share", type=float, default=AGI_SHARE)
    ap.add_argument("--profile", action="store_true", help="where each path's Ir go")
    ap.add_argument("--json", help="write the result here too")
    ap.add_argument("--from-json", help="summarise the steps of an earlier run's --json again")
    args = ap.parse_args(argv)
    if args.from_json:
        _print(resummarise(json.loads(Path(args.from_json).read_text())))
        return 0
    paths = [p for p in args.paths.split(",") if p]
    if bad := [p for p in paths if p not in PATHS]:
        ap.error(f"unknown paths {bad}; known: {', '.join(PATHS)}")
    if args.calls < 1 or args.rate <= 0 or args.rounds < 1:
        ap.error("--calls, --rate and --rounds must be positive")
    if os.geteuid() != 0:
        ap.error("needs root (chroot, a private mount namespace)")
    result = run(
        args.calls,
        args.rate,
        args.rounds,
        paths,
        args.records,
        (args.ivr_share, args.agi_share),
        args.profile,
    )
    _print(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    prod = result["summary"].get("production", {})  # type: ignore[attr-defined]
    return 0 if (prod.get("verdict_ir") or {}).get("verdict") == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
