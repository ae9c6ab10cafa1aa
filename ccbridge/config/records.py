"""The `records:` section: how long call records are kept and how reports count them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ccbridge.config.reader import Reader


@dataclass(frozen=True, slots=True)
class RecordsSettings:
    """Retention of the operating record and the report definitions that are a choice."""

    # Records (calls, legs, events, agent activity, closed coverage gaps) older than
    # this many days are purged by the retention job; 0 keeps them for ever.
    retention_days: int = 400
    # Audit rows older than this many days are purged by the same job, the chain kept
    # verifiable (ccbridge/store/audit.py purge_before); 0 keeps them for ever.
    audit_retention_days: int = 400
    purge_interval: float = 3600.0  # seconds between purges
    # A caller who hangs up within this many seconds of queueing is a short abandon:
    # counted apart and left out of the abandon rate and service levels (docs/reports.md).
    short_abandon_s: float = 5.0
    # The interval and agent reports' quarter-hour rollup (reports/rollup.py): a site's
    # local day is rolled once it ended this many seconds ago (records of its last calls
    # come in as they end), by a job every ``rollup_interval`` seconds (0: no job; the
    # reports read raw rows for every day not rolled, so they stay right, only slower).
    rollup_interval: float = 900.0
    rollup_grace: float = 7200.0


def parse_records(r: Reader, v: Any) -> RecordsSettings:
    d = r.mapping(
        v,
        {
            "retention_days",
            "audit_retention_days",
            "purge_interval",
            "short_abandon_s",
            "rollup_interval",
            "rollup_grace",
        },
    )
    return RecordsSettings(
        **r.given(
            d,
            {
                "retention_days": r.integer(0, 36_500),
                "audit_retention_days": r.integer(0, 36_500),
                "purge_interval": r.number(1, 86_400),
                "short_abandon_s": r.number(0, 600),
                "rollup_interval": r.number(0, 86_400),
                "rollup_grace": r.number(0, 7 * 86_400),
            },
        )
    )
