"""FastAGI benchmark: ccbridge's FastAgiServer against a bare asyncio server, same client.

Each server runs in its own process (spawned the same way) so the synthetic Asterisk
client never shares its event loop.  One session = connect, send an Asterisk-shaped
header, read ``SET VARIABLE``, answer ``200 result=1``, read until the server closes.

    .venv/bin/python tests/bench/bench_fastagi.py                  # closed loop + 300/s
    .venv/bin/python tests/bench/bench_fastagi.py --concurrency 20 --sessions 8000 \\
        --rate 300 --rate-seconds 5 --rounds 3

Targets: ccbridge/bare throughput ratio >= 0.7; p99 < 2 ms at 300 sessions/s.

The closed loop also prints each server process's CPU a session (utime + stime over the
run: another process on the machine does not count) and runs a third server, ``protocol``:
one ``asyncio.Protocol`` a connection, no streams and no task, the least a Python FastAGI
server on asyncio's loop can cost (what a session's machinery costs is ccbridge's less it).
``ccbridge`` runs an async handler (a task a session, as ``lookup``); ``script`` runs a
script handler in the connection's callbacks, as ccbridge's ``route`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):
    # Run as a script from anywhere: make the repository importable (and the spawned
    # server processes, which re-import this file as __mp_main__).
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

HEADER = (
    b"agi_network: yes\n"
    b"agi_network_script: route?site=in\n"
    b"agi_request: agi://127.0.0.1/route?site=in\n"
    b"agi_channel: PJSIP/carrier-in-00000001\n"
    b"agi_language: en\n"
    b"agi_type: PJSIP\n"
    b"agi_uniqueid: 1732265000.1\n"
    b"agi_version: 22.10.1\n"
    b"agi_callerid: 919876543210\n"
    b"agi_calleridname: Bench\n"
    b"agi_callingpres: 0\n"
    b"agi_callingani2: 0\n"
    b"agi_callington: 0\n"
    b"agi_callingtns: 0\n"
    b"agi_dnid: 18005550100\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: from-carrier\n"
    b"agi_extension: 18005550100\n"
    b"agi_priority: 3\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 140230000000000\n"
    b"agi_arg_1: sales\n"
    b"\n"
)
BARE_COMMAND = b'SET VARIABLE CCB_ROUTE "queue-sales"\n'
EXPECTED = (BARE_COMMAND,)
THREE_VARS = {"CCB_ROUTE": "queue-sales", "CCB_SITE": "in", "CCB_LANG": "hi"}
EXPECTED_THREE = tuple(f'SET VARIABLE {k} "{v}"\n'.encode() for k, v in THREE_VARS.items())


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


# --------------------------------------------------------------------------- servers


# CCB_BENCH_FLOOR_BURN_US=N: the bare and protocol servers spend N us of CPU on each call before
# its answer (bench_ceiling's floor: does the tail follow the CPU a call on this machine?)
BURN_S = float(os.environ.get("CCB_BENCH_FLOOR_BURN_US", "0") or 0) / 1e6


def _burn() -> None:
    until = time.perf_counter() + BURN_S
    while BURN_S and time.perf_counter() < until:
        pass


def _bare_session(command: bytes) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The minimum a FastAGI server must do: read the header, one command, one reply.
        try:
            await reader.readuntil(b"\n\n")
            _burn()
            writer.write(command)
            await reader.readline()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    return session


class _ProtocolSession(asyncio.Protocol):
    """The same session as ``_bare_session`` with no streams and no task."""

    def __init__(self, command: bytes) -> None:
        self.command = command
        self.buf = b""
        self.sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is a Transport by its methods, not by its class.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.sent:
            head, found, self.buf = self.buf.partition(b"\n\n")
            if not found:
                self.buf = head
                return
            self.sent = True
            _burn()
            self.transport.write(self.command)
        if b"\n" in self.buf:
            self.transport.close()


async def _run_server(kind: str, conn: Connection, port: int, command: bytes) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)  # any byte (or EOF) from the parent stops us
    if kind in ("bare", "protocol"):
        if kind == "bare":
            server = await asyncio.start_server(
                _bare_session(command), "127.0.0.1", port, backlog=1024
            )
        else:
            server = await loop.create_server(
                lambda: _ProtocolSession(command), "127.0.0.1", port, backlog=1024
            )
        conn.send(server.sockets[0].getsockname()[1])
        await stop.wait()
        server.close()
        await server.wait_closed()
        return
    from ccbridge.agi.codec import AgiRequest
    from ccbridge.agi.server import AgiSession, FastAgiServer, Script, script

    async def route(session: AgiSession) -> None:
        await session.set_variable("CCB_ROUTE", "queue-sales")

    def route_script(request: AgiRequest) -> Script:
        # As ccbridge's route handler runs: in the connection's callbacks, no task.
        yield BARE_COMMAND.decode().rstrip("\n")

    async def three_sequential(session: AgiSession) -> None:
        for name, value in THREE_VARS.items():
            await session.set_variable(name, value)

    async def three_pipelined(session: AgiSession) -> None:
        await session.set_variables(THREE_VARS, pipelined=True)

    handler: Any = {
        "ccbridge": route,
        "script": script(route_script),
        "seq3": three_sequential,
        "pipe3": three_pipelined,
    }[kind]
    agi = FastAgiServer({"route": handler}, "127.0.0.1", 0, max_sessions=10_000)
    await agi.start()
    conn.send(agi.port)
    await stop.wait()
    conn.send(
        {
            "sessions_total": agi.stats.sessions_total,
            "errors": dict(agi.stats.errors_total),
            "rejected_busy": agi.stats.rejected_busy,
        }
    )
    await agi.stop()


def _server_main(kind: str, conn: Connection, port: int, command: bytes, uv: bool) -> None:
    logging.basicConfig(level=logging.WARNING)
    if uv:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_run_server(kind, conn, port, command))
        return
    asyncio.run(_run_server(kind, conn, port, command))


class ServerProcess:
    """One benchmark server in a spawned process; both kinds start the same way.

    The bare server answers every session with ``command`` (bench_e2e's agi-floor sends
    ccbridge's own MSet line) on ``port`` (0: any free port).
    """

    def __init__(
        self, kind: str, port: int = 0, command: bytes = BARE_COMMAND, *, uvloop: bool = False
    ) -> None:
        """``uvloop``: serve on uvloop (bench_ceiling's floor) instead of asyncio's loop."""
        ctx = mp.get_context("spawn")
        self.kind = kind
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_server_main, args=(kind, child, port, command, uvloop), daemon=True
        )
        self._proc.start()
        child.close()
        if not self._conn.poll(20):
            raise RuntimeError(f"{kind} server did not start")
        self.port: int = self._conn.recv()

    @property
    def pid(self) -> int:
        pid = self._proc.pid
        assert pid is not None  # started
        return pid

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> object:
        self._conn.send(b"stop")
        ours = self.kind in ("ccbridge", "script")
        stats = self._conn.recv() if ours and self._conn.poll(5) else None
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()
        return stats


# --------------------------------------------------------------------------- client


async def one_session(port: int, expected: tuple[bytes, ...] = EXPECTED) -> float:
    """Latency in seconds of one complete FastAGI call, as Asterisk would see it."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HEADER)
        for want in expected:
            # Like Asterisk: one command line at a time, each answered before the next.
            line = await reader.readline()
            if line != want:
                raise RuntimeError(f"unexpected command {line!r}")
            writer.write(b"200 result=1\n")
        if await reader.read() != b"":
            raise RuntimeError("unexpected bytes after the reply")
        return time.perf_counter() - started
    finally:
        writer.close()


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of ``ordered`` (sorted, not empty) as every bench here reports it:
    the value at rank ``int(q * n)``, the last one for q = 1."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Result:
    sessions: int
    errors: int
    seconds: float
    latencies: list[float]
    # each latency's call start on the monotonic clock, where the generator keeps it
    # (bench_ceiling's: tests/bench/agi_load.py), else empty
    starts: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds

    def pct(self, q: float) -> float:
        return percentile(sorted(self.latencies), q) * 1000.0

    def line(self, label: str) -> str:
        return (
            f"{label:<10} {self.sessions:>6} sessions in {self.seconds:5.2f}s "
            f"= {self.rate:7.0f}/s   p50 {self.pct(0.50):6.3f} ms   "
            f"p99 {self.pct(0.99):6.3f} ms   max {max(self.latencies) * 1000:7.3f} ms   "
            f"errors {self.errors}"
        )


async def closed_loop(
    port: int,
    concurrency: int,
    sessions: int,
    max_seconds: float,
    expected: tuple[bytes, ...] = EXPECTED,
) -> Result:
    latencies: list[float] = []
    errors = 0
    remaining = sessions
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            try:
                latencies.append(await one_session(port, expected))
            except (OSError, RuntimeError):
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(len(latencies), errors, time.perf_counter() - started, latencies)


async def fixed_rate(
    port: int, rate: float, seconds: float, expected: tuple[bytes, ...] = EXPECTED
) -> Result:
    latencies: list[float] = []
    errors = 0

    async def timed() -> None:
        nonlocal errors
        try:
            latencies.append(await one_session(port, expected))
        except (OSError, RuntimeError):
            errors += 1

    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(timed())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*tasks)
    return Result(len(latencies), errors, time.perf_counter() - started, latencies)


# --------------------------------------------------------------------------- driver


def run_against(
    kind: str,
    body: Callable[[int], Result],
    expected: tuple[bytes, ...] = EXPECTED,
    uvloop: bool = False,
) -> tuple[Result, object, float]:
    """The client's result, the server's stats, and the server's CPU us a session."""
    server = ServerProcess(kind, uvloop=uvloop)
    try:
        asyncio.run(closed_loop(server.port, 10, 300, 5.0, expected))  # warm-up
        before = cpu_seconds(server.pid)
        result = body(server.port)
        cpu = cpu_seconds(server.pid) - before
    finally:
        stats = server.stop()
    return result, stats, cpu / max(len(result.latencies), 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--rate-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="closed loop: servers on uvloop")
    args = parser.parse_args(argv)

    print(
        f"closed loop: {args.concurrency} concurrent connections, "
        f"{args.sessions} sessions per run, {args.rounds} rounds (servers alternate)"
        + (", servers on uvloop" if args.uvloop else "")
    )
    kinds = ("ccbridge", "script", "bare", "protocol")
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpus: dict[str, list[float]] = {kind: [] for kind in kinds}
    for rnd in range(args.rounds):
        for kind in kinds if rnd % 2 == 0 else kinds[::-1]:
            result, stats, cpu_us = run_against(
                kind,
                lambda port: asyncio.run(
                    closed_loop(port, args.concurrency, args.sessions, args.max_seconds)
                ),
                uvloop=args.uvloop,
            )
            rates[kind].append(result.rate)
            cpus[kind].append(cpu_us)
            print(
                f"  round {rnd + 1} {result.line(kind)}  server {cpu_us:.0f} us CPU a session"
                + (f"   {stats}" if stats else "")
            )
    cc, bare = statistics.median(rates["ccbridge"]), statistics.median(rates["bare"])
    ratio = cc / bare
    print(f"median: ccbridge {cc:.0f}/s, bare {bare:.0f}/s, ratio {ratio:.2f} (target >= 0.7)")
    sc = statistics.median(rates["script"])
    print(f"        script {sc:.0f}/s, ratio to bare {sc / bare:.2f}")
    print(
        "median server CPU a session: "
        + ", ".join(f"{kind} {statistics.median(cpus[kind]):.0f} us" for kind in kinds)
    )

    print(f"\nfixed rate: {args.rate:.0f} sessions/s for {args.rate_seconds:.0f}s")
    p99: dict[str, float] = {}
    for kind in ("ccbridge", "bare"):
        result, _, _ = run_against(
            kind, lambda port: asyncio.run(fixed_rate(port, args.rate, args.rate_seconds))
        )
        p99[kind] = result.pct(0.99)
        print("  " + result.line(kind))

    print(
        f"\npipelining: 3 variables per call at {args.rate:.0f}/s, one command per RTT vs one write"
    )
    for kind in ("seq3", "pipe3"):
        result, _, _ = run_against(
            kind,
            lambda port: asyncio.run(
                fixed_rate(port, args.rate, args.rate_seconds, EXPECTED_THREE)
            ),
            EXPECTED_THREE,
        )
        print("  " + result.line(kind))
    ok = ratio >= 0.7 and p99["ccbridge"] < 2.0
    print(
        f"\nverdict: ratio {ratio:.2f} {'OK' if ratio >= 0.7 else 'MISS'}; "
        f"p99 at {args.rate:.0f}/s {p99['ccbridge']:.3f} ms "
        f"{'OK' if p99['ccbridge'] < 2.0 else 'MISS'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
