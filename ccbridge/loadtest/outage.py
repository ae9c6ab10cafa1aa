"""While the bridge was down: how many calls went where the bridge would have sent them.

For each bridge outage of a run (a ``stop-bridge`` fault as it ran), the calls placed
from its start to its recovery are predicted one by one by the routing engine at their
second (``predict.decide_at``: what the bridge would have decided had it been up), and
compared with the queue each caller number was observed joining (QueueCallerJoin over
AMI) from the outage's start to its recovery plus ``JOIN_SLACK_S``. Calls of one caller
number to several numbers are told apart by where they went only: the matched count is,
per (caller, site, queue), the smaller of predicted and observed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

from ccbridge.config.model import Config
from ccbridge.loadtest.options import CallerGroup
from ccbridge.loadtest.predict import Key, decide_at, key
from ccbridge.loadtest.queuelog import QueueStay
from ccbridge.loadtest.timeline import Fault, FaultKind
from ccbridge.routing.engine import Router

JOIN_SLACK_S = 3.0  # a call placed just before recovery joins its queue a moment later

CallerKey = tuple[str, Key]  # (caller number, (site, queue))


def outage_routing(
    config: Config,
    groups: Sequence[CallerGroup],
    placed: Mapping[int, Mapping[int, int]],
    at: datetime,
    faults: Sequence[Fault],
    stays: Sequence[QueueStay],
) -> list[dict[str, object]]:
    """One summary per bridge outage in ``faults`` (times relative to the run's start)."""
    router = Router(config)
    out = []
    for f in faults:
        if f.kind is not FaultKind.STOP_BRIDGE:
            continue
        predicted: Counter[CallerKey] = Counter()
        for gi, per_second in placed.items():
            g = groups[gi]
            for t, n in per_second.items():
                if n > 0 and f.at <= t < f.ends:
                    # what the bridge would have decided, had it been up (sites' faults too)
                    d = decide_at(router, config, g, at, t, [x for x in faults if x is not f])
                    predicted[(g.caller, key(d))] += n
        observed: Counter[CallerKey] = Counter(
            (s.caller, (s.site, s.queue)) for s in stays if f.at <= s.joined < f.ends + JOIN_SLACK_S
        )
        matched = sum(min(n, observed.get(k, 0)) for k, n in predicted.items())
        total = sum(predicted.values())
        rows = [
            {
                "caller": caller,
                "site": site,
                "queue": queue,
                "predicted": predicted.get((caller, (site, queue)), 0),
                "observed": observed.get((caller, (site, queue)), 0),
            }
            for caller, (site, queue) in sorted(set(predicted) | set(observed))
        ]
        summary: dict[str, object] = {
            "from_s": round(f.at, 1),
            "to_s": round(f.ends, 1),
            "calls": total,
            "as_bridge_would": matched,
            "share": round(matched / total, 3) if total else None,
            "rows": rows,
        }
        out.append(summary)
    return out
