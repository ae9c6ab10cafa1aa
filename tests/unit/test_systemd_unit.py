"""The shipped systemd unit: Type=notify with the watchdog the bridge's heartbeat feeds,
checked by systemd's own verifier."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

from ccbridge.sdnotify import PINGS_PER_PERIOD, watchdog_interval

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "ccbridge.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_asks_for_notify_and_a_watchdog_that_kills_and_restarts() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["ExecStart"].split()[1:3] == ["run", "/etc/ccbridge/deploy.yaml"]
    assert service["ExecStart"].split()[0].endswith("/ccbridge")
    assert service["WatchdogSec"] == "1s"
    assert service["WatchdogSignal"] == "SIGKILL"  # a stopped process ignores SIGABRT
    assert service["Restart"] == "always"
    assert unit()["Unit"]["StartLimitIntervalSec"] == "0"


def test_the_bridge_pings_four_times_per_watchdog_period() -> None:
    # systemd sets WATCHDOG_USEC from WatchdogSec=1s: the bridge then pings every 0.25 s.
    assert watchdog_interval({"WATCHDOG_USEC": "1000000"}) == 1 / PINGS_PER_PERIOD


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing (Debian package systemd)"
    ccbridge = shutil.which("ccbridge") or str(REPO / ".venv" / "bin" / "ccbridge")
    # The shipped paths are the admin's; point ExecStart at an executable that exists here.
    text = UNIT.read_text().replace("/opt/ccbridge/.venv/bin/ccbridge", ccbridge)
    copy = tmp_path / "ccbridge.service"
    copy.write_text(text)
    out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout + out.stderr == "", out.stdout + out.stderr
