"""A process that puts call records as fast as it can and reports how many are journaled
(and its writer process, with CCBRIDGE_TEST_WRITER_PROCESS=1); the SIGKILL test kills it
(python -m tests.store.writer_child URL JOURNAL)."""

from __future__ import annotations

import asyncio
import os
import sys

from ccbridge.config.model import SecretValue
from ccbridge.config.store import StoreSettings
from ccbridge.store.engine import make_engine
from ccbridge.store.writer import RecordWriter
from tests.store.records_factory import call_records

PER_CALL = len(call_records(0))


async def main(url: str, journal: str) -> None:
    password = os.environ.get("CCBRIDGE_TEST_DB_PASSWORD")
    settings = StoreSettings(
        url=url,
        password=SecretValue(password, "env") if password else None,
        journal=journal,
        writer_process=os.environ.get("CCBRIDGE_TEST_WRITER_PROCESS") == "1",
    )
    writer = RecordWriter.from_settings(settings, make_engine(settings))
    await writer.start()
    n = 0
    reported = -1
    while True:
        for _ in range(50):
            for table, values in call_records(n):
                assert writer.put(table, values)
            n += 1
        await asyncio.sleep(0.005)
        done = writer.journaled // PER_CALL
        if done != reported:
            # Calls whose every record is in the journal: the parent's lower bound.
            pid = writer.process.pid if writer.process is not None else None
            print(
                f"journaled {done} written {writer.status().written} process {pid or 0}",
                flush=True,
            )
            reported = done


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
