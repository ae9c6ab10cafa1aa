"""FastAGI server instructions a session under callgrind: a figure a shared machine's noise
does not move, for the server kinds of bench_fastagi on asyncio's loop and uvloop.

    .venv/bin/python -m tests.bench.bench_fastagi_ir                      # ~12 min
    .venv/bin/python -m tests.bench.bench_fastagi_ir --kinds script --loops uvloop
    .venv/bin/python -m tests.bench.bench_fastagi_ir --code /tmp/old      # another tree's ccbridge

Each server runs under ``valgrind --tool=callgrind`` (user-space instructions, no kernel
time) while bench_fastagi's client, outside it, plays 200 and then 1,200 sessions with 4
connections; the difference of the two totals over 1,000 sessions is one session's count,
free of start-up. Kinds: ``script`` (a script handler, as ccbridge's ``route``),
``ccbridge`` (an async handler with a task and an AgiSession, as ``lookup``), ``protocol``
(the least a Python server can do: one asyncio.Protocol, no header parsing). Needs
valgrind (Debian ``valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.bench_fastagi import BARE_COMMAND, _ProtocolSession, closed_loop

ROOT = Path(__file__).resolve().parents[2]
FEW, MANY = 200, 1200


# --------------------------------------------------------------------------- server


def _announce(port_file: str, port: int) -> None:
    """Write the port where the driver waits for it, in one rename."""
    Path(port_file + ".tmp").write_text(str(port))
    os.rename(port_file + ".tmp", port_file)


async def _serve(kind: str, port_file: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if kind == "protocol":
        server = await loop.create_server(
            lambda: _ProtocolSession(BARE_COMMAND), "127.0.0.1", 0, backlog=1024
        )
        port = server.sockets[0].getsockname()[1]
    else:
        from ccbridge.agi.codec import AgiRequest
        from ccbridge.agi.server import AgiSession, FastAgiServer, Script, script

        async def route(session: AgiSession) -> None:
            await session.set_variable("CCB_ROUTE", "queue-sales")

        def route_script(request: AgiRequest) -> Script:
            yield BARE_COMMAND.decode().rstrip("\n")

        handler = script(route_script) if kind == "script" else route
        agi = FastAgiServer({"route": handler}, "127.0.0.1", 0, max_sessions=10_000)
        await agi.start()
        port = agi.port
    _announce(port_file, port)
    await stop.wait()
    if kind == "protocol":
        server.close()
    else:
        await agi.stop()


def _server_main(kind: str, loop: str, port_file: str) -> None:
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(kind, port_file))
    else:
        asyncio.run(_serve(kind, port_file))


# --------------------------------------------------------------------------- driver


def instructions(kind: str, loop: str, code: Path, sessions: int) -> int:
    """Instructions the server process ran in all, serving ``sessions`` sessions."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = f"{tmp}/port"
        env = dict(os.environ, PYTHONPATH=f"{code}{os.pathsep}{ROOT}")
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        command += [sys.executable, "-m", "tests.bench.bench_fastagi_ir"]
        command += ["--serve", kind, loop, port_file]
        proc = subprocess.Popen(command, env=env, cwd=tmp, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not os.path.exists(port_file):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{kind} server did not start: {proc.communicate()[1][-500:]}")
            time.sleep(0.2)
        port = int(Path(port_file).read_text())
        result = asyncio.run(closed_loop(port, 4, sessions, 3600.0))
        proc.terminate()
        err = proc.communicate(timeout=120)[1]
    if result.errors or result.sessions != sessions:
        raise RuntimeError(f"{kind}: {result.errors} errors, {result.sessions} sessions")
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise RuntimeError(f"no callgrind total: {err[-500:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="script,ccbridge,protocol")
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--code", type=Path, default=ROOT, help="the tree whose ccbridge runs")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _server_main(*args.serve)
        return 0
    print(f"instructions a FastAGI session (callgrind), ccbridge from {args.code}")
    for loop in args.loops.split(","):
        for kind in args.kinds.split(","):
            few = instructions(kind, loop, args.code, FEW)
            many = instructions(kind, loop, args.code, MANY)
            per = (many - few) / (MANY - FEW)
            print(f"  {kind:9} on {loop:8} {per / 1000:7.1f} k instructions a session", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
