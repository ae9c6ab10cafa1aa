"""The bridge's interval-rollup job: a round every ``records.rollup_interval`` seconds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ccbridge.lifecycle import Rounds, cancel_and_wait
from ccbridge.reports.rollup import Round

log = logging.getLogger("ccbridge.reports.rollup")


class RollupJob:
    """Runs ``round`` (ReportService.roll: in the report worker process, under the
    job's cluster lock) every ``interval`` seconds; a failed round is logged once per
    distinct reason and the next one tries again (the reports stay right meanwhile:
    they read raw rows for every day not rolled)."""

    def __init__(
        self,
        round_: Callable[[], Awaitable[Round]],
        interval: float,
        first_delay: float = 120.0,
    ) -> None:
        self._round = round_
        self.interval = interval
        self.first_delay = first_delay  # the bridge settles (links, resyncs) first
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.rolled = 0  # site-days rolled by this bridge
        self._rounds = Rounds("rollup round failed", log)

    async def run_once(self) -> Round:
        got = await self._round()
        if got.ran:
            self.rounds += 1
            self.rolled += got.rolled.total
            if got.rolled.total:
                log.info(
                    "rollup: rolled %d site-days (%d left for the next rounds)",
                    got.rolled.total,
                    got.rolled.left,
                )
        return got

    @property
    def last_error(self) -> str | None:
        return self._rounds.last_error

    async def start(self) -> None:
        if self.interval > 0 and self._task is None:
            loop = self._rounds.run(self.run_once, self.first_delay, self.interval)
            self._task = asyncio.create_task(loop, name="records-rollup")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
