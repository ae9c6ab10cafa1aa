"""The slow-callback report: asyncio's debug timing, rewritten into one recognisable line."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from ccbridge import loopdebug
from ccbridge.cli import build_parser
from tests.polling import until


async def test_a_callback_over_the_limit_is_reported_once_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    found = loopdebug.report_slow_callbacks(loop, 20)
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            loop.call_soon(lambda: None)  # fast: not reported
            # Deliberately blocking the loop for 60 ms is the thing under test here.
            loop.call_soon(time.sleep, 0.06)
            await until(lambda: found.count >= 1, 5, "the slow callback's report")
            await asyncio.sleep(0)
    finally:
        loopdebug.stop_reporting(loop, found)
    assert found.count == 1
    (line,) = found.lines
    assert line.startswith(loopdebug.MARK) and "sleep" in line and "(limit 20 ms)" in line
    assert [r.getMessage() for r in caplog.records if loopdebug.MARK in r.getMessage()] == [line]
    assert not loop.get_debug()


def test_the_threshold_comes_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(loopdebug.ENV, raising=False)
    assert loopdebug.env_threshold_ms() is None
    monkeypatch.setenv(loopdebug.ENV, "50")
    assert loopdebug.env_threshold_ms() == 50.0
    for bad in ("0", "-3", "fast"):
        monkeypatch.setenv(loopdebug.ENV, bad)
        with pytest.raises(ValueError, match=loopdebug.ENV):
            loopdebug.env_threshold_ms()
    args = build_parser().parse_args(["run", "x.yaml", "--slow-callback-ms", "50"])
    assert args.slow_callback_ms == 50.0
    for bad in ("0", "nan", "abc"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["run", "x.yaml", "--slow-callback-ms", bad])
