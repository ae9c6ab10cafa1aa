"""Fire the timeline's faults against the lab, its carriers and the bridge; undo each after FOR."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field, replace

from ccbridge.lab.sipp import Agent
from ccbridge.lab.sites import Lab
from ccbridge.loadtest.bridgectl import BridgeProcess
from ccbridge.loadtest.timeline import Fault, FaultKind

log = logging.getLogger("ccbridge.loadtest")


@dataclass
class FaultRecord:
    """What a fault did, in seconds since the run started."""

    fault: Fault
    started: float | None = None
    recovered: float | None = None  # undone (site back answering AMI, bridge ready, ...)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_run(self) -> Fault:
        """The fault as it ran: from its start to its recovery (the plan where unknown)."""
        f = self.fault
        if self.started is None:
            return f
        ends = self.recovered if self.recovered is not None else f.ends
        return replace(f, at=self.started, duration=max(0.0, ends - self.started))

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.fault.kind.value,
            "target": self.fault.target,
            "planned_at": self.fault.at,
            "planned_for": self.fault.duration,
            "started": self.started,
            "recovered": self.recovered,
            "error": self.error,
            "notes": self.notes,
        }


class FaultInjector:
    """Runs each fault as its own task so a slow recovery never delays the next fault."""

    def __init__(
        self,
        lab: Lab,
        bridge: BridgeProcess | None,
        carriers: dict[str, Agent],
        started_at: float,
    ) -> None:
        self.lab = lab
        self.bridge = bridge
        self.carriers = carriers
        self.t0 = started_at  # time.monotonic() of the run's start
        self.records: list[FaultRecord] = []
        self._tasks: list[asyncio.Task[None]] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def check(self, fault: Fault) -> None:
        """Refuse a fault this run cannot perform, before any call is placed."""
        if fault.kind in (FaultKind.KILL_SITE, FaultKind.HANG_SITE, FaultKind.DRAIN_SITE):
            self.lab.config.site(fault.target)  # KeyError for an unknown site
        if fault.kind is FaultKind.KILL_CARRIER and fault.target not in self.carriers:
            raise KeyError(f"no carrier {fault.target!r} in this run (--carrier NAME=MODE)")
        needs_bridge = (FaultKind.RESTART_BRIDGE, FaultKind.STOP_BRIDGE, FaultKind.DRAIN_SITE)
        if fault.kind in needs_bridge and self.bridge is None:
            raise KeyError(f"{fault.kind.value} needs the bridge started by the harness")

    def fire(self, fault: Fault) -> None:
        rec = FaultRecord(fault)
        self.records.append(rec)
        self._tasks.append(asyncio.create_task(self._run(rec)))

    async def _run(self, rec: FaultRecord) -> None:
        f = rec.fault
        try:
            rec.started = self.now()
            await self._begin(f, rec)
            if f.duration > 0:
                await asyncio.sleep(max(0.0, f.ends - self.now()))
            await self._end(f, rec)
            rec.recovered = self.now()
        except asyncio.CancelledError:
            rec.error = "cancelled before recovery"
            raise
        except Exception as exc:  # a failed fault is reported, the run goes on
            rec.error = f"{type(exc).__name__}: {exc}"
            log.warning("fault %s failed: %s", f.label, exc)

    async def _begin(self, f: Fault, rec: FaultRecord) -> None:
        if f.kind is FaultKind.KILL_SITE:
            self.lab.signal_site(self.lab.config.site(f.target), signal.SIGKILL)
        elif f.kind is FaultKind.HANG_SITE:
            self.lab.signal_site(self.lab.config.site(f.target), signal.SIGSTOP)
        elif f.kind is FaultKind.KILL_CARRIER:
            await asyncio.to_thread(self.carriers[f.target].stop)
        elif f.kind is FaultKind.RESTART_BRIDGE:
            assert self.bridge is not None
            self.bridge.kill()
            took = await self.bridge.start()
            rec.notes.append(f"bridge ready {took:.1f}s after the kill")
        elif f.kind is FaultKind.STOP_BRIDGE:
            assert self.bridge is not None
            self.bridge.kill()
        elif f.kind is FaultKind.DRAIN_SITE:
            assert self.bridge is not None
            status = await asyncio.to_thread(
                self.bridge.api, "POST", f"/api/v1/sites/{f.target}/drain"
            )
            if status != 200:
                raise RuntimeError(f"drain answered HTTP {status}")

    async def _end(self, f: Fault, rec: FaultRecord) -> None:
        if f.kind is FaultKind.KILL_SITE:
            site = self.lab.config.site(f.target)
            t = time.monotonic()
            await asyncio.to_thread(self.lab.start_site, site)
            await asyncio.to_thread(self.lab.wait_ami, site, 60.0)
            rec.notes.append(f"site answering AMI {time.monotonic() - t:.1f}s after restart")
        elif f.kind is FaultKind.HANG_SITE:
            self.lab.signal_site(self.lab.config.site(f.target), signal.SIGCONT)
        elif f.kind is FaultKind.KILL_CARRIER:
            await asyncio.to_thread(self.carriers[f.target].start)
        elif f.kind is FaultKind.STOP_BRIDGE:
            assert self.bridge is not None
            took = await self.bridge.start()
            rec.notes.append(f"bridge ready {took:.1f}s after its restart")
        elif f.kind is FaultKind.DRAIN_SITE:
            assert self.bridge is not None
            await asyncio.to_thread(self.bridge.api, "POST", f"/api/v1/sites/{f.target}/undrain")

    async def settle(self, within: float) -> None:
        """Wait for every fault to be undone (a site left dead would poison the next run)."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=within)
            for t in still:
                t.cancel()
            await asyncio.gather(*still, return_exceptions=True)
