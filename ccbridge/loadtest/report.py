"""The load test's report: one JSON document, the same as Markdown, and the chart beside them."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ccbridge.loadtest.placement import CallSpan
from ccbridge.loadtest.stats import FailedCall, Series
from ccbridge.loadtest.timeline import SITE_DOWN, Fault
from ccbridge.logs import mask_number


@dataclass(frozen=True, slots=True)
class FailedCallReport:
    """A failed call, why it failed, and whether the bridge could have saved it."""

    t: float  # seconds since the run started, when it failed
    group: str
    call_id: str
    cause: str
    fault: str | None  # the fault active while the call was up
    saveable: bool
    why: str
    bridge_log: tuple[str, ...] = ()  # bridge warnings/errors within a second or two
    placed: float | None = None  # the latest it can have been placed (placement.py)
    abandoned: bool = False  # the caller gave up waiting in a queue (queuelog.py)

    def as_dict(self) -> dict[str, object]:
        return {
            "t": round(self.t, 3),
            "placed": None if self.placed is None else round(self.placed, 3),
            "group": self.group,
            "call_id": self.call_id,
            "cause": self.cause,
            "fault": self.fault,
            "saveable": self.saveable,
            "abandoned_in_queue": self.abandoned,
            "why": self.why,
            "bridge_log": list(self.bridge_log),
        }


def overlaps(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 <= b1 and b0 <= a1


def classify(
    call: CallSpan,
    receiving_site: str,
    target_sites: Sequence[str],
    faults: Sequence[Fault],
    grace: float = 5.0,
) -> tuple[Fault | None, bool, str]:
    """(fault, saveable, why) for a call placed at ``call.placed`` that failed at ``call.failed``.

    The call is judged over its whole life, [placed, failed] (``placed`` being the latest
    it can have been placed, so the interval never reaches outside the real call), against
    the faults as they ran (started to recovered). Unsaveable, and only then:

    - its receiving site (where the carrier delivered it) was killed or hung at any
      moment of that interval: the call was set up on, or delivered to, a dead PBX;
    - a site the engine sends it to was killed or hung after it was placed and before it
      failed: it was in progress there when that site went down.

    Every other failure counts against the bridge, since it exists to survive them: one
    during a bridge restart, a drain, a dead carrier, another site's failure, a call
    placed at a site that had already come back, or one with no fault at all. A call
    sent to a target site that was hung but not yet noticed by the bridge counts as
    saveable too (the AMI ping deadline is not modelled). ``grace`` only widens the time
    after each fault in which that fault is named as the failure's context.
    """
    for f in faults:
        if f.kind not in SITE_DOWN:
            continue
        if f.target == receiving_site and overlaps(call.placed, call.failed, f.at, f.ends):
            why = f"its receiving site {f.target} was down ({f.kind.value}) while the call was up"
            return f, False, why
        if f.target in target_sites and call.placed <= f.at <= call.failed:
            return f, False, f"in progress at {f.target} when it went down ({f.kind.value})"
    active = None
    for f in faults:
        if overlaps(call.placed, call.failed, f.at, f.ends + grace):
            active = f
    if active is not None:
        return active, True, f"failed during {active.label}: the bridge should have saved it"
    return None, True, "no fault active: a failure of the system under test"


_TS = re.compile(r"^ts=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")


def bridge_lines_near(lines: Sequence[str], epoch: float, within: float = 2.0) -> tuple[str, ...]:
    """The bridge's warning and error lines logged within ``within`` s of ``epoch``."""
    out = []
    for line in lines:
        if "level=warning" not in line and "level=error" not in line:
            continue
        m = _TS.match(line)
        if m is None:
            continue
        ts = datetime.fromisoformat(m.group(1) + "+00:00").timestamp()
        if abs(ts - epoch) <= within:
            out.append(line[:300])
    return tuple(out[:5])


@dataclass
class Report:
    """Everything a run measured; ``as_dict`` is the JSON written to report.json."""

    plan: dict[str, Any]
    series: Series
    faults: list[dict[str, object]]
    failed_calls: list[FailedCallReport]
    distribution: list[dict[str, object]]
    groups: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outages: list[dict[str, object]] = field(default_factory=list)  # loadtest/outage.py

    @property
    def misrouted(self) -> int:
        """Calls that did not end where the routing engine predicted.

        The distribution's rows are (site, queue) counts, so a call is not traced on its
        own: each call predicted for a row and missing from it observed went elsewhere
        (another queue, or no queue at all). SIPp calls it successful all the same when
        its BYE was answered; it counts against the run.
        """
        return sum(
            max(0, int(str(r["predicted"])) - int(str(r["observed"]))) for r in self.distribution
        )

    @property
    def totals(self) -> dict[str, int]:
        created, ok, failed = self.series.totals
        saveable = sum(1 for f in self.failed_calls if f.saveable)
        abandoned = sum(1 for f in self.failed_calls if f.abandoned)
        return {
            "placed": created,
            "successful": ok,
            "failed": failed,
            "failed_saveable": saveable,
            "failed_abandoned_in_queue": abandoned,
            "failed_unsaveable": len(self.failed_calls) - saveable - abandoned,
            "failed_unexplained": max(0, failed - len(self.failed_calls)),
            "misrouted": self.misrouted,
        }

    @property
    def passed(self) -> bool:
        """The run's verdict: calls placed, no failure the bridge could have saved, and
        every call where the engine said it would go."""
        t = self.totals
        return t["placed"] > 0 and t["failed_saveable"] == 0 and t["misrouted"] == 0

    def summary_line(self) -> str:
        """The one line `ccbridge loadtest` prints: the run's counts and its verdict."""
        t = self.totals
        return (
            f"placed {t['placed']}, successful {t['successful']}, failed {t['failed']} "
            f"({t['failed_saveable']} saveable), not where predicted {t['misrouted']}: "
            f"{'PASS' if self.passed else 'FAIL'}"
        )

    @property
    def mean_rate(self) -> float:
        """Calls placed per second from the first call placed to the last."""
        busy = [s.t for s in self.series.seconds if s.created]
        if not busy:
            return 0.0
        return sum(s.created for s in self.series.seconds) / (busy[-1] - busy[0] + 1)

    @property
    def peak_rate(self) -> float:
        secs = [s.created for s in self.series.seconds]
        return float(max(secs)) if secs else 0.0

    def as_dict(self) -> dict[str, object]:
        rts = [s.response_ms for s in self.series.seconds if s.response_ms is not None]
        return {
            "plan": self.plan,
            "totals": self.totals,
            "mean_calls_per_s": round(self.mean_rate, 2),
            "peak_calls_per_s": self.peak_rate,
            "response_ms_mean": round(sum(rts) / len(rts), 2) if rts else None,
            "response_ms_max_second": round(max(rts), 2) if rts else None,
            "faults": self.faults,
            "failed_calls": [f.as_dict() for f in self.failed_calls],
            "distribution": self.distribution,
            "groups": self.groups,
            "bridge_outages": self.outages,
            "seconds": [
                {
                    "t": s.t,
                    "created": s.created,
                    "successful": s.successful,
                    "failed": s.failed,
                    "open": s.current,
                    "response_ms": round(s.response_ms, 2) if s.response_ms else None,
                }
                for s in self.series.seconds
            ],
            "notes": self.notes,
        }

    def markdown(self, chart_name: str | None = "report.png") -> str:
        d = self.as_dict()
        t = self.totals
        p = self.plan
        out = [
            "# ccbridge load test",
            "",
            f"Rate {p['rate']} calls/s for {p['duration']} s (ramp {p['ramp']} s), "
            f"talk {p['talk_ms']} ms, {len(self.groups)} caller groups, clock {p['at']}.",
            "",
            f"**{self.summary_line()}**",
            "",
            "| placed | successful | failed | saveable failures | abandoned in queue "
            "| not where predicted | mean / peak calls/s | mean INVITE->200 ms |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {t['placed']} | {t['successful']} | {t['failed']} | {t['failed_saveable']} "
            f"| {t['failed_abandoned_in_queue']} | {t['misrouted']} "
            f"| {self.mean_rate:.1f} / {self.peak_rate:.0f} | {d['response_ms_mean']} |",
            "",
        ]
        if chart_name:
            out += [f"![calls/s, failures, response time]({chart_name})", ""]
        out += ["## Faults", ""]
        if self.faults:
            out += ["| kind | target | planned at s | started s | recovered s | notes |"]
            out += ["|---|---|---:|---:|---:|---|"]
            for f in self.faults:
                raw = f.get("notes")
                notes = "; ".join(str(n) for n in (raw if isinstance(raw, list) else [])) + (
                    f" ERROR {f['error']}" if f.get("error") else ""
                )
                out.append(
                    f"| {f['kind']} | {f['target']} | {f['planned_at']} | {_n(f['started'])} "
                    f"| {_n(f['recovered'])} | {notes} |"
                )
        else:
            out.append("None.")
        out += ["", "## Where calls went: routing engine prediction vs observed", ""]
        out += [
            "Observed = QueueCallerJoin events per site and queue over AMI, and calls the"
            " run's SIPp carriers answered at a trunk's far end (CcbTrunkResult ANSWER).",
            "",
        ]
        out += ["| site | queue | predicted | observed | diff |", "|---|---|---:|---:|---:|"]
        for r in self.distribution:
            out.append(
                f"| {r['site']} | {r['queue']} | {r['predicted']} | {r['observed']} "
                f"| {int(str(r['diff'])):+d} |"
            )
        if self.outages:
            out += ["", "## While the bridge was down: routed as the bridge would have?", ""]
            out += [
                "Calls placed during each stop-bridge fault, predicted by the routing engine"
                " at their second, against the queue their caller number joined.",
                "",
                "| outage s | calls | as the bridge would | share |",
                "|---|---:|---:|---:|",
            ]
            for o in self.outages:
                out.append(
                    f"| {o['from_s']}-{o['to_s']} | {o['calls']} | {o['as_bridge_would']} "
                    f"| {o['share']} |"
                )
            out += ["", "| outage s | caller | site | queue | predicted | observed |"]
            out += ["|---|---|---|---|---:|---:|"]
            for o in self.outages:
                rows = o["rows"]
                for r in rows if isinstance(rows, list) else []:
                    out.append(
                        f"| {o['from_s']}-{o['to_s']} | {mask_number(str(r['caller']))} "
                        f"| {r['site']} | {r['queue']} | {r['predicted']} | {r['observed']} |"
                    )
        out += ["", "## Caller groups", ""]
        out += ["| group | rate | placed | successful | failed |", "|---|---:|---:|---:|---:|"]
        for g in self.groups:
            out.append(
                f"| {g['label']} | {g['rate']} | {g['placed']} | {g['successful']} "
                f"| {g['failed']} |"
            )
        out += ["", f"## Failed calls ({len(self.failed_calls)})", ""]
        if self.failed_calls:
            out += ["| placed s | failed s | group | cause | fault | saveable | why |"]
            out += ["|---:|---:|---|---|---|---|---|"]
            for fc in self.failed_calls[:500]:
                out.append(
                    f"| {_n(fc.placed)} | {fc.t:.1f} | {fc.group} | {fc.cause} | {fc.fault or ''} "
                    f"| {_verdict(fc)} | {fc.why} |"
                )
        else:
            out.append("None.")
        if self.notes:
            out += ["", "## Notes", "", *[f"- {n}" for n in self.notes]]
        return "\n".join(out) + "\n"

    def write(self, out_dir: Path, chart: bool = True) -> dict[str, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
        paths["json"].write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        chart_name = None
        if chart:
            from ccbridge.loadtest.chart import draw

            paths["png"] = out_dir / "report.png"
            draw(self, paths["png"])
            chart_name = paths["png"].name
        paths["markdown"].write_text(self.markdown(chart_name))
        return paths


def _verdict(fc: FailedCallReport) -> str:
    if fc.abandoned:
        return "no (abandoned in queue)"
    return "yes" if fc.saveable else "no"


def _n(x: object) -> str:
    return f"{x:.1f}" if isinstance(x, float) else ("" if x is None else str(x))


def from_sipp(failures: Sequence[FailedCall]) -> list[FailedCall]:
    """Failures in time order (several SIPp processes' logs merged)."""
    return sorted(failures, key=lambda f: f.epoch)
