"""The lab's `recording:` section for tests: site spools, a throwaway key, central storage."""

from __future__ import annotations

import base64
import os
from dataclasses import replace
from pathlib import Path

from ccbridge.config import Config
from ccbridge.config.model import SecretValue
from ccbridge.config.recording import RecordingKey, RecordingSettings, SiteRecording
from ccbridge.config.store import StoreSettings
from ccbridge.lab.sites import Lab

SPOOL = "ccb-recordings"


def recording_config(
    lab: Lab,
    base: Config,
    tmp: Path,
    policy: tuple[tuple[str, float], ...] = (("orders", 100.0),),
) -> Config:
    """``base`` with a `recording:` section over the lab's site spools (a fresh key,
    central storage under ``tmp``) and a SQLite store under ``tmp`` for its index."""
    sites = tuple(
        (
            s.name,
            SiteRecording(
                spool=f"{lab.dirs(s).inside['spool']}/{SPOOL}",
                pickup=str(lab.dirs(s).host("spool") / SPOOL),
            ),
        )
        for s in base.sites
    )
    key = SecretValue(base64.b64encode(os.urandom(32)).decode(), "test")
    rec = RecordingSettings(
        policy=policy,
        sites=sites,
        storage_dir=str(tmp / "central"),
        keys=(RecordingKey("lab1", key),),
        current_key="lab1",
        scan_interval=0.5,
        chunk_size=4096,  # several chunks even for a short call: Range crosses them
        services=base.services,
    )
    store = StoreSettings(
        enabled=True,
        url=f"sqlite+aiosqlite:///{tmp / 'records.db'}",
        journal=str(tmp / "records.journal"),
    )
    return replace(base, recording=rec, store=store)
