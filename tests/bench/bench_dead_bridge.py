"""What a dead bridge costs a call before another bridge answers (issue 15), per way the
sites reach the bridges, on the lab: a list of FastAGI addresses in the dialplan
(`bridge.cluster.servers`, the guard off) and `hagi://` with DNS SRV (`bridge.cluster.srv`,
a throwaway dnsmasq, ccbridge/lab/dns.py), each with the first bridge

- refused: nothing listens on its port (a killed bridge on a live host), and
- silent: a host that drops the connection attempt (a listener whose accept queue is
  full, so the kernel drops the SYNs: what a host that is down or cut off looks like),

against the floor: the live bridge listed alone, in the same run. bangalore's orders-hi
answers at once, so INVITE -> 200 (SIPp, per call) is the route step's wait. The guard's
own figures (a bridge killed or SIGSTOPped mid-load) come from
tests/integration/test_several_bridges.py.

    CCBRIDGE_LAB_DIR=... .venv/bin/python -m tests.bench.bench_dead_bridge   # ~2 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ccbridge.config import Config, load_config
from ccbridge.lab.demo import BridgeProcess
from ccbridge.lab.dns import SrvTarget, root_resolver, srv_server
from ccbridge.lab.lock import lab_lock
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sites import Lab
from ccbridge.lab.tls import enable_lab_tls
from tests.integration.conftest import LAB_CONFIG
from tests.integration.test_hung_bridge import ORDERS_IN, percentile, place_load
from tests.integration.test_several_bridges import WEDNESDAY_MORNING, bangalore_dialplan

LIVE = "127.0.0.1:4573"  # the lab's bridge
DEAD = "127.0.0.1:4575"  # refused: nothing listens
SILENT = "127.0.0.1:4576"  # silent: a full accept queue drops the SYNs
SRV_NAME = "bridges.ccb.test"


@contextlib.contextmanager
def silent_host(address: str) -> Iterator[None]:
    """A port whose SYNs the kernel drops: a listener with backlog 0 that never accepts,
    its accept queue filled by two connections (Linux takes backlog + 1)."""
    host, port = address.rsplit(":", 1)
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, int(port)))
    lsock.listen(0)
    fillers = []
    try:
        for _ in range(2):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect((host, int(port)))
            fillers.append(c)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect((host, int(port)))
            raise RuntimeError(f"{address} still accepts: not silent")
        except TimeoutError:
            pass  # dropped, as a dead host's would be
        finally:
            probe.close()
        yield
    finally:
        for c in fillers:
            c.close()
        lsock.close()


def variant(tmp: Path, cluster: str) -> Config:
    text = LAB_CONFIG.read_text(encoding="utf-8")
    text = text.replace("  agi_guard: {port: 4580, route_timeout: 1.0}\n", "")
    text = text.replace(
        "  watchdog: {timeout: 1.0}\n", f"  watchdog: {{timeout: 1.0}}\n  cluster: {cluster}\n"
    )
    text = text.replace(
        "  held_routes: {use_without_bridge: false, fresh_age: 5, max_age: 300}\n",
        "  held_routes: {enabled: false}\n",
    )
    text = text.replace("file: ../.lab/", f"file: {LAB_CONFIG.parent.parent / '.lab'}/")
    path = tmp / f"dead-{abs(hash(cluster))}.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


async def measure(lab: Lab, config: Config, tmp: Path, calls: int, rate: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="case-", dir=tmp))  # SIPp's files of this case alone
    with bangalore_dialplan(lab, config):
        bridge = BridgeProcess(lab, WEDNESDAY_MORNING)
        bridge.config = config
        await bridge.start()
        try:
            result = await place_load(calls / rate, tmp, rate=rate, dialled=ORDERS_IN, port=6270)
        finally:
            bridge.stop()
    waits = [t.wait_ms for t in result.timings]
    return {
        "calls": result.created,
        "failed": result.failed,
        "p50_ms": round(percentile(waits, 0.5)),
        "p99_ms": round(percentile(waits, 0.99)),
        "max_ms": round(max(waits)) if waits else None,
    }


async def run(calls: int, rate: int) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    srv = [
        SrvTarget("b1.ccb.test", "127.0.0.1", 0, 10, 50),  # port set per case
        SrvTarget("b2.ccb.test", "127.0.0.1", int(LIVE.rsplit(":", 1)[1]), 20, 50),
    ]
    with tempfile.TemporaryDirectory(prefix="ccb-dead-") as d:
        tmp = Path(d)
        ensure_lab_secrets()
        lab = Lab(enable_lab_tls(load_config(LAB_CONFIG)))
        lab.down()
        lab.up()
        try:
            out["floor: the live bridge alone"] = await measure(
                lab, variant(tmp, f"{{servers: [{LIVE}]}}"), tmp, calls, rate
            )
            cases = (("refused", DEAD, contextlib.nullcontext()), ("silent", SILENT, None))
            for what, first, ctx in cases:
                with ctx if ctx is not None else silent_host(first):
                    config = variant(tmp, f"{{servers: [{first}, {LIVE}]}}")
                    out[f"list, first {what}"] = await measure(lab, config, tmp, calls, rate)
                    port = int(first.rsplit(":", 1)[1])
                    targets = [SrvTarget(srv[0].name, "127.0.0.1", port, 10, 50), srv[1]]
                    with srv_server(SRV_NAME, targets), root_resolver(lab.root):
                        config = variant(tmp, f"{{srv: {SRV_NAME}}}")
                        out[f"hagi SRV, priority 10 {what}"] = await measure(
                            lab, config, tmp, calls, rate
                        )
        finally:
            lab.down()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--rate", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    with lab_lock():
        results = asyncio.run(run(args.calls, args.rate))
    floor = results["floor: the live bridge alone"]["p50_ms"]
    for name, r in results.items():
        extra = ""
        if isinstance(floor, int) and isinstance(r["p50_ms"], int):
            extra = f"  (+{r['p50_ms'] - floor} ms over the floor's p50)"
        print(f"{name:34} {json.dumps(r)}{extra}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
