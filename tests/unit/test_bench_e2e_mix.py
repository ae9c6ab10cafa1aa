"""bench_e2e's production mix: one caller, the shares interleaved evenly and exactly."""

from __future__ import annotations

from pathlib import Path

from tests.bench.bench_e2e import EXTENS, IVR_OTHER_SERVICE, _mix_files, production_mix

HELD = EXTENS["production"]
AGI = EXTENS["routed-guard"]


def test_the_mix_has_each_share_and_spreads_it() -> None:
    mix = production_mix(1200, HELD, (0.08, 0.02))
    assert (mix.count(HELD), mix.count(IVR_OTHER_SERVICE), mix.count(AGI)) == (1080, 96, 24)
    # evenly: every 50 calls hold 45 held, 4 IVR and 1 FastAGI, whatever the window
    for start in range(0, 1200, 50):
        window = mix[start : start + 50]
        assert (window.count(IVR_OTHER_SERVICE), window.count(AGI)) == (4, 1), start


def test_no_share_is_all_held_and_the_files_dial_field0(tmp_path: Path) -> None:
    assert production_mix(7, HELD, (0.0, 0.0)) == [HELD] * 7
    scenario, inf = _mix_files(tmp_path, production_mix(3, HELD, (0.0, 0.5)))
    text = scenario.read_text(encoding="utf-8")
    assert "[service]" not in text and "INVITE sip:[field0]@" in text
    assert inf.read_text(encoding="utf-8").splitlines()[0] == "SEQUENTIAL"
    assert inf.read_text(encoding="utf-8").splitlines() == [
        "SEQUENTIAL",
        f"{HELD};",
        f"{AGI};",
        f"{HELD};",
    ]
