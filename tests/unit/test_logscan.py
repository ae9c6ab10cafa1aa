"""The log scanner the integration run ends with finds what it must and nothing else."""

from __future__ import annotations

from pathlib import Path

from ccbridge.config import load_config
from ccbridge.logs import mask_number
from tests.logscan import caller_needles, scan

REPO = Path(__file__).resolve().parents[2]


def test_the_scanner_finds_numbers_and_secrets_and_spares_dids_and_masks() -> None:
    config = load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False)
    caller = "+639178273645"
    log = "\n".join(
        [
            f"ts=1 level=info msg=routed did=+918000000001 caller={mask_number(caller)}",
            "ts=2 level=info msg=routed did=+15550001234 caller=+63*******45",  # a test's DID
            f"ts=3 level=info msg=oops caller={caller}",
            'ts=4 level=debug msg="Action: Login Secret: hunter2-hunter2"',
            "ts=5 level=info msg=uniqueid 1764349123.45 pid 123456789",
            f"ts=6 level=info msg=national {caller[3:]}",
        ]
    )
    leaks = scan("bridge.log", log, config, {"an AMI secret": "hunter2-hunter2"})
    found = [str(leak) for leak in leaks]
    assert found == [
        f"bridge.log:3: a full phone number {mask_number(caller)}",
        "bridge.log:4: an AMI secret (15 characters)",
    ]
    assert caller not in " ".join(found) and "hunter2" not in " ".join(found)
    leaks = scan("bridge.log", log, config, caller_needles([caller]))
    assert {leak.where for leak in leaks} == {"bridge.log:3", "bridge.log:6"}
