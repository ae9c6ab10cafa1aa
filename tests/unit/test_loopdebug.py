"""The slow-callback report: asyncio's debug timing, rewritten into one recognisable line."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccbridge import loopdebug
from ccbridge.cli import build_parser
from tests.polling import until
from tests.unit.test_bridge_lifecycle import REPO, free_port


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
    # Exactly the sleeping callback (on a busy machine another may be slow too).
    (line,) = [x for x in found.lines if "sleep" in x]
    assert line.startswith(loopdebug.MARK) and "(limit 20 ms" in line
    assert found.count == len(found.lines)
    assert [r.getMessage() for r in caplog.records if loopdebug.MARK in r.getMessage()] == (
        found.lines
    )
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


async def test_ccbridge_run_logs_slow_callbacks_and_still_stops_cleanly(tmp_path: Path) -> None:
    # A 0.01 ms limit: every callback is "slow", so the bridge's own start-up reports some.
    cfg = tmp_path / "lab.yaml"
    text = (REPO / "examples" / "lab.yaml").read_text()
    for old in ("127.0.0.1:8080", "127.0.0.1:4573"):
        text = text.replace(old, f"127.0.0.1:{free_port()}")
    cfg.write_text(text.replace("  port: 5038\n", f"  port: {free_port()}\n"))
    err = tmp_path / "stderr"
    proc = _run_bridge(cfg, err, "--slow-callback-ms", "0.01")
    try:
        await until(lambda: loopdebug.MARK in err.read_text(), 30, "a slow-callback line")
        await until(lambda: "bridge started" in err.read_text(), 30, "the bridge started")
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(proc.wait, 30)
    assert returncode == 0, err.read_text()[-2000:]
    line = next(x for x in err.read_text().splitlines() if loopdebug.MARK in x)
    assert "logger=asyncio" in line and "(limit 0 ms)" in line


def _run_bridge(cfg: Path, err: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CCBRIDGE_AMI_SECRET": "x", "CCBRIDGE_API_TOKEN": "t"}
    with open(err, "wb") as out:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "ccbridge.cli", "run", str(cfg), *args],
            stdout=out,
            stderr=out,
            env=env,
        )


async def test_a_collection_inside_a_slow_callback_is_named() -> None:
    loop = asyncio.get_running_loop()
    found = loopdebug.report_slow_callbacks(loop, 1)
    garbage = [[i] for i in range(300_000)]  # tracked containers: a full collection walks them

    def collect() -> None:
        gc.collect()
        time.sleep(0.002)  # over the 1 ms limit even if the collection alone is not

    try:
        loop.call_soon(collect)
        await until(lambda: found.count >= 1, 5, "the slow callback's report")
    finally:
        loopdebug.stop_reporting(loop, found)
    del garbage
    assert any("collect" in line and "ms during it)" in line for line in found.lines), found.lines
    assert found.on_gc not in gc.callbacks
