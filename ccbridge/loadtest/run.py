"""One load test: lab, agents, carriers and bridge up; callers and faults on time; the report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ccbridge.ami.client import SiteLink
from ccbridge.config.model import Config
from ccbridge.lab.sipp import Agent, start_member_agents
from ccbridge.lab.sites import Lab
from ccbridge.loadtest.bridgectl import BridgeProcess
from ccbridge.loadtest.faults import FaultInjector
from ccbridge.loadtest.options import CallerGroup, LoadPlan
from ccbridge.loadtest.outage import outage_routing
from ccbridge.loadtest.placement import call_span
from ccbridge.loadtest.predict import (
    NO_QUEUE,
    Key,
    carrier_key,
    compare,
    decide_at,
    predict,
)
from ccbridge.loadtest.queuelog import QueueLog, QueueStay, abandoned_in_queue
from ccbridge.loadtest.report import FailedCallReport, Report, bridge_lines_near, classify
from ccbridge.loadtest.sipp import (
    CARRIER_SCENARIOS,
    CallerRun,
    ProcessGroup,
    group_run,
    ivr_stay_ms,
)
from ccbridge.loadtest.stats import StatRow, merge, parse_error_log, read_stat_file
from ccbridge.loadtest.timeline import Fault
from ccbridge.routing.engine import Router
from ccbridge.variables import EVENT_TRUNK_RESULT

log = logging.getLogger("ccbridge.loadtest")
EVERY_SITE_OPEN = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # a Wednesday: all lab sites open
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Setup:
    """What the harness manages itself; an external Asterisk (``target``) gets calls only."""

    config: Config
    plan: LoadPlan
    lab: Lab | None = None
    target: str | None = None  # HOST:PORT of any Asterisk; every call goes there
    agents: bool = True
    bridge: bool = True
    fresh_lab: bool = True  # False: the caller owns a running lab (the test suite's fixture)


class QueueJoins:
    """Where calls went, over an AMI link per site: QueueCallerJoin per (site, queue), and
    calls answered by the run's SIPp carriers at trunks' far ends (the dialplan's
    ``CcbTrunkResult`` UserEvent with ``DialStatus: ANSWER``), which join no queue; and
    each caller's stay in a queue, join to abandon/connect/leave (``queue_log``)."""

    def __init__(self, config: Config, carrier_trunks: Iterable[str] = ()) -> None:
        self.config = config
        self.carrier_trunks = frozenset(carrier_trunks)
        self.joins: Counter[Key] = Counter()
        self.queue_log = QueueLog()  # each caller's stay in a queue, with epochs
        self.links: list[SiteLink] = []

    def _on_event(self, site: str, event: Mapping[str, str]) -> None:
        name = event.get("Event")
        self.queue_log.on_event(site, event, time.time())
        if name == "QueueCallerJoin":
            self.joins[(site, event.get("Queue", "?"))] += 1
        elif (
            name == "UserEvent"
            and event.get("UserEvent") == EVENT_TRUNK_RESULT
            and event.get("DialStatus") == "ANSWER"
            and event.get("Trunk", "") in self.carrier_trunks
        ):
            self.joins[carrier_key(event.get("Trunk", ""))] += 1

    async def start(self, within: float = 10.0) -> bool:
        quiet = logging.getLogger("ccbridge.loadtest.ami")
        for site in self.config.sites:
            link = SiteLink(site.name, site.ami, self._on_event, logger=quiet)
            self.links.append(link)
            await link.start()
        deadline = time.monotonic() + within
        while not all(link.connected for link in self.links):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self) -> None:
        for link in self.links:
            await link.stop()


def stay_s(plan: LoadPlan, g: CallerGroup) -> float:
    """Seconds a caller of ``g`` stays after the answer: an IVR caller keys and queues first."""
    return (ivr_stay_ms(g.digits, plan.talk_ms) if g.digits else plan.talk_ms) / 1000


def _progress_line(t: float, runs: list[CallerRun], rate: float, faults: int, n: int) -> str:
    rows = [read_stat_file(r.stat_file) for r in runs]
    created = sum(r[-1].created for r in rows if r)
    ok = sum(r[-1].successful for r in rows if r)
    failed = sum(r[-1].failed for r in rows if r)
    open_calls = sum(r[-1].current for r in rows if r)
    rts = [r[-1].response_ms for r in rows if r and r[-1].response_ms > 0]
    rt = f"{sum(rts) / len(rts):.0f}ms" if rts else "-"
    return (
        f"t={t:5.0f}s target={rate:g}/s placed={created} ok={ok} failed={failed} "
        f"open={open_calls} rt={rt} faults={faults}/{n}"
    )


async def run(setup: Setup, progress: Progress = print) -> Report:
    plan, config, lab = setup.plan, setup.config, setup.lab
    out = plan.out_dir
    sipp_dir = out / "sipp"
    sipp_dir.mkdir(parents=True, exist_ok=True)
    # SIPp only opens its error file on a first error: an old run's would be read as ours
    for old in [*sipp_dir.glob("*.csv"), *sipp_dir.glob("*.log"), *sipp_dir.glob("*.xml")]:
        old.unlink()
    at = plan.at or (EVERY_SITE_OPEN if lab is not None else datetime.now(UTC))
    longest_stay = max(stay_s(plan, g) for g in plan.groups)
    keep_for = plan.duration + longest_stay + 180  # every UAS bounded in time
    callers = ProcessGroup()
    agents: dict[str, Agent] = {}
    carriers: dict[str, Agent] = {}
    bridge: BridgeProcess | None = None
    joins = QueueJoins(config, carrier_trunks=(name for name, _ in plan.carriers))
    notes: list[str] = []
    log_offset = 0
    try:
        if lab is not None and setup.fresh_lab:
            progress(f"lab: starting {len(config.sites)} sites")
            await asyncio.to_thread(lab.down)
            await asyncio.to_thread(lab.up)
        if setup.agents:
            agents = start_member_agents(config, keep_for, sipp_dir)
        for name, mode in plan.carriers:
            trunk = next((t for t in config.trunks if t.name == name), None)
            if trunk is None:
                raise KeyError(f"--carrier {name}: no such trunk in the config")
            carriers[name] = Agent(
                trunk.remote.host,
                trunk.remote.port,
                scenario=CARRIER_SCENARIOS[mode],
                max_seconds=keep_for,
                workdir=sipp_dir,
            )
            carriers[name].start()
        if lab is not None and setup.bridge:
            bridge = BridgeProcess(lab, at)
            with contextlib.suppress(OSError):
                log_offset = bridge.log_file.stat().st_size
            took = await bridge.start()
            progress(f"bridge ready in {took:.1f}s, clock {at.isoformat()}")
        if not await joins.start():
            notes.append("AMI observer could not reach every site: observed counts are partial")
        injector = FaultInjector(lab, bridge, carriers, time.monotonic()) if lab else None
        if plan.faults and injector is None:
            raise ValueError("faults need the lab (not --target)")
        for f in plan.faults:
            assert injector is not None
            injector.check(f)

        runs = [
            group_run(
                i,
                g,
                target=setup.target or str(config.site(g.site).sip),
                calls=plan.group_calls(g),
                rate=plan.group_rate(g),
                limit=plan.group_limit(g),
                talk_ms=plan.talk_ms,
                ramp=plan.ramp,
                max_seconds=plan.duration + stay_s(plan, g) + 40,
                out=sipp_dir,
            )
            for i, g in enumerate(plan.groups)
        ]
        start_wall = time.time()
        t0 = time.monotonic()
        if injector is not None:
            injector.t0 = t0
        for r in runs:
            await callers.start(r, sipp_dir)
            # groups started together place their calls in phase (bursts): spread them
            await asyncio.sleep(min(1.0, 1 / plan.rate))
        progress(f"{len(runs)} SIPp callers started: {plan.expected_calls} calls planned")
        pending = list(plan.faults)
        hard_stop = max(r.max_seconds for r in runs) + 15
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic() - t0
            while pending and pending[0].at <= now:
                f = pending.pop(0)
                progress(f"t={now:.0f}s fault: {f.label} for {f.duration:g}s")
                assert injector is not None
                injector.fire(f)
            fired = len(plan.faults) - len(pending)
            progress(_progress_line(now, runs, plan.rate, fired, len(plan.faults)))
            if callers.running == 0 or now > hard_stop:
                break
        if injector is not None:
            await injector.settle(within=90)
        await callers.stop_all()
        await asyncio.sleep(0.5)  # the last QueueCallerJoin events
        # Predict at the bridge's clock when the callers started (it started a little
        # earlier, and runs on across restarts), so a schedule boundary falls on time.
        at_calls = bridge.clock_at(start_wall) if bridge is not None else None
        return _report(
            setup, at_calls or at, runs, start_wall, joins, injector, bridge, log_offset, notes
        )
    finally:
        await callers.stop_all()
        await joins.stop()
        if bridge is not None:
            bridge.stop()
        for a in [*agents.values(), *carriers.values()]:
            a.stop()
        if lab is not None and setup.fresh_lab:
            await asyncio.to_thread(lab.down)


def _placed_per_second(rows: list[StatRow], start: float) -> dict[int, int]:
    out: dict[int, int] = {}
    prev = 0
    for r in rows:
        t = max(0, int(r.epoch - start))
        out[t] = out.get(t, 0) + max(0, r.created - prev)
        prev = r.created
    return out


def _report(
    setup: Setup,
    at: datetime,
    runs: list[CallerRun],
    start: float,
    joins: QueueJoins,
    injector: FaultInjector | None,
    bridge: BridgeProcess | None,
    log_offset: int,
    notes: list[str],
) -> Report:
    plan, config = setup.plan, setup.config
    rows = [read_stat_file(r.stat_file) for r in runs]
    series = merge(rows, start)
    placed = {i: _placed_per_second(r, start) for i, r in enumerate(rows)}
    predicted = predict(config, plan.groups, placed, at, plan.faults, dict(plan.carriers))
    observed = Counter(joins.joins)
    observed[NO_QUEUE] = max(0, series.totals[0] - sum(joins.joins.values()))
    bridge_lines: list[str] = []
    if bridge is not None:
        with contextlib.suppress(OSError), open(bridge.log_file, "rb") as fh:
            fh.seek(log_offset)
            bridge_lines = fh.read().decode(errors="replace").splitlines()
    faults = [r.as_run() for r in injector.records] if injector else list(plan.faults)
    stays = [s.relative(start) for s in joins.queue_log.stays]
    ended = Counter(s.how or "still waiting" for s in stays)
    notes.append(
        f"Queue stays observed over AMI: {len(stays)} ("
        + ", ".join(f"{how} {n}" for how, n in sorted(ended.items()))
        + ")."
    )
    failed = _failed_calls(setup, at, runs, rows, start, faults, bridge_lines, stays)
    outages = outage_routing(config, plan.groups, placed, at, faults, stays)
    groups = []
    for i, (g, r) in enumerate(zip(plan.groups, rows, strict=True)):
        last = r[-1] if r else None
        groups.append(
            {
                "label": g.label,
                "did": g.did,
                "caller": g.caller,
                "site": g.site,
                "digits": g.digits,
                "rate": round(plan.group_rate(g), 3),
                "placed": last.created if last else 0,
                "successful": last.successful if last else 0,
                "failed": last.failed if last else 0,
                "sipp": runs[i].name,
            }
        )
    notes = [
        *notes,
        "Prediction: the routing engine on the lab at rest (every configured agent free),"
        " sites down from when the bridge can notice a fault until hold-off after recovery;"
        " a call sent over a trunk whose far end is one of the run's SIPp carriers ends there"
        " when that carrier answers.",
        "Saveable: every failed call except those whose receiving site was killed or hung"
        " at any moment from their placement to their failure, and those placed before a site"
        " the engine sends them to went down and failing after (placement: the latest the"
        " Call-ID's creation in SIPp's stats or the cause's SIPp timeout allows).",
        "Abandoned in queue (counted apart, not saveable): a failed call whose caller number"
        " was seen joining a queue (QueueCallerJoin) from about its placement to its failure,"
        " at a site up all along, and that left it by abandon or was still waiting when the"
        " caller gave up, where no other up, open site offered that queue: no agent was free"
        " (a capacity shortfall). Had another site offered it, it stays saveable.",
    ]
    plan_dict = {
        "rate": plan.rate,
        "duration": plan.duration,
        "ramp": plan.ramp,
        "concurrency": plan.concurrency,
        "talk_ms": plan.talk_ms,
        "at": at.isoformat(),
        "target": setup.target or "lab",
        "faults": [{**asdict(f), "kind": f.kind.value} for f in plan.faults],
        "carriers": [list(c) for c in plan.carriers],
    }
    return Report(
        plan=plan_dict,
        series=series,
        faults=[r.as_dict() for r in injector.records] if injector else [],
        failed_calls=failed,
        distribution=compare(predicted, observed),
        groups=groups,
        notes=notes,
        outages=outages,
    )


def _failed_calls(
    setup: Setup,
    at: datetime,
    runs: list[CallerRun],
    rows: list[list[StatRow]],
    start: float,
    faults: Sequence[Fault],
    bridge_lines: list[str],
    stays: Sequence[QueueStay] = (),
) -> list[FailedCallReport]:
    """Every call a SIPp caller aborted, judged over its life from placement to failure."""
    plan, config = setup.plan, setup.config
    router = Router(config)
    failed: list[FailedCallReport] = []
    for run_, group_rows, g in zip(runs, rows, plan.groups, strict=True):
        try:
            text = run_.error_file.read_text(errors="replace")
        except OSError:
            continue
        for fc in parse_error_log(text):
            if fc.epoch - start < -5:
                continue  # not this run's
            span = call_span(fc, group_rows, start, talk_s=plan.talk_ms / 1000)
            targets = _target_sites(router, config, g, at, span.placed)
            fault, saveable, why = classify(span, g.site, targets, faults)
            abandoned = False
            if saveable:
                waited = abandoned_in_queue(router, config, g, span, stays, at, faults)
                if waited is not None:
                    saveable, abandoned, why = False, True, waited
            failed.append(
                FailedCallReport(
                    span.failed,
                    g.label,
                    fc.call_id,
                    fc.cause,
                    fault.label if fault else None,
                    saveable,
                    why,
                    bridge_lines_near(bridge_lines, fc.epoch),
                    placed=span.placed,
                    abandoned=abandoned,
                )
            )
    return sorted(failed, key=lambda f: f.t)


def _target_sites(
    router: Router, config: Config, g: CallerGroup, at: datetime, placed: float
) -> list[str]:
    """Sites the engine would send this group's call to when it was placed, faults aside."""
    decision = decide_at(router, config, g, at, placed, ())
    return [decision.site] if decision.site else []


def out_dir_default() -> Path:
    return Path("loadtest-report") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
