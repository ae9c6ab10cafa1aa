"""One SIPp UAS per distinct member contact: real SIPp processes on free loopback ports (no lab).

An integration test: it starts SIPp, which unit tests never do.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from ccbridge.config import Config, load_config
from ccbridge.config.model import Agent as Member
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sipp import SippError, start_member_agents
from ccbridge.lab.sites import REPO_ROOT


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(members: dict[str, tuple[Member, ...]]) -> Config:
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    sites = tuple(replace(s, agents=members.get(s.name, ())) for s in config.sites)
    return replace(config, sites=sites)


def test_a_phone_that_is_a_member_at_two_sites_gets_one_uas(tmp_path: Path) -> None:
    own, roaming = _free_udp_port(), _free_udp_port()
    roam = f"sip:agent@127.0.0.1:{roaming}"
    config = _config(
        {
            "bangalore": (
                Member("a1", f"sip:agent@127.0.0.1:{own}", ("orders-en",)),
                Member("roam", roam, ()),
            ),
            "dhaka": (Member("roam", roam, ()),),
        }
    )
    agents = start_member_agents(config, 30, tmp_path)
    try:
        assert sorted(a.port for a in agents.values()) == sorted([own, roaming])
        assert all(a.proc is not None and a.proc.poll() is None for a in agents.values())
    finally:
        for a in agents.values():
            a.stop()


def test_an_agent_that_cannot_start_stops_the_ones_already_started(tmp_path: Path) -> None:
    first = _free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        config = _config(
            {
                "bangalore": (
                    Member("a1", f"sip:agent@127.0.0.1:{first}", ()),
                    Member("a2", f"sip:agent@127.0.0.1:{busy}", ()),
                )
            }
        )
        with pytest.raises(SippError, match="exited"):
            start_member_agents(config, 30, tmp_path)
    # the first UAS was stopped: its port is free again
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", first))
