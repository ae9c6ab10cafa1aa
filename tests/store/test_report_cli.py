"""`ccbridge report` and `ccbridge records` against an SQLite store: a terminal table,
CSV with the API's columns, a PNG chart, erasure; bad arguments exit 2 with a line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from ccbridge.cli import main
from ccbridge.reports.build import INTERVAL_COLUMNS
from tests.store.conftest import Db
from tests.store.report_world import write
from tests.store.test_reports import HOUR

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)


@pytest.fixture
async def config(migrated: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "x")
    await write(migrated, HOUR)
    path = migrated.settings.url.removeprefix("sqlite+aiosqlite:///")
    text = (REPO / "examples" / "lab.yaml").read_text()
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(text + f"store:\n  url: sqlite:///{path}\n")
    return str(cfg)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


async def test_table_csv_and_chart(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    chart = tmp_path / "sl.png"
    args = [
        "report",
        "intervals",
        config,
        "--from",
        "2026-11-27",
        "--to",
        "2026-11-27",
        "--site",
        "dhaka",
        "--chart",
        str(chart),
        "--csv",
        str(tmp_path / "r.csv"),
    ]
    code, out, err = await asyncio.to_thread(run, args, capsys)
    assert code == 0, err
    line = next(
        x for x in out.splitlines() if x.startswith("2026-11-27 10:00") and " orders-en " in x
    )
    # offered 8, answered 4, abandoned 2, short 1, SL 75.0 %, SL with abandons 66.7 %
    assert line.split()[3:10] == ["8", "4", "2", "1", "75.0", "66.7", "15"]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 5000
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert list(rows[0]) == list(INTERVAL_COLUMNS)
    code, out, _ = await asyncio.to_thread(
        run,
        ["report", "agents", config, "--from", "2026-11-27", "--to", "2026-11-27", "--csv", "-"],
        capsys,
    )
    assert code == 0 and out.startswith("site,interval_start,interval_end,agent,")


async def test_bad_arguments_exit_2(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    code, _, err = await asyncio.to_thread(
        run, ["report", "intervals", config, "--from", "2026-11-28", "--to", "2026-11-27"], capsys
    )
    assert code == 2 and "error: --to: 'to' is before 'from'" in err
    code, _, err = await asyncio.to_thread(
        run, ["report", "intervals", config, "--from", "x", "--to", "y", "--site", "mars"], capsys
    )
    assert code == 2 and "error: --" in err


async def test_erase_from_the_command_line(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    code, out, _ = await asyncio.to_thread(
        run, ["records", "erase", config, "--number", "+8801712345678"], capsys
    )
    assert code == 0 and "erased the number from 0 calls" in out
    code, _, err = await asyncio.to_thread(
        run, ["records", "erase", config, "--number", "12"], capsys
    )
    assert code == 2 and "whole phone number" in err


async def test_rollup_from_the_command_line(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`records rollup` rolls the closed days after the retention cutoff (3 days kept
    here: a short run), then has nothing left to roll.

    Three days, not two: a local day is closed only ``rollup_grace`` after its midnight,
    so with two days kept a site whose midnight had just passed (Manila's at 16:00 UTC)
    had no day left to roll and the count came out 2 (a CI rehearsal at 16:30 UTC). With
    three, every site has one closed day after the cutoff at any hour, two outside that
    window."""
    import asyncio

    with Path(config).open("a") as f:  # noqa: ASYNC230 (a few bytes, before any work)
        f.write("records:\n  retention_days: 3\n")
    code, out, err = await asyncio.to_thread(run, ["records", "rollup", config], capsys)
    assert code == 0, err
    assert out.startswith("rolled ") and "site-days into the interval and agent rollups: " in out
    assert int(out.split()[1]) >= 3  # a day at least for each of the lab's 3 sites
    code, out, _ = await asyncio.to_thread(run, ["records", "rollup", config], capsys)
    assert (code, out) == (0, "rolled 0 site-days into the interval and agent rollups\n")
