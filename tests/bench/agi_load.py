"""Open-loop FastAGI `route` load for the ceiling bench, cheap enough to leave a core free.

Asterisk's side of each call: connect, the request header, answer every command line
``200 result=0`` and wait until the bridge closes; the call is routed when a command set
a non-empty ``CCB_ROUTE``. What makes it cheap (bench_ceiling's first generator, one
``asyncio.open_connection`` task a call with ``readline`` and a full parse, held p99
< 5 ms only to 500/s with the bare server: it and the server shared the cores):

- every header is encoded before the step starts (a fresh call id each);
- a protocol per connection, no streams: a call's one task only connects
  (``sock_connect``, then ``create_connection`` on that socket, no address look-up);
  the replies are written from ``data_received`` and the call ends in ``connection_lost``;
- the calls due are started from one timer every millisecond, not one sleep each;
- uvloop when it imports.

The latency of a call runs from its connect to the bridge closing the session, as the
previous generator measured it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from ccbridge import variables as v
from tests.agiclient import route_header
from tests.bench.bench_fastagi import Result

_ROUTE_SET = f"{v.ROUTE}=".encode()  # in the MSet line: CCB_ROUTE=<route>
_ROUTE_VAR = f"SET VARIABLE {v.ROUTE} ".encode()  # the one-by-one fallback
_OK = b"200 result=0\n"
T = TypeVar("T")


def routed(line: bytes) -> bool:
    """Whether one command line sets a non-empty CCB_ROUTE (MSet or SET VARIABLE)."""
    at = line.find(_ROUTE_SET)
    if at >= 0 and (at == 0 or line[at - 1 : at] in (b" ", b",", b'"')):
        value = line[at + len(_ROUTE_SET) :].split(b",", 1)[0].strip(b'"\n ')
        return bool(value)
    if line.startswith(_ROUTE_VAR):
        return bool(line[len(_ROUTE_VAR) :].strip(b'"\n '))
    return False


class _Call(asyncio.Protocol):
    __slots__ = ("_buf", "_header", "_load", "_ok", "_started", "_transport")

    def __init__(self, load: _Load, header: bytes, started: float) -> None:
        self._load = load
        self._header = header
        self._started = started
        self._buf = b""
        self._ok = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._header)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while (end := buf.find(b"\n")) >= 0:
            line, buf = buf[: end + 1], buf[end + 1 :]
            if routed(line):
                self._ok = True
            assert self._transport is not None
            self._transport.write(_OK)
        self._buf = buf

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._load.done(self._started, self._ok and exc is None)


class _Load:
    def __init__(self, total: int) -> None:
        self.latencies: list[float] = []
        self.starts: list[float] = []  # each latency's call start (perf_counter), same order
        self.errors = 0
        self.left = total
        self.finished = asyncio.get_running_loop().create_future()

    def done(self, started: float, ok: bool) -> None:
        if ok:
            self.latencies.append(time.perf_counter() - started)
            self.starts.append(started)
        else:
            self.errors += 1
        self.left -= 1
        if self.left == 0 and not self.finished.done():
            self.finished.set_result(None)


def headers(
    targets: Sequence[int],
    count: int,
    dids: Sequence[tuple[str, str, str]],
    callers: Sequence[str],
    tag: str,
    seed: int,
) -> list[tuple[int, bytes]]:
    """(port, header) for ``count`` calls: a random number of the deployment each, the
    callers in turn, round robin over ``targets``."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        did, site, _ = dids[rng.randrange(len(dids))]
        port = targets[n % len(targets)]
        caller = callers[n % len(callers)]
        out.append((port, route_header("127.0.0.1", port, did, caller, site, f"{site}:{n}.{tag}")))
    return out


def _dump(path: str, rate: float, started: float, starts: list[float], lat: list[float]) -> None:
    """Append the step's calls to ``path``: a header with its start (perf_counter, the
    system's monotonic clock, as other processes' logs), then each call's start (s into
    the step) and latency (ms). tests/bench/latency_clusters.py reads it."""
    with open(path, "a") as f:
        f.write(f"# step at {rate:g}/s from {started:.6f} (the monotonic clock)\n")
        f.writelines(f"{s - started:.6f} {1e3 * x:.3f}\n" for s, x in zip(starts, lat, strict=True))


async def drive(calls: Sequence[tuple[int, bytes]], rate: float, within: float = 5.0) -> Result:
    """Start ``calls`` at ``rate`` a second (open loop); wait for every one to end (at
    most ``within`` seconds after the last start)."""
    loop = asyncio.get_running_loop()
    load = _Load(len(calls))
    if not calls:
        return Result(0, 0, 0.0, [])
    pending: set[asyncio.Task[None]] = set()

    async def connect(port: int, header: bytes) -> None:
        started = time.perf_counter()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.create_connection(lambda: _Call(load, header, started), sock=sock)
        except OSError:
            sock.close()
            load.done(started, False)

    started = time.perf_counter()
    sent = 0
    while sent < len(calls):
        due = min(len(calls), int((time.perf_counter() - started) * rate) + 1)
        while sent < due:
            task = loop.create_task(connect(*calls[sent]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.001)
    try:
        await asyncio.wait_for(asyncio.shield(load.finished), within)
    except TimeoutError:
        load.errors += load.left  # never ended: the bridge did not answer in time
    dump = os.environ.get("CCB_BENCH_LATENCY_DUMP")
    if dump:  # after the step: the load is over
        _dump(dump, rate, started, load.starts, load.latencies)
    elapsed = time.perf_counter() - started
    return Result(len(load.latencies), load.errors, elapsed, load.latencies, load.starts)


def runner(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop (asyncio's loop when uvloop does not import)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as run_on:
        return run_on.run(main)


def run(calls: Sequence[tuple[int, bytes]], rate: float) -> Result:
    """``drive`` on a fresh loop (``runner``). CCB_BENCH_GEN_NOGC=1: the collector off
    meanwhile, in this process (the generator's own pauses out of the latencies)."""
    if not os.environ.get("CCB_BENCH_GEN_NOGC"):
        return runner(drive(calls, rate))
    import gc

    gc.collect()
    gc.disable()
    try:
        return runner(drive(calls, rate))
    finally:
        gc.enable()


# --------------------------------------------------------------------------- in C

GENERATOR_C = Path(__file__).with_name("agi_gen.c")


def compile_generator() -> Path | None:
    """agi_gen.c built with the system's C compiler (once a source: the binary is kept in
    the temp folder under the source's hash); None when there is no compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source = GENERATOR_C.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    binary = Path(tempfile.gettempdir()) / f"ccbridge-agi-gen-{digest}"
    if not binary.exists():
        partial = binary.with_suffix(f".{os.getpid()}")
        subprocess.run(
            [compiler, "-O2", "-Wall", "-o", str(partial), str(GENERATOR_C)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        partial.replace(binary)
    return binary


def run_c(
    binary: Path, calls: Sequence[tuple[int, bytes]], rate: float, within: float = 5.0
) -> Result:
    """``drive``'s load from agi_gen.c's process: the same calls, rate, latency (connect to
    the bridge's close), routed test and errors, for a tenth of the Python generator's CPU
    (its CPU is the caller's children's: ``resource.RUSAGE_CHILDREN``)."""
    feed = b"".join(b"%d %d\n%s" % (port, len(header), header) for port, header in calls)
    done = subprocess.run(
        [str(binary), f"{rate:g}", f"{within:g}", v.ROUTE],
        input=feed,
        capture_output=True,
        check=True,
        timeout=len(calls) / rate + within + 60,
    )
    starts: list[float] = []
    latencies: list[float] = []
    errors, first = 0, 0.0
    for line in done.stdout.decode().splitlines():
        fields = line.split()
        if fields[0] == "left":
            errors += int(fields[1])
            first = float(fields[2])
        elif fields[2] == "1":
            starts.append(float(fields[0]))
            latencies.append(float(fields[1]) / 1e3)
        else:
            errors += 1
    # The calls' span from the first start to the last end, as drive's elapsed time.
    seconds = max((s + x for s, x in zip(starts, latencies, strict=True)), default=0.0)
    starts = [first + s for s in starts]  # on the monotonic clock
    dump = os.environ.get("CCB_BENCH_LATENCY_DUMP")
    if dump:
        _dump(dump, rate, first, starts, latencies)
    return Result(len(latencies), errors, seconds, latencies, starts)
