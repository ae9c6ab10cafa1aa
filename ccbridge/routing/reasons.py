"""The routing vocabulary: decision outcomes, reasons and skip reasons, each defined once.

The values are stable machine ids: they reach the dialplan (``CCB_REASONS``), the HTTP
API, logs and metric labels, so a member is never renamed, only added. Every set is a
closed enum, which keeps the metric label values bounded.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AFTER_HOURS_REASON", "HOME_REASON", "Outcome", "Reason", "Skip"]


class Outcome(StrEnum):
    """What happens to the call."""

    QUEUE = "queue"  # a queue at a site takes it
    AFTER_HOURS = "after_hours"  # no site open: the after-hours action (maybe a site)
    REJECT = "reject"  # the request names no known number, service or site


class Skip(StrEnum):
    """Why one site was passed over (``Decision.skipped``, per site)."""

    SITE_DOWN = "site_down"  # AMI link down or not answering Ping
    DRAINED = "drained"  # maintenance: no new calls
    HOLDOFF = "site_holdoff"  # recovered, still within routing.site_holdoff
    NO_TRUNK = "no_trunk"  # no trunk from the receiving site to it
    CLOSED_HOURS = "closed_hours"  # outside its weekly or special hours
    HOLIDAY = "holiday"  # a national holiday its schedule observes
    CLOSED_DATE = "closed_date"  # one of its schedule's closed dates
    UNSTAFFED = "unstaffed"  # open, but nobody logged in to the queue
    UNSERVED = "unserved"  # after hours: the designated site does not offer the service


class Reason(StrEnum):
    """Why a decision is what it is (``Decision.reasons``, in the order they applied).

    The home site's own state has ``home_*`` reasons, one per cause, so a report can
    tell load overflow (``home_site_busy`` then ``overflow_ewt``) from failover
    (``home_down``, ``home_drained``, ``home_holdoff``, ``home_no_trunk``) and from
    schedule hand-over (``home_closed``, ``home_holiday``, ``home_closed_date``). Other
    sites passed over are in ``Decision.skipped``, never here.
    """

    # rejections
    UNKNOWN_DID = "unknown_did"
    UNKNOWN_SERVICE = "unknown_service"
    UNKNOWN_SITE = "unknown_site"
    # the call's language (exactly one of the first three, first in the tuple)
    IVR_LANGUAGE = "ivr_language"
    CALLER_PREFIX = "caller_prefix"
    DID_COUNTRY = "did_country"
    LANGUAGE_UNSERVED = "language_unserved"  # resolved language served nowhere: fell back
    # the number's home site
    HOME_SITE_OPEN = "home_site_open"  # home open and below the thresholds: takes the call
    HOME_SITE_BUSY = "home_site_busy"  # home open but its wait or queue is over the thresholds
    HOME_UNSERVED = "home_unserved"  # home offers the service in another language only
    HOME_DOWN = "home_down"
    HOME_DRAINED = "home_drained"
    HOME_HOLDOFF = "home_holdoff"
    HOME_NO_TRUNK = "home_no_trunk"
    HOME_CLOSED = "home_closed"
    HOME_HOLIDAY = "home_holiday"
    HOME_CLOSED_DATE = "home_closed_date"
    HOME_UNSTAFFED = "home_unstaffed"
    # how the site was picked among the open ones
    OVERFLOW_EWT = "overflow_ewt"  # the busy home lost to another site's expected wait
    LEAST_LOADED = "least_loaded"  # lowest expected-wait score, no load overflow involved
    STICKY = "sticky"  # the previous pick, within the hysteresis of the best
    SCHEDULE_ONLY = "schedule_only"  # no queue state yet: picked by hours alone
    # no site open
    AFTER_HOURS = "after_hours"
    AFTER_HOURS_SITE_DOWN = "after_hours_site_down"  # the designated site cannot take it
    AFTER_HOURS_DRAINED = "after_hours_drained"
    AFTER_HOURS_HOLDOFF = "after_hours_site_holdoff"
    AFTER_HOURS_NO_TRUNK = "after_hours_no_trunk"
    AFTER_HOURS_UNSERVED = "after_hours_unserved"


# The home site's reason for each way a site can be passed over.
HOME_REASON: dict[Skip, Reason] = {
    Skip.SITE_DOWN: Reason.HOME_DOWN,
    Skip.DRAINED: Reason.HOME_DRAINED,
    Skip.HOLDOFF: Reason.HOME_HOLDOFF,
    Skip.NO_TRUNK: Reason.HOME_NO_TRUNK,
    Skip.CLOSED_HOURS: Reason.HOME_CLOSED,
    Skip.HOLIDAY: Reason.HOME_HOLIDAY,
    Skip.CLOSED_DATE: Reason.HOME_CLOSED_DATE,
    Skip.UNSTAFFED: Reason.HOME_UNSTAFFED,
    Skip.UNSERVED: Reason.HOME_UNSERVED,
}

# Why the after-hours designated site could not take the call.
AFTER_HOURS_REASON: dict[Skip, Reason] = {
    Skip.SITE_DOWN: Reason.AFTER_HOURS_SITE_DOWN,
    Skip.DRAINED: Reason.AFTER_HOURS_DRAINED,
    Skip.HOLDOFF: Reason.AFTER_HOURS_HOLDOFF,
    Skip.NO_TRUNK: Reason.AFTER_HOURS_NO_TRUNK,
    Skip.UNSERVED: Reason.AFTER_HOURS_UNSERVED,
}
