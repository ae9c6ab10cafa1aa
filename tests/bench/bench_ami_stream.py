"""A long AMI stream through real SiteLink sockets: nothing lost or reordered, RSS flat.

Each site's fake AMI server (tests/amifake.py) streams the 7-event call mix with a
``Seq: N`` field in every event, at the pace the link reads it; the link hands each
event to a Bridge's event bus (reducer, KPIs, agent mirror, as in production) and to a
checker that counts per site and checks each Seq follows the one before. RSS is sampled
as the stream goes; the first quarter is the warm-up. tests/unit/test_ami_stream.py runs
this with 200,000 events under make test; this bench runs 1,000,000:

    .venv/bin/python -m tests.bench.bench_ami_stream [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ccbridge.ami.client import LinkState, SiteLink
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.config.model import AmiSettings, SecretValue
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sites import REPO_ROOT
from tests.amifake import FakeAmi
from tests.bench.bench_ami_parse import iter_calls
from tests.bench.bench_ami_state import synced_state
from tests.polling import until

CHUNK = 64 * 1024
EVENT_NAMES = (
    "QueueCallerJoin",
    "QueueMemberStatus",
    "AgentConnect",
    "QueueCallerLeave",
    "AgentComplete",
)


def seq_chunks(events: int, agents: int, seed: int) -> Iterator[bytes]:
    """``events`` events of the call mix, ``Seq: 1`` upwards, in ~64 KiB chunks, made as
    they are sent (a million events never sit in memory)."""
    n, parts, size = 0, [], 0
    for call in iter_calls(-(-events // 7), agents, seed=seed):
        for text in call:
            n += 1
            if n > events:
                break
            part = text.replace("\r\n", f"\r\nSeq: {n}\r\n", 1)
            parts.append(part)
            size += len(part)
            if size >= CHUNK:
                yield "".join(parts).encode()
                parts, size = [], 0
    if parts:
        yield "".join(parts).encode()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Checker:
    """Subscribed beside the bridge's parts: per-site count and order of Seq."""

    expected: int  # events per site
    sites: tuple[str, ...]
    received: dict[str, int] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    out_of_order: int = 0
    rss: list[tuple[int, int]] = field(default_factory=list)  # (events so far, bytes)
    _total: int = 0
    _next_sample: int = 0

    def __post_init__(self) -> None:
        self.received = dict.fromkeys(self.sites, 0)
        self.last = dict.fromkeys(self.sites, 0)

    def __call__(self, site: str, event: Mapping[str, str]) -> None:
        seq = int(event["Seq"])
        if seq != self.last[site] + 1:
            self.out_of_order += 1
        self.last[site] = seq
        self.received[site] += 1
        self._total += 1
        if self._total >= self._next_sample:
            self.rss.append((self._total, rss_bytes()))
            self._next_sample += max(1, self.expected * len(self.sites) // 20)

    @property
    def done(self) -> bool:
        return all(n >= self.expected for n in self.received.values())


@dataclass(frozen=True)
class StreamResult:
    events: int
    seconds: float
    received: dict[str, int]
    out_of_order: int
    bad_input: int
    reconnects: int
    rss_after_warmup: int
    rss_end: int
    rss_peak: int

    @property
    def rss_growth(self) -> int:
        return self.rss_end - self.rss_after_warmup


def _settings(port: int) -> AmiSettings:
    # A Ping reply queues behind every event already in the socket buffers (megabytes at
    # full speed): on a loaded machine that can take seconds. Liveness is tested elsewhere
    # (test_ami_client); here a slow turn must not drop the link mid-stream.
    return AmiSettings(
        host="127.0.0.1",
        port=port,
        username="ccbridge",
        secret=SecretValue("s3cret", "test"),
        ping_interval=5.0,
        ping_timeout=60.0,
        action_timeout=5.0,
        reconnect_min=0.05,
        reconnect_max=0.5,
    )


async def run_stream(bridge: Bridge, events_per_site: int, agents: int = 1_000) -> StreamResult:
    """Stream ``events_per_site`` to two sites of ``bridge``'s config at once."""
    sites = tuple(s.name for s in bridge.config.sites[:2])
    for site in sites:
        bridge.state = synced_state(bridge, site, agents)
    checker = Checker(events_per_site, sites)
    for name in EVENT_NAMES:
        bridge.bus.subscribe(name, checker)
    fakes = [FakeAmi(secret="s3cret") for _ in sites]
    links: list[SiteLink] = []
    try:
        for site, fake in zip(sites, fakes, strict=True):
            await fake.start()
            links.append(SiteLink(site, _settings(fake.port), bridge.bus.dispatch))
        for link in links:
            await link.start()
        await until(
            lambda: (
                all(link.state is LinkState.UP for link in links)
                and all(fake.client_count == 1 and fake.logins_ok == 1 for fake in fakes)
            ),
            10,
            "both links up",
        )
        started = time.perf_counter()
        senders = [
            fake.stream(seq_chunks(events_per_site, agents, seed))
            for seed, fake in enumerate(fakes, start=7)
        ]
        await asyncio.gather(*senders)
        await until(lambda: checker.done, 60, "every event at the far end", interval=0.05)
        seconds = time.perf_counter() - started
    finally:
        for link in links:
            await link.stop()
        for fake in fakes:
            await fake.close()
    warm = [rss for n, rss in checker.rss if n >= len(sites) * events_per_site // 4]
    return StreamResult(
        events=events_per_site * len(sites),
        seconds=seconds,
        received=checker.received,
        out_of_order=checker.out_of_order,
        bad_input=sum(link.bad_input for link in links),
        reconnects=sum(link.reconnects for link in links),
        rss_after_warmup=warm[0],
        rss_end=rss_bytes(),
        rss_peak=max(rss for _, rss in checker.rss),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=1_000_000, help="events in all (2 sites)")
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    r = asyncio.run(run_stream(bridge, args.events // 2))
    mb = 1024 * 1024
    ok = r.out_of_order == 0 and r.bad_input == 0 and r.reconnects == 0
    ok = ok and all(n == args.events // 2 for n in r.received.values())
    print(
        f"ami stream: {r.events:,} events over 2 sockets in {r.seconds:.1f}s "
        f"({r.events / r.seconds:,.0f} events/s, with the fake servers in the same process); "
        f"received {r.received}, out of order {r.out_of_order}, bad input {r.bad_input}, "
        f"reconnects {r.reconnects}; RSS after warm-up {r.rss_after_warmup / mb:.1f} MB, "
        f"end {r.rss_end / mb:.1f} MB (growth {r.rss_growth / mb:+.1f} MB), "
        f"peak {r.rss_peak / mb:.1f} MB: {'ok' if ok else 'FAILED'}"
    )
    if args.json:
        out = {**r.__dict__, "ok": ok, "events_per_s": round(r.events / r.seconds)}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
