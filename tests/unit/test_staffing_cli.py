"""`ccbridge staffing` end to end (history CSV in, table, CSV and PNG out), the what-if
flags, and garbage in every input."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from ccbridge.cli import main
from ccbridge.staffing.csvhistory import HistoryFileError, read_history
from ccbridge.staffing.history import QueueKey
from ccbridge.staffing.report import CSV_COLUMNS
from ccbridge.staffing.slots import Slot

LAB = str(Path(__file__).resolve().parents[2] / "examples" / "lab.yaml")
FIRST = date(2026, 10, 12)  # a Monday; 8 weeks of history, then the plan for 2026-12-07
PLAN_DAY = "2026-12-07"


def write_history(
    path: Path, calls: int = 100, keys: tuple[str, ...] = ("bangalore,orders,en",)
) -> Path:
    """8 weeks with ``calls`` in every half hour of every key."""
    with path.open("w", newline="") as fh:
        fh.write("site,service,language,interval_start,calls,complete\n")
        for d in range(56):
            day = FIRST + timedelta(days=d)
            for i in range(48):
                t = datetime.combine(day, datetime.min.time()) + timedelta(minutes=30 * i)
                for k in keys:
                    fh.write(f"{k},{t:%Y-%m-%dT%H:%M},{calls},1\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["staffing", LAB, *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_table_csv_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hist = write_history(tmp_path / "h.csv")
    out_csv, png = tmp_path / "plan.csv", tmp_path / "plan.png"
    rc, out, err = run(
        capsys,
        "--history",
        str(hist),
        "--from",
        PLAN_DAY,
        "--to",
        PLAN_DAY,
        "--csv",
        str(out_csv),
        "--chart",
        str(png),
    )
    assert rc == 0, err
    # 100 calls every half hour: the published vector at every open slot
    line = next(s for s in out.splitlines() if "orders-en" in s and "2026-12-07T10:00" in s)
    assert line.split()[3:9] == ["04:30", "100.0", "180", "14", "20", "2"]
    assert line.endswith("understaffed")
    assert "bangalore/orders-en: 4800 calls, peak 14 agents" in out
    # the other queues have no history: said, not planned as zero
    assert "warning: no forecast: dhaka/orders-bn: no arrivals history before 2026-12-07" in err
    rows = csv_rows(out_csv)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 48
    ten = next(r for r in rows if r["interval_start_local"] == "2026-12-07T10:00")
    assert (ten["required_agents"], ten["rostered_agents"], ten["staffed_agents"]) == (
        "14",
        "20",
        "2",
    )
    assert ten["interval_start_utc"] == "2026-12-07T04:30Z"
    assert ten["service_level_required"] == "0.8884"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_what_if_volume_aht_and_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hist = write_history(tmp_path / "h.csv")
    base = ["--history", str(hist), "--from", PLAN_DAY, "--to", PLAN_DAY]

    def required_at_ten(*extra: str) -> tuple[str, str]:
        out_csv = tmp_path / "p.csv"
        rc, _, err = run(capsys, *base, "--csv", str(out_csv), *extra)
        assert rc == 0, err
        row = next(r for r in csv_rows(out_csv) if r["interval_start_local"].endswith("T10:00"))
        return row["required_agents"], row["forecast_calls"]

    assert required_at_ten() == ("14", "100.00")
    # +20 %: A = 12 Erlangs; 15 agents give 77.1 %, 16 give 86.9 % (test_staffing_plan)
    assert required_at_ten("--volume", "+20%") == ("16", "120.00")
    assert required_at_ten("--volume=-50%") == (
        "8",
        "50.00",
    )  # '=': argparse and a '-'   # A = 5, as in the DST test
    assert required_at_ten("--aht", "216") == ("16", "100.00")
    assert required_at_ten("--target", "90/20") == ("15", "100.00")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--volume", "20"], "--volume: '20' is not a change like +20% or -10%"),
        (["--volume", "-100%"], "would leave no calls at all"),
        (["--target", "80"], "--target: '80' is not PERCENT/SECONDS like 80/20"),
        (["--target", "0/20"], "the percentage must be in (0, 100]"),
        (["--target", "120/20"], "the percentage must be in (0, 100]"),
        (["--aht", "0"], "aht_s must be greater than zero"),
        (["--aht", "nan"], "--aht: 'nan' is not a finite number"),
        (["--aht", "fast"], "--aht: 'fast' is not a number"),
        (["--shrinkage", "100"], "shrinkage must be in [0, 1)"),
        (["--max-occupancy", "0"], "max_occupancy must be in (0, 1]"),
        (["--from", "2026-13-01"], "expected YYYY-MM-DD"),
        (["--to", "2026-12-01"], "--to 2026-12-01 is before --from 2026-12-07"),
        (["--to", "2027-12-07"], "span 366 days; at most 62"),
        (["--weeks", "0"], "--weeks must be at least 1"),
    ],
)
def test_bad_flags_are_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    hist = write_history(tmp_path / "h.csv", keys=("bangalore,orders,en",))
    args = {"--history": str(hist), "--from": PLAN_DAY, "--to": PLAN_DAY}
    for k, v in zip(flags[::2], flags[1::2], strict=True):
        args[k] = v
    rc, out, err = run(capsys, *[f"{k}={v}" for k, v in args.items()])
    assert rc == 2
    assert message in err and err.startswith("error: ") and err.count("\n") == 1
    assert out == ""


HANDLED = "site,service,language,interval_start,calls,handled,handle_seconds\n"
GARBAGE = [
    ("", "empty file (expected a header"),
    ("site,service,language,calls\n", ":1: missing column(s) interval_start"),
    ("site,service,language,interval_start,calls,colour\n", ":1: unknown column(s) colour"),
    (
        "site,service,language,interval_start,calls\nb,o,en,2026-10-12T09:00\n",
        ":2: 4 fields where the header has 5",
    ),
    (
        "site,service,language,interval_start,calls\nb,o,en,yesterday,3\n",
        ":2: interval_start 'yesterday' is not a local date",
    ),
    (
        "site,service,language,interval_start,calls\nb,o,en,2026-10-12T09:10,3\n",
        "is not the start of a 30-minute slot",
    ),
    (
        "site,service,language,interval_start,calls\nb,o,en,2026-10-12T09:00+05:30,3\n",
        "has an offset",
    ),
    (
        "site,service,language,interval_start,calls\nb,o,en,2026-10-12T09:00,-3\n",
        ":2: calls must not be negative",
    ),
    (
        "site,service,language,interval_start,calls\nb,o,en,2026-10-12T09:00,2.5\n",
        ":2: calls '2.5' is not a whole number",
    ),
    ("site,service,language,interval_start,calls\n,o,en,2026-10-12T09:00,2\n", ":2: empty site"),
    (f"{HANDLED}b,o,en,2026-10-12T09:00,2,x,300\n", ":2: handled 'x' is not a whole number"),
    (f"{HANDLED}b,o,en,2026-10-12T09:00,2,2,\n", ":2: handle_seconds '' is not a number"),
    (f"{HANDLED}b,o,en,2026-10-12T09:00,2,2,nan\n", "must be finite and not negative"),
    (f"{HANDLED}b,o,en,2026-10-12T09:00,2,-1,30\n", "must be finite and not negative"),
    (f"{HANDLED}b,o,en,2026-10-12T09:00,2,0,30\n", "handle_seconds 30 for no handled call"),
    (
        "site,service,language,interval_start,calls,complete\nb,o,en,2026-10-12T09:00,2,maybe\n",
        "complete 'maybe' is not",
    ),
    (
        'site,service,language,interval_start,calls\n"b,o,en,2026-10-12T09:00,2\n',
        ":2: 1 fields where the header has 5",
    ),
]


@pytest.mark.parametrize(("text", "message"), GARBAGE)
def test_garbage_history_files(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "h.csv"
    p.write_text(text)
    with pytest.raises(HistoryFileError, match=None) as info:
        read_history(p)
    assert message in str(info.value) and str(info.value).startswith(str(p))


def test_garbage_history_through_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "h.csv"
    p.write_bytes(b"\xff\xfe\x00garbage")
    rc, _, err = run(capsys, "--history", str(p), "--from", PLAN_DAY, "--to", PLAN_DAY)
    assert (rc, err) == (2, f"error: {p}: not a UTF-8 text file\n")
    rc, _, err = run(
        capsys, "--history", str(tmp_path / "nope.csv"), "--from", PLAN_DAY, "--to", PLAN_DAY
    )
    assert rc == 2 and "cannot read the history: No such file or directory" in err


def test_empty_history_and_unknown_queues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "h.csv"
    p.write_text("site,service,language,interval_start,calls\n")
    rc, out, err = run(capsys, "--history", str(p), "--from", PLAN_DAY, "--to", PLAN_DAY)
    assert rc == 2 and out == ""
    assert err.endswith(
        "no queue of the config has history before 2026-12-07: nothing to plan from\n"
    )
    hist = write_history(tmp_path / "u.csv", keys=("bangalore,orders,en", "atlantis,orders,en"))
    rc, _, err = run(capsys, "--history", str(hist), "--from", PLAN_DAY, "--to", PLAN_DAY)
    assert rc == 0
    assert (
        "warning: " + str(hist) + ": atlantis/orders-en is not a queue of the config; ignored"
        in err
    )


def test_csv_reader_reads_what_it_is_given(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text(
        "calls,site,service,language,interval_start,complete,handled,handle_seconds\n"
        "3,dhaka,orders,bn,2026-10-12T22:00,1,3,540\n"
        "\n"
        "2,dhaka,orders,bn,2026-10-12T22:30,0,,\n"
        "4,dhaka,orders,bn,2026-10-13T22:00,yes,0,0\n"
    )
    h = read_history(p)
    key = QueueKey("dhaka", "orders", "bn")
    assert h.span(key) == (date(2026, 10, 12), date(2026, 10, 13))
    got = h.arrivals(key, date(2026, 10, 12), date(2026, 10, 13))
    obs = {o.slot: (o.count, o.complete, o.handled, o.handle_s) for o in got}
    assert obs == {
        Slot(date(2026, 10, 12), 44): (3, True, 3, 540.0),
        Slot(date(2026, 10, 12), 45): (2, False, 0, 0.0),
        Slot(date(2026, 10, 13), 44): (4, True, 0, 0.0),
    }


def test_unwritable_outputs_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hist = write_history(tmp_path / "h.csv")
    base = ["--history", str(hist), "--from", PLAN_DAY, "--to", PLAN_DAY]
    nowhere = tmp_path / "no" / "such" / "dir"
    rc, _, err = run(capsys, *base, "--csv", str(nowhere / "p.csv"))
    last = err.splitlines()[-1]
    assert (rc, last) == (1, f"error: cannot write {nowhere / 'p.csv'}: No such file or directory")
    rc, _, err = run(capsys, *base, "--chart", str(nowhere / "p.png"))
    last = err.splitlines()[-1]
    assert (rc, last) == (1, f"error: cannot write {nowhere / 'p.png'}: No such file or directory")


def test_a_bad_config_is_the_loaders_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "deploy.yaml"
    bad.write_text("sites: [\n")
    hist = write_history(tmp_path / "h.csv")
    rc = main(["staffing", str(bad), "--history", str(hist), "--from", PLAN_DAY, "--to", PLAN_DAY])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {bad}:") and "YAML" in err


def test_the_history_aht_drives_the_plan_and_aht_overrides_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 100 calls a half hour, all handled at 216 s: A = 12 -> 16 agents; --aht 180 -> 14
    p = tmp_path / "h.csv"
    with p.open("w") as fh:
        fh.write("site,service,language,interval_start,calls,handled,handle_seconds\n")
        for d in range(56):
            for i in range(48):
                t = datetime.combine(FIRST + timedelta(days=d), datetime.min.time())
                t += timedelta(minutes=30 * i)
                fh.write(f"bangalore,orders,en,{t:%Y-%m-%dT%H:%M},100,100,21600\n")
    out_csv = tmp_path / "p.csv"
    base = ["--history", str(p), "--from", PLAN_DAY, "--to", PLAN_DAY, "--csv", str(out_csv)]
    for extra, aht, agents in (([], "216.0", "16"), (["--aht", "180"], "180.0", "14")):
        rc, _, err = run(capsys, *base, *extra)
        assert rc == 0, err
        row = next(r for r in csv_rows(out_csv) if r["interval_start_local"].endswith("T10:00"))
        assert (row["aht_seconds"], row["required_agents"]) == (aht, agents)
