"""A config and a writer for the report tests: the lab's three sites, one moved to a DST
zone, records written through the store's normal path (RecordWriter)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ccbridge.config import load_config
from ccbridge.config.model import Config
from ccbridge.store.writer import RecordWriter
from tests.polling import until
from tests.store.conftest import Db

REPO = Path(__file__).resolve().parents[2]
DST_ZONE = "America/New_York"
SECRETS = {"CCBRIDGE_AMI_SECRET": "x", "CCBRIDGE_API_TOKEN": "the-token"}


def report_config() -> Config:
    """examples/lab.yaml with manila in New York's zone (a DST zone) and dhaka's care-en
    queue at a 30 s service-level threshold (the others keep 20 s)."""
    # The secrets the lab config names, set only while it loads: nothing leaks into
    # the environment of later tests.
    saved = {k: os.environ.get(k) for k in SECRETS}
    os.environ.update({k: os.environ.get(k) or v for k, v in SECRETS.items()})
    try:
        c = load_config(REPO / "examples" / "lab.yaml")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    sites = []
    for s in c.sites:
        if s.name == "manila":
            s = replace(s, timezone=DST_ZONE)
        if s.name == "dhaka":
            offerings = tuple(
                replace(o, queue=replace(o.queue, servicelevel=30)) if o.service == "care" else o
                for o in s.offerings
            )
            s = replace(s, offerings=offerings)
        sites.append(s)
    return replace(c, sites=tuple(sites))


async def write(db: Db, records: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """Put the records through a RecordWriter and stop it once they are written."""
    writer = RecordWriter(db.engine(), db.tmp / "report.journal")
    await writer.start()
    try:
        n = 0
        for table, values in records:
            assert writer.put(table, values), (table, values)
            n += 1
        await until(lambda: writer.status().written >= n, 30, "records written")
    finally:
        await writer.stop(drain_timeout=30)
    st = writer.status()
    assert st.caught_up and st.rejected == 0 and st.unwritten == 0, st
