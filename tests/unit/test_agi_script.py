"""Script handlers (run in the connection's callbacks) over real sockets, on both loops."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ccbridge import eventloop, loopdebug
from ccbridge.agi.codec import AgiCommandError, AgiHangup, AgiRequest
from ccbridge.agi.server import FastAgiServer, Script, SessionOutcome, script
from ccbridge.config.model import EventLoop
from tests.unit.test_agi_server import LOGGER, asterisk, header, running

LOOPS = [EventLoop.ASYNCIO, EventLoop.UVLOOP]


def on(loop: EventLoop, test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    eventloop.run(test(), loop)


def two_vars(request: AgiRequest) -> Script:
    reply = yield 'SET VARIABLE CCB_ROUTE "queue-sales"'
    if not reply.ok:
        raise AgiCommandError("SET VARIABLE CCB_ROUTE", reply)
    yield f'SET VARIABLE CCB_SITE "{request.query.get("site", "in")}"'


@pytest.mark.parametrize("loop", LOOPS)
def test_a_script_session_runs_without_a_task(loop: EventLoop) -> None:
    async def test() -> None:
        async with running({"route": script(two_vars)}) as (server, ends):
            async with asterisk(server.port) as ast:
                await ast.send(header("route?site=bd"))
                assert await ast.line() == 'SET VARIABLE CCB_ROUTE "queue-sales"'
                assert not server.tasks  # the point: no task a session
                await ast.send(b"200 result=1\n")
                assert await ast.line() == 'SET VARIABLE CCB_SITE "bd"'
                await ast.send(b"200 result=1\n")
                assert await ast.rest() == b""
            assert await ends.wait(1) == [("route", SessionOutcome.OK)]
            assert (server.stats.sessions_total, server.stats.sessions_active) == (1, 0)

    on(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_header_and_reply_in_one_segment_and_split_bytes(loop: EventLoop) -> None:
    """Asterisk's bytes arrive however TCP cuts them: a byte at a time, or a reply glued
    to the header."""

    def one(request: AgiRequest) -> Script:
        yield "NOOP"

    async def test() -> None:
        async with running({"route": script(one)}) as (server, ends):
            async with asterisk(server.port) as ast:
                for byte in header():
                    await ast.send(bytes([byte]))
                assert await ast.line() == "NOOP"
                await ast.send(b"200 result=0\n")
                assert await ast.rest() == b""
            async with asterisk(server.port) as ast:
                # The reply before the command was even read: kept as the header's tail.
                await ast.send(header() + b"200 result=0\n")
                assert await ast.line() == "NOOP"
                assert await ast.rest() == b""
            assert await ends.wait(2) == [("route", SessionOutcome.OK)] * 2

    on(loop, test)


@pytest.mark.parametrize(
    ("answer", "outcome", "rest"),
    [
        (b"HANGUP\n", SessionOutcome.HANGUP, b""),
        (b"511 Command Not Permitted on a dead channel\n", SessionOutcome.HANGUP, b""),
        (b"this is not AGI\n", SessionOutcome.PROTOCOL_ERROR, b"FAILURE\n"),
        (b"x" * 5000 + b"\n", SessionOutcome.PROTOCOL_ERROR, b"FAILURE\n"),
        (b"510 Invalid or unknown command\n", SessionOutcome.HANDLER_ERROR, b"FAILURE\n"),
    ],
)
async def test_bad_or_final_replies_end_the_script(
    answer: bytes, outcome: SessionOutcome, rest: bytes
) -> None:
    async with running({"route": script(two_vars)}) as (server, ends):
        async with asterisk(server.port) as ast:
            await ast.send(header())
            assert await ast.line() == 'SET VARIABLE CCB_ROUTE "queue-sales"'
            await ast.send(answer)
            assert await ast.rest() == rest
        assert await ends.wait(1) == [("route", outcome)]
        assert server.stats.sessions_active == 0


async def test_asterisk_closing_mid_script_is_a_hangup() -> None:
    async with running({"route": script(two_vars)}) as (server, ends):
        async with asterisk(server.port) as ast:
            await ast.send(header())
            assert await ast.line() == 'SET VARIABLE CCB_ROUTE "queue-sales"'
        assert await ends.wait(1) == [("route", SessionOutcome.HANGUP)]


async def test_a_script_that_swallows_a_hangup_cannot_send_more() -> None:
    raised: list[str] = []

    def stubborn(request: AgiRequest) -> Script:
        try:
            yield "NOOP first"
        except AgiHangup:
            raised.append("first")
        try:
            yield "NOOP second"
        except AgiHangup:
            raised.append("second")

    async with running({"route": script(stubborn)}) as (server, ends):
        async with asterisk(server.port) as ast:
            await ast.send(header())
            assert await ast.line() == "NOOP first"
            await ast.send(b"HANGUP\n")
            assert await ast.rest() == b""  # no second command reached the wire
        assert await ends.wait(1) == [("route", SessionOutcome.HANGUP)]
    assert raised == ["first", "second"]


async def test_script_errors_answer_failure_with_a_masked_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    def broken_at_start(request: AgiRequest) -> Script:
        raise KeyError("no such queue")
        yield "never"

    def two_lines(request: AgiRequest) -> Script:
        yield "VERBOSE x\nHANGUP"

    handlers = {"start": script(broken_at_start), "inject": script(two_lines)}
    async with running(handlers) as (server, ends):
        for path in ("start", "inject"):
            async with asterisk(server.port) as ast:
                await ast.send(header(path))
                assert await ast.rest() == b"FAILURE\n"
        assert sorted(await ends.wait(2)) == [
            ("inject", SessionOutcome.HANDLER_ERROR),
            ("start", SessionOutcome.HANDLER_ERROR),
        ]
    failed = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert len(failed) == 2
    assert all("91********10" in r.getMessage() and r.exc_info for r in failed)
    assert "single line" in str(failed[1].exc_info[1] if failed[1].exc_info else "")


async def test_a_script_waiting_past_the_session_timeout_is_cut_off() -> None:
    cleaned: list[bool] = []

    def waits(request: AgiRequest) -> Script:
        try:
            yield "NOOP"
        finally:
            cleaned.append(True)

    async with running({"route": script(waits)}, session_timeout=0.3) as (server, ends):
        async with asterisk(server.port) as ast:
            started = time.monotonic()
            await ast.send(header())
            assert await ast.line() == "NOOP"
            assert await ast.rest() == b"FAILURE\n"  # Asterisk never answered
            assert 0.25 <= time.monotonic() - started < 1.0
        assert await ends.wait(1) == [("route", SessionOutcome.TIMEOUT)]
    assert cleaned == [True]


async def test_stop_ends_a_waiting_script_with_failure() -> None:
    ends_seen: list[SessionOutcome] = []
    server = FastAgiServer(
        {"route": script(two_vars)},
        "127.0.0.1",
        0,
        session_timeout=30,
        on_session_end=lambda route, outcome, took: ends_seen.append(outcome),
    )
    async with server, asterisk(server.port) as ast:
        await ast.send(header())
        assert await ast.line() == 'SET VARIABLE CCB_ROUTE "queue-sales"'
        t0 = time.monotonic()
        await server.stop(grace=0.2)
        assert time.monotonic() - t0 < 1.0
        assert await ast.rest() == b"FAILURE\n"
    assert ends_seen == [SessionOutcome.CANCELLED]


@pytest.mark.parametrize("loop", LOOPS)
def test_the_slow_callback_gate_sees_a_slow_script(
    loop: EventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    """uvloop does not time ``data_received``; the server does, so work done in a script
    (the route decision) is still held to the 50 ms gate on either loop."""
    caplog.set_level(logging.WARNING, logger="asyncio")

    def slow(request: AgiRequest) -> Script:
        time.sleep(0.08)  # what a decision that blocks the loop would do
        yield "NOOP"

    async def test() -> None:
        found = loopdebug.report_slow_callbacks(asyncio.get_running_loop(), 50)
        try:
            async with running({"route": script(slow)}) as (server, ends):
                async with asterisk(server.port) as ast:
                    await ast.send(header())
                    assert await ast.line() == "NOOP"
                    await ast.send(b"200 result=0\n")
                    assert await ast.rest() == b""
                await ends.wait(1)
        finally:
            loopdebug.stop_reporting(asyncio.get_running_loop(), found)
        assert found.count >= 1, found.lines
        assert all(loopdebug.MARK in line for line in found.lines)

    on(loop, test)


@pytest.mark.parametrize(("header_s", "session_s"), [(0.2, 0.5), (0.5, 0.1)])
async def test_one_timer_keeps_both_deadlines(header_s: float, session_s: float) -> None:
    """The header's deadline and the script's share one timer: each still holds, whichever
    is the shorter."""

    def waits(request: AgiRequest) -> Script:
        yield "NOOP"

    timeouts = {"header_timeout": header_s, "session_timeout": session_s}
    async with running({"route": script(waits)}, **timeouts) as (server, ends):
        async with asterisk(server.port) as ast:
            started = time.monotonic()
            await ast.send(header()[:50])
            assert await ast.rest() == b""
            assert header_s - 0.05 <= time.monotonic() - started < header_s + 0.4
        async with asterisk(server.port) as ast:
            await ast.send(header())
            assert await ast.line() == "NOOP"
            started = time.monotonic()
            assert await ast.rest() == b"FAILURE\n"
            assert session_s - 0.05 <= time.monotonic() - started < session_s + 0.4
        assert await ends.wait(2) == [
            ("", SessionOutcome.HEADER_TIMEOUT),
            ("route", SessionOutcome.TIMEOUT),
        ]
