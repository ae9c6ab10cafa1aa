"""DNS SRV for the lab's `hagi://` tests and benches: a throwaway dnsmasq on a loopback
address, and the lab root's resolver pointed at it while it runs.

Asterisk 22 resolves `hagi://NAME` in res_agi.c (launch_ha_netscript): `ast_srv_lookup`
for `_agi._tcp.NAME` through the C library's resolver (res_ninit per query, so it reads
`/etc/resolv.conf` of the root it runs in: the lab's chroot), tries the targets by
priority and weight, and resolves each target's name to an address like `agi://` does.
The lab root's resolv.conf normally names no server (look-ups fail at once); while a
test runs, it names this dnsmasq, which answers its own records and refuses the rest.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

DNS_ADDRESS = "127.0.9.53"  # a loopback address of its own: no clash with a local resolver


@dataclass(frozen=True, slots=True)
class SrvTarget:
    name: str  # the target host name, e.g. b1.ccb.test
    address: str  # what the name resolves to (an A record dnsmasq serves)
    port: int
    priority: int
    weight: int


def dnsmasq_command(
    service: str, targets: Sequence[SrvTarget], address: str = DNS_ADDRESS
) -> list[str]:
    """dnsmasq serving SRV ``_agi._tcp.SERVICE`` with ``targets`` and their A records
    only: no upstream, no /etc/hosts, no DHCP, in the foreground."""
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    cmd = [
        binary,
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        f"--listen-address={address}",
        "--port=53",
        "--pid-file=",
        "--user=root",
        "--log-facility=-",
    ]
    for t in targets:
        cmd.append(f"--srv-host=_agi._tcp.{service},{t.name},{t.port},{t.priority},{t.weight}")
        cmd.append(f"--host-record={t.name},{t.address}")
    return cmd


def _answers(address: str, timeout: float = 0.5) -> bool:
    """A DNS query for the root zone gets any reply: the server is up."""
    query = bytes.fromhex("abcd01000001000000000000") + b"\x00\x00\x02\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(query, (address, 53))
            return s.recv(512)[:2] == query[:2]
        except OSError:
            return False


@contextlib.contextmanager
def srv_server(
    service: str, targets: Sequence[SrvTarget], address: str = DNS_ADDRESS
) -> Iterator[subprocess.Popen[bytes]]:
    if shutil.which("dnsmasq") is None:
        raise RuntimeError("dnsmasq not found: install Debian's dnsmasq-base (`make deps` does)")
    proc = subprocess.Popen(
        dnsmasq_command(service, targets, address),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 5
        while not _answers(address):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"dnsmasq exited ({proc.returncode}): {err.strip()[:300]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dnsmasq not answering on {address}:53 after 5 s")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


@contextlib.contextmanager
def root_resolver(root: Path, address: str = DNS_ADDRESS) -> Iterator[None]:
    """The lab root's resolv.conf names ``address`` (1 s a try, two tries) for the block."""
    if root == Path("/"):
        raise RuntimeError("the lab runs the machine's own Asterisk: its resolver is not ours")
    path = root / "etc" / "resolv.conf"
    before = path.read_bytes() if path.exists() else None
    path.write_text(
        f"# ccbridge lab: a test's dnsmasq (ccbridge/lab/dns.py)\nnameserver {address}\n"
        "options timeout:1 attempts:2\n",
        encoding="ascii",
    )
    try:
        yield
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)
