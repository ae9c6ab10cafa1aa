"""Each SIPp process's media ports (``-mp``): its own block, clear of the lab sites' RTP
ranges and of the kernel's ephemeral ports. CI once lost a test's calls to "Unable to bind
video RTP socket ... Address already in use": the block lay in the ephemeral range, where
another socket had been given the port."""

from __future__ import annotations

import socket
from pathlib import Path

from ccbridge.config.loader import load_config
from ccbridge.lab.sipp import MEDIA_FLOOR, MEDIA_SLOTS, _block_free, _port_for, media_port

REPO = Path(__file__).resolve().parents[2]
# Every SIP port the lab's SIPp processes use lies here (carriers, callers, agents' phones).
SIP_PORTS = range(5000, 5000 + MEDIA_SLOTS)


def blocks() -> dict[int, range]:
    return {p: range(_port_for(p), _port_for(p) + 4) for p in SIP_PORTS}


def test_every_sip_port_has_its_own_block_of_four() -> None:
    taken: set[int] = set()
    for block in blocks().values():
        assert taken.isdisjoint(block)
        taken.update(block)
    assert len(taken) == 4 * MEDIA_SLOTS
    assert min(taken) == MEDIA_FLOOR


def test_the_blocks_miss_the_lab_sites_rtp_ranges() -> None:
    config = load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False)
    lowest = min(_port_for(p) for p in SIP_PORTS)
    assert len(config.sites) == 3
    for site in config.sites:
        assert site.rtp_end < lowest, site.name


def test_the_blocks_lie_below_the_kernels_ephemeral_ports() -> None:
    highest = max(_port_for(p) + 3 for p in SIP_PORTS)
    assert highest < 32768  # Linux's default floor, and IANA's dynamic range starts at 49152
    text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    assert highest < int(text[0]), f"ephemeral ports on this machine: {text}"


def test_a_block_in_use_is_passed_over_for_the_next_free_one() -> None:
    """A free port from the ephemeral range shares its block with a lab phone's SIP port
    MEDIA_SLOTS-times apart (CI: 56032 and 7032, both block 21528)."""
    assert _port_for(56032) == _port_for(7032) == 21528
    # A SIP port from there whose block and the next are free now (a lab may be running).
    sip = next(
        p
        for p in range(56032, 56032 + MEDIA_SLOTS - 1)
        if _block_free("127.0.0.1", _port_for(p)) and _block_free("127.0.0.1", _port_for(p + 1))
    )
    own = _port_for(sip)
    assert media_port("127.0.0.1", sip) == own
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", own + 1))  # one port of the block is enough to take it
        assert media_port("127.0.0.1", sip) == _port_for(sip + 1)  # the next block
    assert media_port("127.0.0.1", sip) == own  # free again: its own block


def test_an_address_this_namespace_lacks_keeps_the_block() -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: a bind gives EADDRNOTAVAIL, not
    # EADDRINUSE, and the block cannot be probed from this namespace.
    assert media_port("192.0.2.1", 5071) == _port_for(5071)
