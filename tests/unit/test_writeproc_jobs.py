"""The record writer's child runs the report worker's jobs over a channel of their own
(ccbridge/store/writeproc.py ``_Jobs`` and ``serve_jobs``; ccbridge/reports/worker.py):
answers reach the job that asked, a job its caller gave up leaves nothing out of step, a
child that ends fails the jobs waiting on it, the report worker runs a job once more on
a new child and then says plainly that it could not; and the processes import only what
they use."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from ccbridge.config.store import StoreSettings
from ccbridge.reports.worker import JSON_CHUNK, Encoded, ReportWorker, WorkerFault, json_body
from ccbridge.store import writeproc
from ccbridge.store.writeproc import JobFailed, WriteProcessGone, _Jobs, serve_jobs


class Gate:
    """A job that waits in the child's thread until the test lets it go."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> str:
        self.started.set()
        self.release.wait(30)
        return "late"


def _boom() -> None:
    raise ValueError("a bug in a job")


@contextmanager
def _table(monkeypatch: pytest.MonkeyPatch, gate: Gate) -> Iterator[None]:
    jobs: dict[str, Callable[..., Any]] = {"echo": lambda x: x, "boom": _boom, "wait": gate}
    monkeypatch.setattr(writeproc, "_job_table", lambda: jobs)
    try:
        yield
    finally:
        gate.release.set()


@asynccontextmanager
async def _channel() -> AsyncIterator[tuple[_Jobs, socket.socket, threading.Thread]]:
    """Both ends in this process: the child's job thread over one end of a socket pair."""
    ours, theirs = socket.socketpair()
    thread = threading.Thread(target=serve_jobs, args=(theirs,), daemon=True)
    thread.start()
    reader, writer = await asyncio.open_connection(sock=ours)
    jobs = _Jobs(reader, writer)
    try:
        yield jobs, theirs, thread
    finally:
        jobs.close()
        await asyncio.to_thread(thread.join, 10)


async def test_answers_reach_their_jobs_and_a_job_given_up_leaves_nothing_out_of_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate()
    with _table(monkeypatch, gate):
        async with _channel() as (jobs, _, _):
            assert await jobs.ask("echo", ({"a": [1, 2]},)) == {"a": [1, 2]}
            with pytest.raises(JobFailed, match="ValueError: a bug in a job"):
                await jobs.ask("boom", ())
            with pytest.raises(JobFailed, match="KeyError"):
                await jobs.ask("no such job", ())
            given_up = asyncio.create_task(jobs.ask("wait", ()))
            assert await asyncio.to_thread(gate.started.wait, 10)
            given_up.cancel()  # its caller went away while the child works on it
            with pytest.raises(asyncio.CancelledError):
                await given_up
            gate.release.set()
            # The given-up job's answer ("late") comes first and is dropped.
            assert await jobs.ask("echo", (2,)) == 2
            assert not jobs.gone


async def test_a_child_that_ends_under_a_job_fails_it_and_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate()
    with _table(monkeypatch, gate):
        async with _channel() as (jobs, theirs, _):
            waiting = asyncio.create_task(jobs.ask("wait", ()))
            assert await asyncio.to_thread(gate.started.wait, 10)
            theirs.shutdown(socket.SHUT_RDWR)  # the child's end is gone
            with pytest.raises(WriteProcessGone, match="ended"):
                await waiting
            gate.release.set()
            assert jobs.gone
            with pytest.raises(WriteProcessGone):
                await jobs.ask("echo", (1,))


class _CutWriter:
    """A job channel's writer whose peer is gone: the write is taken, the drain fails
    (as asyncio's transport does on EPIPE), while the reader has seen nothing yet."""

    def __init__(self) -> None:
        self.frames = 0

    def write(self, data: bytes) -> None:
        self.frames += 1

    async def drain(self) -> None:
        raise ConnectionResetError("Connection lost")

    def close(self) -> None:
        pass


async def test_a_failed_write_makes_the_channel_gone_at_once() -> None:
    """The CI failure of the eleventh stop: the report worker's second try went to the
    killed child's channel, because its reader had not yet seen the end when the first
    try's write failed. The write's failure alone now ends the channel."""
    ours, theirs = socket.socketpair()
    try:
        reader, real = await asyncio.open_connection(sock=ours)
        writer = _CutWriter()
        jobs = _Jobs(reader, writer)  # type: ignore[arg-type]
        with pytest.raises(WriteProcessGone, match=r"ended \(ConnectionResetError"):
            await jobs.ask("echo", (1,))
        assert jobs.gone  # no loop step in between: the next try sees it
        with pytest.raises(WriteProcessGone, match="ConnectionResetError"):
            await jobs.ask("echo", (2,))
        assert writer.frames == 1  # the second job was not sent
        jobs.close()
        real.close()
        await real.wait_closed()
    finally:
        theirs.close()


ANSWER = Encoded("application/json", b"{}", 0, False)


class FakeProcess:
    """A writer process whose child ends under the first ``ends`` jobs."""

    def __init__(self, ends: int, closed: bool = False) -> None:
        self.ends = ends
        self.closed = closed
        self.asked: list[str] = []

    async def job(self, name: str, args: tuple[Any, ...]) -> Any:
        self.asked.append(name)
        if len(self.asked) <= self.ends:
            raise WriteProcessGone("the writer process ended (IncompleteReadError)")
        return ANSWER


def _worker(process: FakeProcess) -> ReportWorker:
    return ReportWorker(StoreSettings(url="sqlite+aiosqlite:///x.db"), process)  # type: ignore[arg-type]


NOW = datetime(2026, 11, 29, tzinfo=UTC)


async def test_a_job_is_run_once_more_when_the_child_ends_under_it() -> None:
    process = FakeProcess(ends=1)
    got = await _worker(process).run(None, "intervals", None, NOW)  # type: ignore[arg-type]
    assert got == ANSWER and process.asked == ["report", "report"]


async def test_a_second_end_is_a_store_fault_that_says_so() -> None:
    process = FakeProcess(ends=2)
    got = await _worker(process).roll(None, NOW, "b1", 60.0)  # type: ignore[arg-type]
    assert isinstance(got, WorkerFault) and got.kind == "store"
    assert "the report process ended twice" in got.message and "IncompleteReadError" in got.message
    assert process.asked == ["roll", "roll"]


async def test_no_job_is_sent_once_the_writer_closed_its_child() -> None:
    process = FakeProcess(ends=0, closed=True)
    got = await _worker(process).plan(None, [], None, NOW, 8)  # type: ignore[arg-type]
    assert got == WorkerFault("store", "the bridge is stopping") and process.asked == []


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def _under(modules: set[str], *names: str) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_the_child_imports_neither_the_routing_side_nor_the_reports_before_a_job() -> None:
    loaded = _modules_after("import ccbridge.store.writeproc")
    assert (
        _under(
            loaded,
            "aiohttp",
            "jinja2",
            "panoramisk",
            "prometheus_client",
            "ccbridge.app",
            "ccbridge.routing",
            "ccbridge.reports",
            "ccbridge.staffing",
            "multiprocessing",
        )
        == []
    )


def test_the_routing_process_imports_no_process_pool_nor_the_tools_nor_argon2() -> None:
    loaded = _modules_after("import ccbridge.app")
    assert (
        _under(
            loaded,
            "multiprocessing",
            "concurrent.futures.process",
            "alembic",
            "matplotlib",
            "hypothesis",
            "pytest",
            "argon2",  # the password hasher: made on the first login with a password
        )
        == []
    )


@pytest.mark.parametrize(
    "n", [0, 1, JSON_CHUNK - 1, JSON_CHUNK, JSON_CHUNK + 1, 3 * JSON_CHUNK + 7]
)
def test_a_report_is_encoded_in_pieces_byte_for_byte_as_one_json_dumps(n: int) -> None:
    # In pieces: the C encoder holds the GIL a call, and the writer's batches share it.
    rows: list[dict[str, object]] = [
        {"site": "dhaka", "n": i, "x": None, "name": 'Zoë \u2014 "q"', "v": [1.5, True]}
        for i in range(n)
    ]
    for incomplete in (False, True):
        body = {"columns": ["site", "n"], "rows": rows, "incomplete": incomplete}
        assert json_body(("site", "n"), rows, incomplete) == json.dumps(body).encode()
