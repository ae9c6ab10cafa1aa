"""Record every AMI event of one real queued call on the lab, with CEL over AMI switched on.

The shape of the records mix in bench_ami_state: what Asterisk 22 really emits for one
call through a queue when CEL (every event type) and timestamps are on. Takes the lab
lock, starts the lab with bangalore's cel.conf and modules.conf changed in the lab's own
generated config folder only (the next ``lab up`` writes the shipped files again, where
CEL stays off), starts the agents' SIPp phones and a bridge, places one call, records
every event bangalore sends on an unfiltered AMI session from just before the call until
its LINKEDID_END, masks phone numbers and writes ``fixtures/ami_cel_call.json``.

    export CCBRIDGE_LAB_DIR=/work/main/.lab   # or wherever the lab root is
    .venv/bin/python -m tests.bench.record_cel_call
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import re
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from ccbridge.ami.client import SiteLink
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.config.model import Site
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sipp import place_calls, start_member_agents
from ccbridge.lab.sites import REPO_ROOT, Lab
from tests.polling import until

FIXTURE = Path(__file__).parent / "fixtures" / "ami_cel_call.json"
LOCK_FILE = Path("/tmp/ccbridge-lab.lock")
SITE = "bangalore"
ORDERS_IN = "+918000000001"  # received at bangalore, queued there in the morning
CALLER = "+447700900123"
WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # 10:30 in Bangalore

CEL_CONF = """; cel.conf written by tests/bench/record_cel_call.py for one recording
[general]
enable=yes
events=ALL
apps=dial,queue,agi

[manager]
enabled=yes
"""
# Phone numbers: +CC then digits anywhere (E.164), and bare digits in the number fields.
# Channel sequence numbers (PJSIP/x-00000001), uniqueids and epoch times stay as they are.
_E164 = re.compile(r"\+(\d{2})(\d{5,13})(?!\d)")
_NUMBER_KEY = re.compile(r"(CallerID|ConnectedLine)(Num|num|ani|dnid|rdnis)$|^Exten(sion)?$")


class CelLab(Lab):
    """The lab with CEL over AMI on one site, in its generated config folder only."""

    def install_configs(self, site: Site) -> None:
        super().install_configs(site)
        if site.name != SITE:
            return
        etc = self.dirs(site).host("etc")
        (etc / "cel.conf").write_text(CEL_CONF, encoding="utf-8")
        modules = (etc / "modules.conf").read_text(encoding="utf-8")
        (etc / "modules.conf").write_text(modules + "load => cel_manager.so\n", encoding="utf-8")
        manager = (etc / "manager.conf").read_text(encoding="utf-8")
        if "timestampevents=yes" not in manager:
            raise SystemExit("manager.conf no longer sets timestampevents=yes: add it here")


def mask(key: str, value: str) -> str:
    """Phone numbers keep their first two digits (country) and lose the rest."""
    value = _E164.sub(lambda m: "+" + m.group(1) + "X" * len(m.group(2)), value)
    if _NUMBER_KEY.search(key) and value.isdigit() and len(value) >= 7:
        value = value[:2] + "X" * (len(value) - 2)
    return value


async def record() -> list[dict[str, str]]:
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    site = next(s for s in config.sites if s.name == SITE)
    # The caller (main) holds the lab lock.
    lab = CelLab(config)
    lab.down()
    lab.up()
    phones = start_member_agents(config, 300, lab.log_dir)
    bridge = Bridge(config, Clock(WEDNESDAY_MORNING))
    seen: list[tuple[float, Mapping[str, str]]] = []
    link = SiteLink(SITE, site.ami, lambda _, ev: seen.append((time.monotonic(), ev)))
    try:
        await bridge.start()
        await until(lambda: bridge.state.synced, 15, "the bridge to sync")
        await link.start()
        await until(lambda: link.connected, 10, "the recording link")
        await asyncio.sleep(1.0)  # let login-time events pass
        mark = len(seen)
        result = await asyncio.to_thread(
            place_calls,
            "127.0.1.1:5060",
            ORDERS_IN,
            caller=CALLER,
            calls=1,
            duration_ms=3000,
            max_seconds=40,
            local_port=6390,
        )
        if not result.ok:
            raise SystemExit(f"the call failed:\n{result.output[-2000:]}")

        def ended() -> bool:
            return any(
                e.get("Event") == "CEL" and e.get("EventName") == "LINKEDID_END"
                for _, e in seen[mark:]
            )

        await until(ended, 20, "the call's LINKEDID_END")
        await asyncio.sleep(1.0)  # the member status events after the hangup
    finally:
        await link.stop()
        await bridge.stop()
        for phone in phones.values():
            phone.stop()
        lab.down()
    return [{k: mask(k, v) for k, v in ev.items()} for _, ev in seen[mark:]]


def main() -> int:
    with open(LOCK_FILE, "w") as lock:
        print("waiting for the lab lock...", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
        events = asyncio.run(record())
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(events, indent=1) + "\n", encoding="utf-8")
    names: dict[str, int] = {}
    for ev in events:
        key = ev.get("Event", "?")
        if key == "CEL":
            key += ":" + ev.get("EventName", "?")
        names[key] = names.get(key, 0) + 1
    print(f"{len(events)} events written to {FIXTURE}")
    for name, n in sorted(names.items()):
        print(f"  {n:3d} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
