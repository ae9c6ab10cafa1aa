"""Separate hosts on one machine for partition tests: network namespaces joined to the root
namespace by veth pairs, and a relay in the root namespace to the lab's sites.

Every address lives on the veth pairs this module makes (10.213.0.0/16, private), so no
packet leaves the machine: a namespace reaches only the relay. Each namespace is a host
at 10.213.N.2 (its veth's root end 10.213.N.1). The relay listens on one address per
site (10.213.0.1X, on a veth pair whose both ends stay in the root namespace) and
forwards each connection to the site's own AMI address on loopback, which a namespace
cannot reach. ``blackhole(host, address)`` adds a blackhole route inside one namespace:
that host alone loses that site, packets already on their way included (the
established TCP connection's next segment finds no route), as a cut link would.

Names start with ``ccbscale-`` (namespaces) and ``ccbs`` (links); ``clean_stale()``
removes what an interrupted run left, and ``Hosts`` always removes what it made.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

NS_PREFIX = "ccbscale-"
LINK_PREFIX = "ccbs"
RELAY_LINK = "ccbsr0"  # holds the relay's addresses (its peer ccbsr1 stays down)
NETWORK = "10.213"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def clean_stale() -> list[str]:
    """Remove namespaces and root links with our prefixes (an interrupted run's); the
    names removed."""
    gone: list[str] = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(NS_PREFIX):
            ip("netns", "del", name, check=False)
            gone.append(name)
    for line in ip("-o", "link", "show").stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@", 1)[0]
        if name.startswith(LINK_PREFIX):
            ip("link", "del", name, check=False)
            gone.append(name)
    return gone


@dataclass(frozen=True, slots=True)
class Host:
    """One namespace: its name and its own address (10.213.N.2)."""

    name: str
    address: str
    root_link: str


def relay_address(index: int) -> str:
    """The address the relay listens on for the ``index``-th site (from 1)."""
    return f"{NETWORK}.0.{10 + index}"


class Hosts:
    """``with Hosts(["a", "b"], sites=3) as hosts``: namespaces ccbscale-a and ccbscale-b,
    each a host with a route to the relay's addresses; all removed on exit (also on error)."""

    def __init__(self, names: Sequence[str], sites: int) -> None:
        self.hosts = {
            n: Host(f"{NS_PREFIX}{n}", f"{NETWORK}.{i}.2", f"{LINK_PREFIX}{n}0")
            for i, n in enumerate(names, 1)
        }
        self.sites = sites

    def __enter__(self) -> Hosts:
        clean_stale()
        try:
            self._make()
        except BaseException:
            clean_stale()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        clean_stale()

    def _make(self) -> None:
        ip("link", "add", RELAY_LINK, "type", "veth", "peer", "name", "ccbsr1")
        for i in range(1, self.sites + 1):
            ip("addr", "add", f"{relay_address(i)}/32", "dev", RELAY_LINK)
        ip("link", "set", RELAY_LINK, "up")
        for i, host in enumerate(self.hosts.values(), 1):
            inner = f"{host.root_link[:-1]}1"
            ip("netns", "add", host.name)
            ip("link", "add", host.root_link, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", host.name)
            ip("addr", "add", f"{NETWORK}.{i}.1/24", "dev", host.root_link)
            ip("link", "set", host.root_link, "up")
            ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", inner)
            ip("-n", host.name, "link", "set", "lo", "up")
            ip("-n", host.name, "link", "set", inner, "up")
            # Only the relay's addresses: no default route, nothing else is reachable.
            ip("-n", host.name, "route", "add", f"{NETWORK}.0.0/24", "via", f"{NETWORK}.{i}.1")

    def blackhole(self, host: str, address: str) -> None:
        ip("-n", self.hosts[host].name, "route", "add", "blackhole", f"{address}/32")

    def heal(self, host: str, address: str) -> None:
        ip("-n", self.hosts[host].name, "route", "del", "blackhole", f"{address}/32")


class SiteRelay:
    """TCP forwarders in the root namespace, ``(listen_host, port) -> (host, port)``, on
    an event loop of their own in a thread: they are the network, not the test."""

    def __init__(self, routes: dict[tuple[str, int], tuple[str, int]]) -> None:
        self.routes = routes
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    def __enter__(self) -> SiteRelay:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(ready)))
        self._thread.start()
        if not ready.wait(5) or self._failed is not None:
            self.__exit__()
            raise RuntimeError(f"the relay did not start: {self._failed!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        servers: list[asyncio.Server] = []
        try:
            for (host, port), target in self.routes.items():

                async def serve(
                    r: asyncio.StreamReader, w: asyncio.StreamWriter, to: tuple[str, int] = target
                ) -> None:
                    task = asyncio.current_task()
                    assert task is not None
                    tasks.add(task)
                    self.connections += 1
                    try:
                        await self._forward(r, w, to)
                    finally:
                        tasks.discard(task)

                servers.append(await asyncio.start_server(serve, host, port))
        except OSError as exc:
            self._failed = exc
        ready.set()
        await self._stop.wait()
        for server in servers:
            server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _forward(
        r: asyncio.StreamReader, w: asyncio.StreamWriter, to: tuple[str, int]
    ) -> None:
        up_w: asyncio.StreamWriter | None = None
        try:
            up_r, up_w = await asyncio.open_connection(*to)
            await asyncio.gather(_pipe(r, up_w), _pipe(up_r, w))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            w.transport.abort()
            if up_w is not None:
                up_w.transport.abort()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    dst.transport.abort()  # one side gone: the whole connection is


@contextlib.contextmanager
def hosts_and_relay(
    names: Sequence[str], targets: Sequence[tuple[str, int]], port: int
) -> Iterator[tuple[Hosts, SiteRelay]]:
    """Namespaces ``names`` and a relay from ``relay_address(i):port`` to ``targets[i-1]``."""
    with Hosts(names, len(targets)) as hosts:
        routes = {(relay_address(i), port): t for i, t in enumerate(targets, 1)}
        with SiteRelay(routes) as relay:
            yield hosts, relay
