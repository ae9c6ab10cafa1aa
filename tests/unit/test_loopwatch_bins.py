"""loopwatch's timeline in bins (tests/bench/loopwatch.py, CCB_BENCH_LOOPWATCH_DUMP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.loopwatch import BIN, bins, main, read_timeline


def test_callbacks_fall_in_their_bin_by_owner_and_outside_ones_are_left_out() -> None:
    t0 = 100.0
    rows = [
        (t0 + 0.001, 100.0, "a"),
        (t0 + 0.002, 300.0, "a"),
        (t0 + 0.010, 50.0, "b"),
        (t0 + BIN + 0.001, 900.0, "a"),
        (t0 - 0.001, 7.0, "a"),  # before
        (t0 + 3 * BIN, 7.0, "a"),  # after the last bin
    ]
    out = bins(rows, t0, 3 * BIN)
    assert [b.start for b in out] == [0.0, BIN, 2 * BIN]
    assert [(b.callbacks, b.cpu) for b in out] == [(3, 450.0), (1, 900.0), (0, 0.0)]
    assert out[0].owners == {"a": [2, 400.0], "b": [1, 50.0]}


def test_the_file_round_trips_and_prints_a_line_a_bin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tl.txt"
    path.write_text("10.010000 120.5 _SelectorSocketTransport._read_ready\n10.060000 80.0 task_x\n")
    assert read_timeline(path) == [
        (10.01, 120.5, "_SelectorSocketTransport._read_ready"),
        (10.06, 80.0, "task_x"),
    ]
    assert main([str(path), "--since", "10.0", "--seconds", "0.1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "_SelectorSocketTransport._read_ready" in lines[0]
    assert "1 x  120.5 us" in lines[1] and "1 x   80.0 us" in lines[2]
