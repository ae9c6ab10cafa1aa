"""The holiday calendars load only the configured countries' modules of `holidays` (the
package's own ``__init__`` imports all ~250: 8 MB of the bridge's RSS), and the config
check still refuses a country or subdivision without a calendar."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccbridge.config.loader import parse_config
from ccbridge.config.yamlsrc import ConfigError
from ccbridge.routing import holidaycal

REPO = Path(__file__).resolve().parents[2]
COUNTRIES = (("IN", None), ("BD", None), ("PH", None), ("GB", "SCT"), ("US", "CA"))

# Runs in a fresh interpreter: what this test process imported before says nothing.
LEAN = """
import json, sys
from datetime import date
from ccbridge.routing import holidaycal
out = {}
for country, subdiv in json.loads(sys.argv[1]):
    cal = holidaycal.calendar(country, subdiv)
    _ = date(2026, 1, 1) in cal
    out[f"{country}/{subdiv}"] = sorted((str(d), str(n)) for d, n in cal.items())
loaded = sorted(m for m in sys.modules if m.startswith("holidays.countries."))
print(json.dumps({"calendars": out, "loaded": loaded}))
"""


def _run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(COUNTRIES)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_only_the_asked_countries_load_and_give_their_holidays() -> None:
    lean = _run(LEAN)
    calendars = lean["calendars"]
    assert isinstance(calendars, dict)
    assert ["2026-01-26", "Republic Day"] in calendars["IN/None"]
    bd = dict(calendars["BD/None"])
    assert bd["2026-02-21"] == "Martyrs' Day and International Mother Language Day"
    assert ["2026-06-12", "Independence Day"] in calendars["PH/None"]
    assert ["2026-11-30", "Saint Andrew's Day"] in calendars["GB/SCT"]
    assert ["2026-03-31", "Cesar Chavez Day"] in calendars["US/CA"]
    loaded = lean["loaded"]
    # india, bangladesh, philippines, united_kingdom, united_states: nothing else
    assert isinstance(loaded, list) and len(loaded) == len(COUNTRIES), loaded


def test_supported_countries_and_subdivisions() -> None:
    assert holidaycal.supported("IN") and holidaycal.supported("UK")  # an alias too
    assert not holidaycal.supported("XX") and not holidaycal.supported("")
    assert "SCT" in holidaycal.subdivisions("GB") and "CA" in holidaycal.subdivisions("US")


@pytest.mark.parametrize(
    ("holiday", "message"),
    [
        ("{country: XX}", "no national holiday calendar for 'XX'"),
        ("{country: GB, subdivision: ZZZ}", "'ZZZ' is not a subdivision of GB"),
    ],
)
def test_the_config_refuses_an_unknown_calendar(holiday: str, message: str) -> None:
    text = (REPO / "examples" / "lab.yaml").read_text()
    site = "  bangalore:\n"
    assert site in text
    text = text.replace(site, f"{site}    holidays: {holiday}\n", 1)
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "lab.yaml", REPO / "examples", resolve_secrets=False)
