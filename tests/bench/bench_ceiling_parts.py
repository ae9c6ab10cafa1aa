"""Two pieces of the ceiling bench's CPU a call, by thread CPU in one process, each against
its own base in the same run (a figure a shared machine moves far less than the bench's):

- a held-route pass (``HeldRoutePublisher.table``) over the ceiling bench's 20-site,
  5,000-agent deployment while the live state moves between two sites' passes as it
  does under 750 calls/s (~9 calls: an agent busy then free, the sticky site moved), against
  ``held_entries`` computing every row (what a pass did before the tenth session);
- the ``routed`` line the bridge logs a call (``logs.setup``'s handler, stderr to a file);
- a held-route write (``SiteLink.action("Setvar", ...)``, awaited) against tests/amifake's
  server in another process: this process's CPU a round trip (~0.6 writes a call at 500
  calls/s in the ceiling bench, while the sticky sites move); and the same a write when a
  pass sends its writes 4 in one (``SiteLink.plain_actions``, twenty-second session).

    .venv/bin/python -m tests.bench.bench_ceiling_parts                       # ~20 s
    .venv/bin/python -m tests.bench.bench_ceiling_parts --code /path/to/tree  # its log line, write
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ccbridge.config.model import Config
from ccbridge.routing.state import LiveState

ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    # Run as a script with --code: that tree's ccbridge comes first (PYTHONPATH).
    sys.path.append(str(ROOT))

CALLS_BETWEEN_PASSES = 9  # 750 calls/s over 20 sites' passes, 4 a second each
ROUNDS = 7


def _moving_state(
    sites: int, agents: int
) -> tuple[Config, LiveState, Callable[[LiveState], LiveState]]:
    """(config, synced state, a function making one call's moves on a state)."""
    from ccbridge.config.loader import load_config
    from ccbridge.routing import state as st
    from tests.bench import bench_ceiling as bc

    os.environ.setdefault("CCB_BENCH_AMI", "bench")
    text = bc.deployment(sites, agents, list(range(40000, 40000 + sites)), 41000, 41001, None)
    folder = Path(tempfile.mkdtemp(prefix="ccb-parts-"))
    path = folder / "ceiling.yaml"
    path.write_text(text)
    config = load_config(path)
    ts = datetime.fromisoformat(bc.AT).timestamp()
    state = st.initial_state([s.name for s in config.sites])
    per_site = agents // sites
    for s in config.sites:
        state = st.set_site_up(state, s.name, True, ts - 100)
        state = st.begin_sync(state, s.name)
        for ev in bc.queue_status(s.name, per_site):
            state = st.apply_event(state, s.name, ev, ts - 100)
        state = st.complete_sync(state, s.name)
    rng = random.Random(15)

    def call(state: st.LiveState) -> st.LiveState:
        i, a = rng.randrange(sites), rng.randrange(per_site)
        site, agent = bc.site_name(i), f"{bc.site_name(i)}-a{a}"
        queue = bc.agent_queues(a)[0]
        for status in ("2", "1"):  # busy, then free again
            event = {
                "Event": "QueueMemberStatus",
                "Queue": queue,
                "Interface": f"PJSIP/{agent}",
                "StateInterface": f"PJSIP/{agent}",
                "MemberName": agent,
                "Status": status,
                "Paused": "0",
                "InCall": "0",
            }
            state = st.apply_event(state, site, event, ts)
        # Each routed call makes its home site the sticky one of its (service, language).
        return st.set_sticky(state, rng.choice(("orders", "returns")), rng.choice(bc.LANGS), site)

    return config, state, call


def held_pass(rounds: int) -> dict[str, float]:
    """Thread CPU of one site's pass, us: the memo's and every row's, alternating rounds."""
    from prometheus_client import CollectorRegistry

    from ccbridge.clock import Clock
    from ccbridge.heldroutes import HeldRoutePublisher
    from ccbridge.routing.engine import Router
    from ccbridge.routing.held import Boundaries, held_entries
    from tests.bench import bench_ceiling as bc

    config, state, call = _moving_state(20, 5_000)
    holder = [state]
    clock = Clock(datetime.fromisoformat(bc.AT))
    router = Router(config)
    pub = HeldRoutePublisher(config, router, lambda: holder[0], clock, {}, CollectorRegistry())
    boundaries = Boundaries(config)
    out: dict[str, list[float]] = {"every row": [], "memo": []}
    rows = {"every row": 0, "memo": 0}

    async def run() -> None:
        for r in range(2 * rounds + 2):
            mode = "every row" if r % 2 == 0 else "memo"
            cpu, passes = 0.0, 0
            for _ in range(10):
                for site in config.sites:
                    for _ in range(CALLS_BETWEEN_PASSES):
                        holder[0] = call(holder[0])
                    t = time.thread_time()
                    if mode == "memo":
                        got = len(await pub.table(site))
                    else:
                        got = len(
                            list(held_entries(router, boundaries, site, holder[0], clock.now()))
                        )
                    cpu += time.thread_time() - t
                    passes += 1
                    rows[mode] += got
            if r >= 2:  # the first pair warms the memos up
                out[mode].append(1e6 * cpu / passes)

    decided0 = pub.decided
    asyncio.run(run())
    result = {mode: statistics.median(v) for mode, v in out.items()}
    result["memo rows decided %"] = 100 * (pub.decided - decided0) / max(1, rows["memo"])
    return result


def _serve_fake(port_out: Any, stop: Any) -> None:
    """The child: tests/amifake's server until ``stop`` is set."""
    from tests.amifake import FakeAmi

    async def serve() -> None:
        server = FakeAmi(secret="bench-secret")
        port_out.send(await server.start())
        await asyncio.to_thread(stop.wait)
        await server.close()

    asyncio.run(serve())


def held_write(rounds: int) -> float:
    """This process's CPU of one awaited Setvar through a SiteLink, us (median of rounds)."""

    async def one(link: Any, i: int, r: int) -> int:
        await link.action("Setvar", {"Variable": f"CCB_H_{i % 20}", "Value": str(r)})
        return 1

    return _writes(rounds, one)


def held_batch(rounds: int) -> float:
    """The same a write, when a pass's writes go 4 in one (SiteLink.plain_actions), us."""

    async def four(link: Any, i: int, r: int) -> int:
        batch = [
            ("Setvar", {"Variable": f"CCB_H_{(i + k) % 20}", "Value": str(r)}) for k in range(4)
        ]
        await link.plain_actions(batch)
        return 4

    return _writes(rounds, four)


def _writes(rounds: int, step: Callable[[Any, int, int], Awaitable[int]]) -> float:
    """This process's CPU a write through a SiteLink to tests/amifake's server in a child
    process, ``step`` writing one or more a call, us (median of rounds)."""
    import multiprocessing as mp

    from ccbridge.ami.client import LinkState, SiteLink
    from ccbridge.config.model import AmiSettings, SecretValue
    from tests.polling import until

    spawn = mp.get_context("spawn")
    port_in, port_out = spawn.Pipe(duplex=False)
    stop = spawn.Event()
    child = spawn.Process(target=_serve_fake, args=(port_out, stop), daemon=True)
    child.start()
    settings = AmiSettings(
        host="127.0.0.1",
        port=port_in.recv(),
        username="ccbridge",
        secret=SecretValue("bench-secret", "bench"),
        ping_interval=5.0,
        ping_timeout=5.0,
        action_timeout=5.0,
    )
    got: list[float] = []
    log = logging.getLogger("bench.ami")

    async def run() -> None:
        link = SiteLink("s00", settings, lambda s, e: None, lambda s, st: None, log)
        await link.start()
        await until(lambda: link.state is LinkState.UP, 10, "the AMI link up")
        for r in range(rounds + 1):
            t = time.process_time()
            i = written = 0
            while written < 2_000:
                written += await step(link, i, r)
                i += 1
            if r:  # the first round warms up
                got.append(1e6 * (time.process_time() - t) / written)
        await link.stop()

    try:
        asyncio.run(run())
    finally:
        stop.set()
        child.join(5)
    return statistics.median(got)


def log_line(rounds: int) -> float:
    """Thread CPU of one ``routed`` line, us (median of ``rounds`` rounds)."""
    from ccbridge import logs
    from ccbridge.logs import ctx, mask_number

    # A file, as the bench's bridge logs to one: each line is a write.
    sink = tempfile.TemporaryFile("w")  # noqa: SIM115
    stderr, sys.stderr = sys.stderr, sink
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.setup("INFO")
        log = logging.getLogger("ccbridge.agi")
        n, got = 20_000, []
        for _ in range(rounds):
            t = time.thread_time()
            for _ in range(n):
                log.info(
                    "routed",
                    extra=ctx(
                        did="+9180000100",
                        caller=mask_number("+919812345678"),
                        at="s01",
                        route="queue",
                        site="s01",
                        queue="orders-hi",
                        reasons="caller_prefix,home_site_open",
                    ),
                )
            got.append(1e6 * (time.thread_time() - t) / n)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.stderr = stderr
        sink.close()
    return statistics.median(got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, help="another tree: its log line and write only")
    ap.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part:
        print(f"{PARTS[args.part](ROUNDS):.2f}")
        return
    if args.code is not None:
        env = dict(os.environ, PYTHONPATH=f"{args.code}{os.pathsep}{ROOT}")
        where = [sys.executable, "-c", "import ccbridge; print(ccbridge.__file__)"]
        found = subprocess.run(where, env=env, cwd=args.code, capture_output=True, text=True)
        parts = (("log", "routed log line"), ("write", "held write (Setvar)"))
        for part, what in (*parts, ("batch", "held writes 4 a batch, a write")):
            command = [sys.executable, str(Path(__file__).resolve()), "--part", part]
            done = subprocess.run(command, env=env, cwd=args.code, capture_output=True, text=True)
            got = done.stdout.strip() or done.stderr[-400:]
            print(f"{what} ({found.stdout.strip()}): {got} us")
        return
    print(f"load {os.getloadavg()[0]:.1f} at the start; thread CPU, medians of {ROUNDS} rounds")
    held = held_pass(ROUNDS)
    print(
        f"held pass, 20 sites x 5,000 agents, {CALLS_BETWEEN_PASSES} calls between two passes:"
        f" every row {held['every row']:.0f} us, memo {held['memo']:.0f} us a site"
        f" ({held['memo'] / held['every row']:.2f};"
        f" rows decided {held['memo rows decided %']:.0f} %)"
    )
    print(f"routed log line: {log_line(ROUNDS):.2f} us")
    print(f"held write (Setvar, awaited; this process's CPU): {held_write(ROUNDS):.2f} us")
    print(f"held writes 4 a batch (plain_actions), a write: {held_batch(ROUNDS):.2f} us")


PARTS = {"log": log_line, "write": held_write, "batch": held_batch}


if __name__ == "__main__":
    main()
