"""The ceiling: the calls/s and AMI events/s one bridge sustains with p99 route latency
< 5 ms and 0 errors, at 5, 20 and 50 sites and up to 10,000 agents; then two bridges
sharing one PostgreSQL store. Against a floor measured in the same run.

Processes: `ccbridge run` (one or two) on a generated deployment; one spawned process
plays every site (tests/amifake.FakeAmi per site: the bridge's login and QueueStatus
resync with every membership, then per call the events of the call recorded on the lab
with CEL on, tests/bench/fixtures/ami_cel_call.json, the ones the bridge's AMI filter
admits: 11 events, or 12 with call records on (the PostgreSQL rows: CEL LINKEDID_END, the
one CEL type the rendered cel.conf sends; ``CCB_BENCH_CEL_ALL=1``: the recording's every
CEL type, 30 events a call, 19 of them CEL, the mix before the fourteenth session); with
fresh uniqueids, a queue and one of its agents); this process is Asterisk's FastAGI side
(a `route` request for a random number of the deployment from a random caller, the MSet
answered, the session closed by the bridge; headers encoded before the step), open loop
at a fixed rate: by default tests/bench/agi_gen.c, a C program built with the system's C
compiler, which costs ~0.05-0.1 of a core at 250-1,000 calls/s; ``--generator python``
(or no compiler) plays it from this process with tests/bench/agi_load.py (a protocol per
connection on uvloop, 0.2-0.26 of a core at 250-500/s: on 2 cores its own CPU and its
loop's delays set the floor's p99 at 4-7 ms, BENCHMARKS.md §12, sixteenth session). Every
step raises the rate; the AMI
sites push one call's events per route request, spread over the sites. A step passes
with p99 < 5 ms, 0 errors and the rate reached (95 %); the ceiling is the last rate that
passed before the first that did not.

The floor: the same load generator against the cheapest FastAGI server there is
(bench_fastagi's bare server answering ccbridge's MSet line, no AMI), same rates: what
this machine and this client sustain at all. Its ceiling is reported beside the
bridge's, and ratios bridge/floor (the figure to compare across machines and runs).

CPU per call is the bridge's utime + stime over a step divided by the calls routed in
it (AMI ingest of those calls' events included: that is what a call costs the bridge);
RSS is read at the end of each step; the generator's and the fake sites' own CPU are
printed per step (they share the machine's cores with the bridge). When the goal is
missed, the `missing:` lines say by what, in the run's own figures.

``--spells``: beside each step a SpellWatch (tests/bench/spellwatch.py, ~2 % of each CPU)
finds the host's slow spells (on the 2-vCPU VM: both vCPUs 3-15x slower for 50-200 ms
every ~1.5 s, BENCHMARKS.md §12, sixteenth session), and each step also reports the p99
of the calls whose span touched none, and a ceiling on it. A spell's backlog still delays
calls that start after it, so that ceiling is a floor for what the server would do on a
host without spells, not an estimate of it. The goal's verdict stays on every call's p99.

The bridge runs on asyncio's loop, its default, unless ``--event-loop uvloop``;
``CCB_BENCH_GC=a,b,c`` starts it with ``gc.set_threshold(a, b, c)``.

To take the tail apart (BENCHMARKS.md §12, thirteenth session), each set to 1 or a value:
``CCB_BENCH_LATENCY_DUMP=FILE`` appends every call's start and latency to FILE
(``tests.bench.latency_clusters FILE`` groups the slow ones); ``CCB_BENCH_NO_AMI`` plays
no call's events under the calls; ``CCB_BENCH_NO_HELD`` turns held routes off
(``CCB_BENCH_HELD_MIN=S`` sets their ``min_interval``);
``CCB_BENCH_LOG_LEVEL=WARNING`` drops the line a call; ``CCB_BENCH_GEN_NOGC`` and
``CCB_BENCH_SITES_NOGC`` turn the collector off in the generator and the fake sites;
``CCB_BENCH_GCLONG=MS`` has gcwatch print the bridge's collections of any generation over
MS ms (``gclong:``).

    .venv/bin/python -m tests.bench.bench_ceiling --quick       # 20 sites, ~1.5 min
    .venv/bin/python -m tests.bench.bench_ceiling               # every row, ~8 min
    .venv/bin/python -m tests.bench.bench_ceiling --rows 20x5000 --rates 500,1000,1500
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import itertools
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import agi_load, gcwatch
from tests.bench.bench_e2e import FLOOR_COMMAND, cpu_seconds
from tests.bench.bench_fastagi import Result, ServerProcess, percentile
from tests.bench.bench_memory import free_port, queue_member, rss_mb
from tests.bench.cpu_probe import Spell
from tests.bench.spellwatch import SpellWatch, Split, clear

SECRET = "bench-secret"
SERVICES = ("orders", "returns", "care")
LANGS = ("en", "hi", "bn", "tl", "ur")
ZONES = ("Asia/Kolkata", "Asia/Dhaka", "Asia/Manila", "Europe/London", "America/New_York")
COUNTRIES = {  # code: (calling code, default language)
    "IN": ("91", "hi"),
    "BD": ("880", "bn"),
    "PH": ("63", "tl"),
    "GB": ("44", "en"),
    "US": ("1", "en"),
}
SITE_COUNTRY = ("IN", "BD", "PH", "GB", "US")  # with ZONES, by site index
CALLERS = ("+919812345678", "+8801712345678", "+639171234567", "+447700900123", "+12025550143")
AT = "2026-11-25T09:00:00+00:00"  # a Wednesday: some sites open, some closed for returns
P99_MS = 5.0
REACHED = 0.95  # of the target rate, or the step failed (the generator fell behind)
ROWS = ((5, 1_000), (20, 5_000), (50, 10_000))
RATES = (250, 500, 750, 1_000, 1_250, 1_500, 2_000, 2_500, 3_000)
QUICK_RATES = (500, 750, 1_000, 1_250, 1_500)
GOAL = (20, 5_000, 1_000)  # sites, agents, calls/s
HEADROOM = 0.6  # of a core: the sizing rule's load for one bridge


# --------------------------------------------------------------------------- deployment


def site_name(i: int) -> str:
    return f"s{i:02d}"


def agent_queues(a: int) -> tuple[str, str]:
    """Two queues per agent: two services in one language."""
    lang = LANGS[a % len(LANGS)]
    return f"{SERVICES[a % 3]}-{lang}", f"{SERVICES[(a + 1) % 3]}-{lang}"


def numbers(sites: int) -> list[tuple[str, str, str]]:
    """(did, site, service): two numbers a site, in its country's format."""
    out = []
    for i in range(sites):
        code = COUNTRIES[SITE_COUNTRY[i % 5]][0]
        for k, service in enumerate(("orders", "returns")):
            out.append((f"+{code}80{i:04d}{k}", site_name(i), service))
    return out


def deployment(
    sites: int,
    agents: int,
    ami_ports: list[int],
    agi_port: int,
    http_port: int,
    store: str | None,
    event_loop: str = "asyncio",
) -> str:
    per_site = agents // sites
    langs = ", ".join(LANGS)
    lines = [
        "bridge:",
        f"  agi_listen: 127.0.0.1:{agi_port}",
        f"  agi_url_host: 127.0.0.1:{agi_port}",
        f"  http_listen: 127.0.0.1:{http_port}",
        "  agi_allow: [127.0.0.1]",
        "  max_agi_sessions: 5000",
        "  agi_session_timeout: 5.0",
        f"  event_loop: {event_loop}",
        # CCB_BENCH_LOG_LEVEL=WARNING: no line a call (what the log costs the tail)
        f"  log_level: {os.environ.get('CCB_BENCH_LOG_LEVEL', 'INFO')}",
        f"languages: [{', '.join(LANGS)}]",
        f"services: [{', '.join(SERVICES)}]",
        "countries:",
        *(
            f'  {c}: {{calling_code: "{code}", default_language: {lang}}}'
            for c, (code, lang) in COUNTRIES.items()
        ),
        # CCB_BENCH_NO_HELD=1: held routes off (what their passes and writes cost the tail);
        # CCB_BENCH_HELD_MIN=S: their min_interval (seconds between a site's passes)
        "routing: {site_holdoff: 1" + _held_setting() + "}",
    ]
    if store is not None:
        lines += ["store:", f"  url: {store}", "  password: {env: CCB_BENCH_PG}"]
    lines.append("sites:")
    for i in range(sites):
        name = site_name(i)
        lines += [
            f"  {name}:",
            f"    timezone: {ZONES[i % 5]}",
            f"    country: {SITE_COUNTRY[i % 5]}",
            f"    sip: 127.1.{i // 200}.{i % 200 + 1}:5060",
            f"    ami: {{host: 127.0.0.1, port: {ami_ports[i]}, username: ccbridge,"
            " secret: {env: CCB_BENCH_AMI}}",
            "    rtp: [20000, 20999]",
            "    services:",
            f"      orders: {{languages: [{langs}], hours: always}}",
            f"      returns: {{languages: [{langs}], hours: {{mon-fri: '08:00-20:00'}}}}",
            f"      care: {{languages: [{langs}], hours: {{mon-sat: '07:00-22:00'}}}}",
            "    agents:",
        ]
        for a in range(per_site):
            lines.append(
                f'      - {{name: {name}-a{a}, contact: "sip:a@127.0.0.1:{30000 + a}",'
                f" queues: [{', '.join(agent_queues(a))}]}}"
            )
    lines.append("trunks:")
    for a, b in itertools.permutations(range(sites), 2):
        lines.append(
            f"  t{a}-{b}: {{site: {site_name(a)}, kind: intersite, peer: {site_name(b)},"
            f" remote: 127.1.{b // 200}.{b % 200 + 1}:5060}}"
        )
    lines.append("numbers:")
    for did, site, service in numbers(sites):
        i = int(site[1:])
        lines.append(
            f'  "{did}": {{kind: local, country: {SITE_COUNTRY[i % 5]}, service: {service},'
            f" site: {site}, home_site: {site}}}"
        )
    return "\n".join(lines) + "\n"


def queue_status(site: str, per_site: int) -> list[dict[str, str]]:
    events = [
        {"Event": "QueueParams", "Queue": f"{s}-{lang}", "Calls": "0"}
        for s in SERVICES
        for lang in LANGS
    ]
    for a in range(per_site):
        events += [queue_member(q, f"{site}-a{a}") for q in agent_queues(a)]
    return events


# --------------------------------------------------------------------------- the sites


class CallEvents:
    """One recorded call's admitted events as wire bytes, with its ids swapped per call."""

    def __init__(self, records: bool) -> None:
        from ccbridge.events import ALWAYS
        from tests.bench.bench_ami_state import cel_call_template, make_ingest, records_names

        # What the bridge's AMI filter admits (Asterisk filters per session; this fake
        # does not): CEL too when the bridge keeps call records.
        bus = make_ingest(1, records=records).bus
        text, ids = cel_call_template(records_names(bus) if records else bus.names() | ALWAYS)
        self.events_per_call = text.count("\r\n\r\n")
        # Split once at every id, so a call is one join (a 16 kB text a call, 1,000s a second).
        marks = {ids["interface"]: "I", ids["epoch"]: "E", ids["queue"]: "Q"}
        marks[ids["member"]] = "M"
        self.parts: list[str | None] = []
        self.keys: list[str] = []
        rest = text
        while rest:
            hits = [(rest.find(v), v) for v in marks if rest.find(v) >= 0]
            if not hits:
                self.parts.append(rest)
                break
            at, value = min(hits, key=lambda h: (h[0], -len(h[1])))
            self.parts.append(rest[:at])
            self.keys.append(marks[value])
            rest = rest[at + len(value) :]

    def call(self, site: str, n: int, per_site: int, rng: random.Random) -> bytes:
        agent = rng.randrange(per_site)
        values = {
            "E": f"{site}-{1_760_000_000 + n}.",
            "I": f"PJSIP/{site}-a{agent}",
            "M": f"{site}-a{agent}",
            "Q": rng.choice(agent_queues(agent)),
        }
        out: list[str] = []
        for i, part in enumerate(self.parts):
            out.append(part or "")
            if i < len(self.keys):
                out.append(values[self.keys[i]])
        return "".join(out).encode()


async def _sites(conn: Connection, sites: int, agents: int, records: bool) -> None:
    from tests.amifake import FakeAmi

    per_site = agents // sites
    names = [site_name(i) for i in range(sites)]
    calls = CallEvents(records)
    fakes = []
    for name in names:
        fake = FakeAmi(secret=SECRET)
        fake.script_list("QueueStatus", "QueueStatusComplete", queue_status(name, per_site))
        # The held routes' fresh path replaces ccb-inbound steps: answered as Asterisk
        # does, or every pass fails and rewrites the whole table (a bench of errors).
        fake.replies["dialplanextensionadd"] = {"Message": "Added extension"}
        await fake.start()
        fakes.append(fake)
    conn.send(([f.port for f in fakes], calls.events_per_call))
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
    rng = random.Random(15)
    rate, pushed, since, n = 0.0, 0, time.monotonic(), 0
    while True:
        with contextlib.suppress(TimeoutError):
            msg = await asyncio.wait_for(inbox.get(), 0.01)
            if msg[0] == "stop":
                break
            if msg[0] == "rate":
                rate, pushed, since = float(msg[1]), 0, time.monotonic()
            elif msg[0] == "logins":
                conn.send([f.logins_ok for f in fakes])
            elif msg[0] == "pushed":
                conn.send(n)
            elif msg[0] == "actions":  # the bridge's actions so far, by name, all sites
                conn.send(
                    collections.Counter(a.get("Action", "") for f in fakes for a in f.received)
                )
        due = int(rate * (time.monotonic() - since)) - pushed
        # The calls due this tick, one write per site: each call's events are one
        # chunk, several calls of a site one write (a busy Asterisk's socket holds
        # what it wrote since the bridge last read, too).
        batch: dict[int, list[bytes]] = {}
        for _ in range(max(0, due)):
            site = rng.randrange(sites)
            batch.setdefault(site, []).append(calls.call(names[site], n, per_site, rng))
            n += 1
        for site, chunks in batch.items():
            fakes[site].push_raw(b"".join(chunks))
        pushed += max(0, due)
    for fake in fakes:
        await fake.close()


def _sites_main(conn: Connection, sites: int, agents: int, records: bool) -> None:
    if os.environ.get("CCB_BENCH_SITES_NOGC"):
        import gc

        gc.disable()
    agi_load.runner(_sites(conn, sites, agents, records))


class Sites:
    """The fake sites' process: ports, logins seen, and the rate of calls it plays."""

    def __init__(self, sites: int, agents: int, records: bool) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_sites_main, args=(child, sites, agents, records), daemon=True
        )
        self._proc.start()
        child.close()
        if not self._conn.poll(60):
            raise RuntimeError("the fake sites did not start")
        self.ports, self.events_per_call = self._conn.recv()

    def rate(self, calls_per_s: float) -> None:
        self._conn.send(("rate", calls_per_s))

    def logins(self) -> list[int]:
        self._conn.send(("logins",))
        return list(self._conn.recv())

    def pushed(self) -> int:
        self._conn.send(("pushed",))
        return int(self._conn.recv())

    def actions(self) -> collections.Counter[str]:
        self._conn.send(("actions",))
        got: collections.Counter[str] = self._conn.recv()
        return got

    @property
    def pid(self) -> int:
        pid = self._proc.pid
        assert pid is not None  # started
        return pid

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(("stop",))
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


# --------------------------------------------------------------------------- bridges


@dataclass
class Bridge:
    proc: subprocess.Popen[bytes]
    agi_port: int
    http_port: int
    log: Path


def _held_setting() -> str:
    if os.environ.get("CCB_BENCH_NO_HELD"):
        return ", held_routes: {enabled: false}"
    if os.environ.get("CCB_BENCH_HELD_MIN"):
        return f", held_routes: {{min_interval: {float(os.environ['CCB_BENCH_HELD_MIN'])}}}"
    return ""


def start_bridge(folder: Path, name: str, text: str, env: dict[str, str]) -> Bridge:
    cfg = folder / f"{name}.yaml"
    cfg.write_text(text)
    log = folder / f"{name}.log"
    agi = int(text.split("agi_listen: 127.0.0.1:")[1].split()[0])
    http = int(text.split("http_listen: 127.0.0.1:")[1].split()[0])
    # ccbridge run, with the collector watched (and CCB_BENCH_GC's thresholds set)
    command = [sys.executable, "-m", "tests.bench.gcwatch", "run", str(cfg)]
    profile = os.environ.get("CCB_BENCH_PROFILE")  # a folder: cProfile each bridge into it
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", f"{profile}/{name}.prof"]
        command += ["-m", "ccbridge.cli", "run", str(cfg)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            env={**os.environ, **env, "CCBRIDGE_CLOCK": AT},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Bridge(proc, agi, http, log)


def stop_bridge(bridge: Bridge) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(bridge.proc.pid, signal.SIGTERM)
    try:
        bridge.proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(bridge.proc.pid, signal.SIGKILL)
        bridge.proc.wait(5)


def wait_synced(bridges: list[Bridge], sites: Sites, within: float = 120.0) -> float:
    """Until every bridge logged in to every site and says it is ready with all synced."""
    from ccbridge.lab.demo import http_json

    t0 = time.monotonic()
    while True:
        ok = all(n >= len(bridges) for n in sites.logins())
        for b in bridges:
            if b.proc.poll() is not None:
                raise SystemExit(f"a bridge exited ({b.proc.returncode}): see {b.log}")
            try:
                out = http_json(f"http://127.0.0.1:{b.http_port}/readyz")
            except OSError:
                ok = False
                continue
            detail = out if isinstance(out, dict) else {}
            ok = ok and bool(detail.get("ready"))
        if ok:
            return time.monotonic() - t0
        if time.monotonic() - t0 > within:
            raise SystemExit(f"bridges not ready after {within:.0f}s: see {bridges[0].log}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- load


def drive(
    targets: list[int], rate: float, seconds: float, dids: list[tuple[str, str, str]]
) -> Result:
    """Open loop: ``rate`` route requests a second for ``seconds``, round robin over the
    FastAGI ports in ``targets`` (tests/bench/agi_load.py; headers encoded first)."""
    calls = agi_load.headers(targets, int(rate * seconds), dids, CALLERS, f"{rate}", int(rate))
    if GENERATOR.binary is not None:
        return agi_load.run_c(GENERATOR.binary, calls, rate)
    return agi_load.run(calls, rate)


@dataclass
class Generator:
    """Which load generator drives the steps: agi_gen.c's binary, or agi_load's Python
    generator in this process when ``binary`` is None (``--generator``)."""

    binary: Path | None = None

    @property
    def name(self) -> str:
        return "python" if self.binary is None else "c"


GENERATOR = Generator()
WATCH_SPELLS = [False]  # --spells: a SpellWatch beside each step


@contextlib.contextmanager
def watching() -> Iterator[SpellWatch | None]:
    """A SpellWatch over the block (the host's slow spells during a step), unless off."""
    if not WATCH_SPELLS[0]:
        yield None
        return
    with SpellWatch() as watch:
        yield watch


def generator_cpu() -> float:
    """The generator's CPU seconds so far: this process's own (the Python generator) and
    its reaped children's (the C generator's runs; the bridges and the sites' process are
    reaped only after the steps)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass
class Step:
    rate: float
    result: Result
    cpu_us_per_call: float | None = None
    cpu_share: float | None = None  # of one core, the bridges together
    load_share: float | None = None  # of one core: the load generator (GENERATOR)
    sites_share: float | None = None  # of one core: the fake AMI sites' process
    window: tuple[float, float] = (0.0, 0.0)  # time.monotonic() at its start and end
    gen2_ms: list[float] = field(default_factory=list)  # the bridges' gen-2 collections
    ami_events_per_s: float | None = None
    rss_mb: list[float] = field(default_factory=list)
    spells: list[Spell] | None = None  # the host's slow spells in the step (SpellWatch)

    @functools.cached_property
    def split(self) -> Split | None:
        """The step's calls by whether they touched one of the host's slow spells (once a
        step: its result and spells are set when it is made)."""
        if self.spells is None or not self.result.starts:
            return None
        return clear(self.result.starts, self.result.latencies, self.spells)

    @property
    def p99_clear_ms(self) -> float | None:
        """The p99 of the calls that touched no slow spell: the server on a quiet host."""
        split = self.split
        if split is None or not split.clear:
            return None
        return percentile(sorted(split.clear), 0.99) * 1000.0

    @property
    def passed_clear(self) -> bool:
        p99 = self.p99_clear_ms
        return self.kept_up and p99 is not None and p99 < P99_MS

    @property
    def kept_up(self) -> bool:
        """Every call routed, at the rate offered (whatever the latency)."""
        r = self.result
        return r.errors == 0 and r.sessions > 0 and r.sessions / r.seconds >= REACHED * self.rate

    @property
    def passed(self) -> bool:
        return self.kept_up and self.result.pct(0.99) < P99_MS

    def row(self) -> dict[str, Any]:
        r = self.result
        return {
            "rate": self.rate,
            "reached": round(r.sessions / r.seconds) if r.seconds else 0,
            "p50_ms": round(r.pct(0.5), 2) if r.latencies else None,
            "p99_ms": round(r.pct(0.99), 2) if r.latencies else None,
            "errors": r.errors,
            "cpu_us_per_call": self.cpu_us_per_call and round(self.cpu_us_per_call),
            "cpu_share": self.cpu_share and round(self.cpu_share, 2),
            "generator_core": self.load_share and round(self.load_share, 2),
            "sites_core": self.sites_share and round(self.sites_share, 2),
            "ami_events_per_s": self.ami_events_per_s and round(self.ami_events_per_s),
            "rss_mb": [round(m) for m in self.rss_mb],
            "gen2_collections_ms": [round(m, 1) for m in self.gen2_ms],
            "passed": self.passed,
            **self.spell_row(),
        }

    def spell_row(self) -> dict[str, Any]:
        split = self.split
        if split is None:
            return {}
        p99 = self.p99_clear_ms
        return {
            "host_spells": split.spells,
            "calls_in_spells": split.touched,
            "p99_clear_ms": None if p99 is None else round(p99, 2),
            "passed_clear": self.passed_clear,
        }


def ceiling(steps: list[Step], clear: bool = False) -> float:
    """The last rate that passed before the first that did not (``clear``: on the p99 of
    the calls that touched none of the host's slow spells)."""
    best = 0.0
    for step in steps:
        if not (step.passed_clear if clear else step.passed):
            break
        best = step.rate
    return best


def show(label: str, step: Step) -> None:
    r = step.row()
    extra = ""
    if r["cpu_us_per_call"] is not None:
        extra = (
            f"  cpu {r['cpu_us_per_call']} us/call ({r['cpu_share']} core)"
            f"  ami {r['ami_events_per_s']} ev/s  rss {r['rss_mb']} MB"
        )
    elif r["cpu_share"] is not None:
        extra = f"  server {r['cpu_share']} core"
    if r["generator_core"] is not None:
        extra += f"  generator {r['generator_core']} core"
    if r["sites_core"] is not None:
        extra += f", sites {r['sites_core']} core"
    print(
        f"  {label:<22} {r['rate']:>5.0f}/s reached {r['reached']:>5}/s  p50 {r['p50_ms']} ms"
        f"  p99 {r['p99_ms']} ms  errors {r['errors']}{extra}  {'ok' if r['passed'] else 'MISS'}",
        flush=True,
    )
    if "host_spells" in r:
        print(
            f"    outside the host's slow spells: p99 {r['p99_clear_ms']} ms "
            f"({r['calls_in_spells']} calls touched {r['host_spells']} spells)  "
            f"{'ok' if r['passed_clear'] else 'MISS'}",
            flush=True,
        )


def floor_steps(rates: tuple[int, ...], seconds: float) -> list[Step]:
    dids = [("+918000000001", "s00", "orders")]
    steps: list[Step] = []
    with ServerProcess("bare", command=FLOOR_COMMAND, uvloop=True) as server:
        drive([server.port], 200, 1.0, dids)  # warm-up
        for rate in rates:
            with watching() as watch:
                me0, w0 = generator_cpu(), time.monotonic()
                cpu0 = cpu_seconds(server.pid)
                result = drive([server.port], rate, seconds, dids)
                wall = time.monotonic() - w0
                me, cpu = generator_cpu() - me0, cpu_seconds(server.pid) - cpu0
            step = Step(
                rate,
                result,
                cpu_share=cpu / wall,
                load_share=me / wall,
                spells=None if watch is None else watch.spells,
            )
            show("floor (bare FastAGI)", step)
            steps.append(step)
            if not (step.passed or step.passed_clear):
                break
    return steps


def bridge_steps(
    sites: int,
    agents: int,
    rates: tuple[int, ...],
    seconds: float,
    bridges: int = 1,
    pg: Any = None,
    event_loop: str = "asyncio",
) -> tuple[list[Step], dict[str, Any]]:
    label = f"{sites} sites, {agents} agents"
    if pg is not None:
        label += f", {bridges} bridge{'s' if bridges > 1 else ''} + PG"
    fake = Sites(sites, agents, records=pg is not None)
    running: list[Bridge] = []
    facts: dict[str, Any] = {}
    steps_run: list[Step] = []
    folder = Path(tempfile.mkdtemp(prefix="ccb-ceiling-"))
    try:
        env = {"CCB_BENCH_AMI": SECRET}
        store = None
        if pg is not None:
            from tests.store.pg import PASSWORD

            store = pg.url(pg.createdb())
            env["CCB_BENCH_PG"] = PASSWORD
        texts = [
            deployment(sites, agents, fake.ports, free_port(), free_port(), store, event_loop)
            for _ in range(bridges)
        ]
        if store is not None:
            cfg = folder / "migrate.yaml"
            cfg.write_text(texts[0])
            subprocess.run(
                [sys.executable, "-m", "ccbridge.cli", "db", "upgrade", str(cfg)],
                env={**os.environ, **env},
                check=True,
                capture_output=True,
                timeout=120,
            )
        t0 = time.monotonic()
        for i, text in enumerate(texts):
            running.append(start_bridge(folder, f"bridge{i}", text, env))
        facts["ready_s"] = round(wait_synced(running, fake) + 0, 1)
        facts["rss_idle_mb"] = [round(rss_mb(b.proc.pid)) for b in running]
        print(f"{label}: ready in {time.monotonic() - t0:.1f}s, RSS {facts['rss_idle_mb']} MB")
        dids = numbers(sites)
        ports = [b.agi_port for b in running]
        drive(ports, 100, 1.0, dids)  # warm-up
        # What the bridges cost with no calls (pings, held-route refreshes, timers).
        cpu0, w0 = sum(cpu_seconds(b.proc.pid) for b in running), time.monotonic()
        time.sleep(2.0)
        idle = (sum(cpu_seconds(b.proc.pid) for b in running) - cpu0) / (time.monotonic() - w0)
        facts["idle_core"] = round(idle, 3)
        # The AMI events alone (no FastAGI) at the first rate: what every bridge pays
        # per call of the deployment, routed by it or not (each ingests every site).
        fake.rate(rates[0])
        acts0 = fake.actions()
        cpu0, w0 = sum(cpu_seconds(b.proc.pid) for b in running), time.monotonic()
        time.sleep(seconds)
        share = (sum(cpu_seconds(b.proc.pid) for b in running) - cpu0) / (time.monotonic() - w0)
        fake.rate(0)
        # The AMI actions the bridges sent meanwhile (held-route passes: Setvar, Getvar,
        # DialplanExtensionAdd; pings), a second.
        acts = fake.actions() - acts0
        facts["ami_actions_per_s"] = {k: round(n / seconds) for k, n in acts.most_common()}
        print(f"  AMI alone at {rates[0]}/s: actions a second {facts['ami_actions_per_s']}")
        facts["ami_only_us_per_call"] = round(1e6 * (share - idle) / rates[0] / len(running))
        time.sleep(0.5)
        steps: list[Step] = []
        for rate in rates:
            # CCB_BENCH_NO_AMI=1: no call's events under the calls (what AMI costs the tail)
            fake.rate(0 if os.environ.get("CCB_BENCH_NO_AMI") else rate)
            time.sleep(0.3)  # the AMI stream at this rate before the first request
            with watching() as watch:  # its processes start before the step's figures
                cpu0 = sum(cpu_seconds(b.proc.pid) for b in running)
                me0, sites0 = generator_cpu(), cpu_seconds(fake.pid)
                ev0, w0, acts0 = fake.pushed(), time.monotonic(), fake.actions()
                result = drive(ports, rate, seconds, dids)
                cpu = sum(cpu_seconds(b.proc.pid) for b in running) - cpu0
                wall = time.monotonic() - w0
                me, sites_cpu = generator_cpu() - me0, cpu_seconds(fake.pid) - sites0
                events = (fake.pushed() - ev0) * fake.events_per_call
            step = Step(
                rate,
                result,
                cpu_us_per_call=1e6 * cpu / max(1, result.sessions),
                cpu_share=cpu / wall,
                ami_events_per_s=events / wall,
                rss_mb=[rss_mb(b.proc.pid) for b in running],
                load_share=me / wall,
                sites_share=sites_cpu / wall,
                window=(w0, w0 + wall),
                spells=None if watch is None else watch.spells,
            )
            steps_run.append(step)
            fake.rate(0)
            show(label, step)
            # The bridges' AMI actions in the step: under calls the sticky sites move, and
            # with them the held routes of rows that read them (held-route writes).
            acts = fake.actions() - acts0
            per_call = sum(acts.values()) / max(1, result.sessions)
            shown = {k: round(n / wall) for k, n in acts.most_common()}
            print(f"    AMI actions a second {shown}, {per_call:.2f} a call", flush=True)
            steps.append(step)
            if len(steps) >= 2 and not any(x.passed or x.passed_clear for x in steps[-2:]):
                break  # two misses in a row, spells or not: both ceilings are behind us
            time.sleep(0.5)  # the calls' last events drain before the next rate
        slow = sum(b.log.read_text(errors="replace").count("slow callback") for b in running)
        facts["slow_callback_lines"] = slow
    finally:
        for b in running:
            stop_bridge(b)
        # Generation-2 collections during the steps (tests/bench/gcwatch.py), all bridges.
        gen2: list[tuple[float, float]] = []
        for b in running:
            for line in b.log.read_text(errors="replace").splitlines():
                if line.startswith("gcwatch:"):
                    facts["gc_threshold"], found = gcwatch.parse(line)
                    gen2 += found
        for step in steps_run:
            step.gen2_ms = [ms for end, ms in gen2 if step.window[0] <= end <= step.window[1]]
        if steps_run:
            got = [len(s.gen2_ms) for s in steps_run]
            longest = max((max(s.gen2_ms, default=0.0) for s in steps_run), default=0.0)
            print(f"  gen-2 collections per step {got}, longest {longest:.1f} ms", flush=True)
        if os.environ.get("CCB_BENCH_KEEP"):  # the bridges' logs (loopwatch, gcwatch) stay
            print(f"  logs kept in {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        fake.stop()
    return steps, facts


def call_cpu_us(steps: list[Step], idle: float) -> float | None:
    """CPU a routed call costs the bridge (its AMI events included), the idle share taken
    off, median over the steps: CPU time counts only while the bridge runs, so another
    process's load on the machine does not inflate it the way it inflates latency."""
    costs = [
        1e6 * (s.cpu_share - idle) * s.result.seconds / s.result.sessions
        for s in steps
        # Only steps that routed every call they offered: the AMI sites push the events
        # of every offered call, so a step that lost calls charges their events to the rest.
        if s.cpu_share is not None and s.kept_up
    ]
    return statistics.median(costs) if costs else None


def summary(label: str, steps: list[Step], floor: float, facts: dict[str, Any]) -> dict[str, Any]:
    best = ceiling(steps)
    at = next((s for s in steps if s.rate == best), None)
    idle = facts.get("idle_core", 0.0)
    per_call = call_cpu_us(steps, idle)
    # The calls/s that keep the bridge's core HEADROOM busy (the sizing figure: queueing
    # stays short, so p99 stays near p50), and a whole core's worth (the CPU bound).
    at_headroom = (HEADROOM - idle) * 1e6 / per_call if per_call else None
    per_core = (1.0 - idle) * 1e6 / per_call if per_call else None
    best_clear = ceiling(steps, clear=True) if any(s.spells is not None for s in steps) else None
    out = {
        "row": label,
        "ceiling_calls_per_s": best,
        "ceiling_clear_calls_per_s": best_clear,
        "vs_floor": round(best / floor, 2) if floor else None,
        "ami_events_per_s_at_ceiling": at.row()["ami_events_per_s"] if at else None,
        "cpu_us_per_call_at_ceiling": at.row()["cpu_us_per_call"] if at else None,
        "rss_mb_at_ceiling": at.row()["rss_mb"] if at else None,
        "cpu_us_per_call_less_idle": per_call and round(per_call),
        "calls_per_s_at_headroom": at_headroom and round(at_headroom),
        "calls_per_s_per_core": per_core and round(per_core),
        "steps": [s.row() for s in steps],
        **facts,
    }
    print(
        f"=> {label}: {best:.0f} calls/s ({out['vs_floor']} of the floor's {floor:.0f}), "
        f"AMI {out['ami_events_per_s_at_ceiling']} events/s, "
        f"{out['cpu_us_per_call_at_ceiling']} us CPU a call, RSS {out['rss_mb_at_ceiling']} MB; "
        f"{out['cpu_us_per_call_less_idle']} us a call less idle ({idle} core): "
        f"{out['calls_per_s_at_headroom']} calls/s at {HEADROOM:.0%} of a core, "
        f"{out['calls_per_s_per_core']} at 100 %; AMI alone "
        f"{facts.get('ami_only_us_per_call')} us a call a bridge",
        flush=True,
    )
    if best_clear is not None:
        print(f"   outside the host's slow spells: {best_clear:.0f} calls/s at p99 < {P99_MS} ms")
    return out


def missing(goal: dict[str, Any] | None, floor: float, floor_clear: float = 0.0) -> list[str]:
    """What stands between this run and the goal, in measured figures."""
    rate = GOAL[2]
    out = []
    if floor < rate:
        out.append(
            f"the floor (this generator and a bare FastAGI server, no AMI) held p99 < "
            f"{P99_MS} ms only to {floor:.0f}/s: this machine cannot show {rate}/s for any "
            "server; run the generator and the fake sites on another host"
        )
    if goal is None:
        return [*out, "the 20-site row did not run"]
    if goal.get("ceiling_clear_calls_per_s") is not None:
        out.append(
            f"outside the host's slow spells (SpellWatch) the bridge held p99 < {P99_MS} ms "
            f"to {goal['ceiling_clear_calls_per_s']:.0f}/s (the floor: {floor_clear:.0f}/s)"
        )
    step = next((s for s in goal["steps"] if s["rate"] >= rate), None)
    if step is None:
        out.append(f"the bridge never reached a {rate}/s step (two misses before it)")
    else:
        out.append(
            f"the bridge at {step['rate']:.0f}/s: reached {step['reached']}/s, p50 "
            f"{step['p50_ms']} ms, p99 {step['p99_ms']} ms, {step['errors']} errors"
        )
    per_call, idle = goal.get("cpu_us_per_call_less_idle"), goal.get("idle_core") or 0.0
    if per_call:
        need = (HEADROOM - idle) * 1e6 / rate
        core = idle + per_call * rate / 1e6
        verdict = "within" if per_call <= need else "over"
        out.append(
            f"CPU: {per_call} us a call + {idle} core idle = {core:.2f} core at {rate}/s, "
            f"{verdict} the {HEADROOM:.0%} of a core that keeps p99 near p50 (at most "
            f"{need:.0f} us a call); AMI alone {goal.get('ami_only_us_per_call')} us a call"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="20 sites x 5,000 agents only, 3 s steps")
    ap.add_argument("--rows", help="SITESxAGENTS,... (default 5x1000,20x5000,50x10000)")
    ap.add_argument("--rates", help="rising calls/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=5.0, help="per step")
    ap.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL rows")
    ap.add_argument("--json", help="write the result here too")
    ap.add_argument(
        "--event-loop",
        default="asyncio",
        choices=("asyncio", "uvloop", "auto"),
        help="the bridge's bridge.event_loop (default asyncio, as the product's)",
    )
    ap.add_argument(
        "--generator",
        default="c",
        choices=("c", "python"),
        help="Asterisk's side: agi_gen.c (default; built with the system's C compiler, "
        "the Python one when there is none) or agi_load's Python generator",
    )
    ap.add_argument(
        "--spells",
        action="store_true",
        help="a SpellWatch beside each step: also the p99 of the calls no host spell touched",
    )
    args = ap.parse_args(argv)
    WATCH_SPELLS[0] = args.spells
    if args.generator == "c":
        GENERATOR.binary = agi_load.compile_generator()
    rows: tuple[tuple[int, int], ...] = ROWS
    seconds = args.seconds
    rates: tuple[int, ...] = RATES
    if args.quick:
        rows, seconds, rates = ((GOAL[0], GOAL[1]),), 3.0, QUICK_RATES
    if args.rows:
        rows = tuple((int(a), int(b)) for a, b in (r.split("x") for r in args.rows.split(",")))
    if args.rates:
        rates = tuple(int(r) for r in args.rates.split(","))
    print(
        f"load {os.getloadavg()[0]:.1f} at the start; {os.cpu_count()} cores (shared); "
        f"generator {GENERATOR.name}"
    )
    floor_run = floor_steps(rates, seconds)
    floor, floor_clear = ceiling(floor_run), ceiling(floor_run, clear=True)
    print(f"=> floor: {floor:.0f} calls/s", flush=True)
    if WATCH_SPELLS[0]:
        print(f"   outside the host's slow spells: {floor_clear:.0f} calls/s", flush=True)
    results: list[dict[str, Any]] = []
    for s, a in rows:
        steps, facts = bridge_steps(s, a, rates, seconds, event_loop=args.event_loop)
        results.append(summary(f"{s} sites, {a} agents, 1 bridge", steps, floor, facts))
    if not args.no_pg and not args.quick:
        from tests.store.pg import PgCluster

        pg = PgCluster()
        pg.start()
        try:
            s, a = GOAL[0], GOAL[1]
            for n in (1, 2):
                steps, facts = bridge_steps(s, a, rates, seconds, bridges=n, pg=pg)
                label = f"{s} sites, {a} agents, {n} bridge{'s' if n > 1 else ''} + PostgreSQL"
                results.append(summary(label, steps, floor, facts))
        finally:
            pg.remove()
    goal = next(
        (r for r in results if r["row"] == f"{GOAL[0]} sites, {GOAL[1]} agents, 1 bridge"), None
    )
    met = goal is not None and goal["ceiling_calls_per_s"] >= GOAL[2]
    if not met:
        for line in missing(goal, floor, floor_clear):
            print(f"missing: {line}")
    print(
        f"goal: 1 bridge, {GOAL[0]} sites, {GOAL[1]} agents >= {GOAL[2]} calls/s at p99 < "
        f"{P99_MS} ms: {'met' if met else 'MISSED'}; load {os.getloadavg()[0]:.1f} at the end"
    )
    if args.json:
        out = {
            "bench": "ceiling",
            "generator": GENERATOR.name,
            "floor_calls_per_s": floor,
            "rows": results,
            "met": met,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
