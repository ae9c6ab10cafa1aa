"""The bridge's interval-rollup job: a round every ``records.rollup_interval`` seconds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ccbridge.lifecycle import cancel_and_wait
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
        self.last_error: str | None = None

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

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            try:
                await self.run_once()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                why = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if why != self.last_error:
                    log.warning("rollup round failed (next in %gs): %s", self.interval, why)
                self.last_error = why
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="records-rollup")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
