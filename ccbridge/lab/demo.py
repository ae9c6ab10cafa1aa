"""`make run`: the lab, its SIPp agents and the bridge, a few demo calls, then wait for Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

from ccbridge.lab.sipp import Agent, place_calls, wait_until
from ccbridge.lab.sites import Lab
from ccbridge.logs import mask_number

DEMO_CALLERS = ("+919812345678", "+8801712345678", "+639171234567", "+447700900123")
AGENT_SECONDS = 4 * 3600  # SIPp agents are bounded in time even in a long demo


def start_agents(lab: Lab) -> list[Agent]:
    agents = []
    for site in lab.config.sites:
        for a in site.agents:
            agent = Agent.from_contact(a.contact, max_seconds=AGENT_SECONDS, workdir=lab.log_dir)
            agent.start()
            agents.append(agent)
    return agents


def start_bridge(lab: Lab, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    lab.log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(extra_env or {})}
    with open(lab.log_dir / "bridge.log", "ab") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "ccbridge.cli", "run", lab.config.source],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def http_json(url: str, body: dict[str, object] | None = None, timeout: float = 2.0) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def bridge_ready(base: str) -> bool:
    try:
        out = http_json(f"{base}/readyz")
    except OSError:
        return False
    return isinstance(out, dict) and bool(out.get("ready"))


def run_demo(lab: Lab, calls: int = 6, keep_running: bool = True) -> int:
    config = lab.config
    timings = lab.up()
    print(f"lab: {len(config.sites)} sites up in {timings['total']:.1f}s")
    agents = start_agents(lab)
    bridge = start_bridge(lab)
    http = config.bridge.http_listen
    base = f"http://{http.host}:{http.port}"
    try:
        if not wait_until(lambda: bridge_ready(base), timeout=15):
            print(f"bridge did not become ready; see {lab.log_dir / 'bridge.log'}")
            return 1
        print(f"bridge ready: FastAGI {config.bridge.agi_listen}, API {base}")
        numbers = list(config.numbers)
        for i in range(calls):
            number = numbers[i % len(numbers)]
            caller = DEMO_CALLERS[i % len(DEMO_CALLERS)]
            site = config.site(number.site)
            preview = http_json(
                f"{base}/api/v1/route/preview", {"did": number.did, "caller": caller}
            )
            decision = preview["decision"] if isinstance(preview, dict) else {}
            result = place_calls(
                str(site.sip),
                number.did,
                caller=caller,
                calls=1,
                duration_ms=1500,
                local_port=6200 + i,
                max_seconds=20,
            )
            print(
                f"call {i + 1}: {mask_number(caller)} -> {number.did} at {site.name}: "
                f"{'answered' if result.ok else 'FAILED'}; routed to {decision.get('site')} "
                f"queue {decision.get('queue')} ({', '.join(decision.get('reasons', []))})"
            )
        if not keep_running:
            return 0
        print("lab and bridge running; Ctrl-C (or `make down` in another shell) stops them")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.is_set() and bridge.poll() is None:
                stop.wait(5)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        bridge.terminate()
        try:
            bridge.wait(10)
        except subprocess.TimeoutExpired:
            bridge.kill()
        for a in agents:
            a.stop()
        lab.down()
        print("stopped: bridge, agents and lab")
