"""The channel variables and route kinds shared by the dialplan templates and the bridge."""

from __future__ import annotations

PREFIX = "CCB_"

# FastAGI route names: the path of the dialplan's AGI URL (agi://HOST:PORT/NAME?...) and
# the key of the bridge's handler for it; also the `route` label of the FastAGI metrics.
AGI_ROUTE = "route"  # every inbound call asks where to go (extensions.conf.j2)
AGI_LOOKUP = "lookup"  # an IVR self-service lookup (ivr.conf.j2)
AGI_HEALTH = "health"  # the AGI guard's health check (dialplans/haproxy.cfg.j2)
AGI_ROUTES = (AGI_ROUTE, AGI_LOOKUP, AGI_HEALTH)


# Set by the bridge's `route` FastAGI handler; read by dialplans/extensions.conf.j2.
ROUTE = "CCB_ROUTE"  # one of the ROUTE_* kinds below; empty means "use the fallback"
SITE = "CCB_SITE"  # the site that will take the call
QUEUE = "CCB_QUEUE"  # the queue at that site, e.g. orders-bn
SERVICE = "CCB_SERVICE"
LANGUAGE = "CCB_LANGUAGE"
TRUNK_COUNT = "CCB_TRUNK_COUNT"  # how many CCB_TRUNK_n follow
TRUNK_PREFIX = "CCB_TRUNK_"  # CCB_TRUNK_1 .. CCB_TRUNK_n: inter-site trunks in dial order
REASONS = "CCB_REASONS"  # space-separated machine-readable reasons (MSet splits at commas)
AFTER_HOURS = "CCB_AFTER_HOURS"  # voicemail | callback | closed
RING_SECONDS = "CCB_RING_SECONDS"  # Dial timeout per trunk; empty: none (inter-site)
CALLER_ID = "CCB_CALLER_ID"  # outbound: the caller ID presented to the customer

# Set by the dialplan itself.
AGI_URL = "CCB_AGI_URL"  # a global: the first FastAGI URL to try (then CCB_AGI_URL_2, ...)
AGI_STARTED = "CCB_AGI_T0"  # ms since the epoch when the first FastAGI try started
DID = "CCB_DID"  # the number the caller dialled, carried across sites in a SIP header
# One ID per call across every site it passes through (issue 12): set (inherited, as
# __CCB_CALLID) by the entry site before anything else, carried over inter-site trunks
# in HEADER_CALLID and kept by the receiving site; manager.conf's channelvars puts it in
# every channel event. Format ``SITE:EPOCH.MICROS:SEQ`` (ccbridge/records/callid.py): the
# entry site and the arrival instant read from the ID alone, so a record from any site
# (or after a restart) names the call's row without the entry site's state.
CALLID = "CCB_CALLID"


def new_callid(site: str) -> str:
    """The dialplan expression of the call ID a call gets where it enters (CALLID,
    ccbridge/records/callid.py): this site, the instant to the microsecond, and the
    channel's sequence number (the last dot-separated field of its uniqueid) so two calls
    in one microsecond differ. Rendered by extensions.conf.j2, written by the held-route
    publisher into the ccb-inbound extensions it completes."""
    return site + ":${STRFTIME(,UTC,%s.%6q)}:${CUT(UNIQUEID,.,${FIELDQTY(UNIQUEID,.)})}"


FALLBACK = "CCB_FALLBACK"  # 1 when the static fallback route took the call
IVR_LANGUAGE = "CCB_IVR_LANGUAGE"  # the language picked in an IVR menu
IVR_SERVICE = "CCB_IVR_SERVICE"  # the service picked in an IVR menu (the number's until then)
IVR_TRIES = "CCB_IVR_TRIES"  # invalid keys and timeouts so far in the current menu
LOOKUP_DIGITS = "CCB_LOOKUP_DIGITS"  # what the caller keyed in for a self-service lookup

# Set by the bridge's `lookup` FastAGI handler (dialplans/ivr.conf.j2 reads them).
LOOKUP_RESULT = "CCB_LOOKUP_RESULT"  # LOOKUP_OK or LOOKUP_FAILED; empty: the bridge is down
LOOKUP_ANSWER = "CCB_LOOKUP_ANSWER"  # one of the lookup's configured answers, or "default"
LOOKUP_SAY = "CCB_LOOKUP_SAY"  # digits to read back with SayDigits, may be empty
LOOKUP_OK = "ok"
LOOKUP_FAILED = "failed"
LOOKUP_DEFAULT_ANSWER = "default"
EVENT_IVR = "CcbIvr"  # UserEvent: Menu, Step (option key | invalid | timeout | final), Site
EVENT_LOOKUP = "CcbLookup"  # UserEvent: Lookup, Result, Answer, Site

# SIP headers that carry the call's context from the receiving site to the target site.
HEADER_DID = "X-CCB-DID"
HEADER_LANGUAGE = "X-CCB-Lang"
HEADER_CALLID = "X-CCB-CallID"  # CALLID: one call ID across sites

# Call recording (issue 14, ccbridge/recording/). The bridge's `route` handler decides
# per call (config `recording:`, sampled for a percentage) and sets RECORD (inherited);
# a call the bridge did not decide for (held route, static fallback, a peer that sent no
# header) is sampled by the queue step with the site's rendered policy. "1" records, "0"
# does not. The answering agent's channel runs ccb-record-start (Queue()'s gosub):
# MixMonitor with `b` (both sides, only while bridged) into the site's spool folder as
# RECORDING_PART, renamed to the finished name by MixMonitor's own command when the file
# is closed, so a file without the suffix is complete (the bridge takes only those).
RECORD = "CCB_RECORD"
RECORD_YES = "1"
RECORD_NO = "0"
HEADER_RECORD = "X-CCB-Rec"  # RECORD carried to the site that answers
RECORDING_PART = ".part.wav"  # the suffix while MixMonitor writes
RECORDING_DONE = ".wav"  # the suffix once MixMonitor closed the file
RECORDING_SEP = "@"  # between the name's fields: call ID (':' as '+'), site, uniqueid
RECORDING_ID = "CCB_RECORDING_ID"  # MixMonitor's `i()`: its ID on the agent's channel

# AMI events no part of the bridge reads and every call makes several of (one Newexten per
# dialplan priority, one VarSet per variable set): the rendered manager.conf disables them
# (`disabledevents`), so Asterisk does not build them for any session. Measured by
# instructions: BENCHMARKS §1e. The bridge's event bus refuses a subscription to them.
AMI_DISABLED_EVENTS = ("Newexten", "VarSet")
# The CEL event types the rendered cel.conf sends over AMI (its `events=`): the call record
# uses LINKEDID_END alone (ccbridge/records/machine.py), which closes a call's leg at a
# site. Every other type would cost Asterisk work on every channel and the bridge a parse.
CEL_LINKEDID_END = "LINKEDID_END"
CEL_EVENTS = (CEL_LINKEDID_END,)
# The Stasis message types the rendered stasis.conf declines (never built): VarSet's source.
STASIS_DECLINED = ("ast_channel_varset_type",)

# AMI UserEvents the dialplan sends to the bridge.
EVENT_TRUNK_RESULT = "CcbTrunkResult"  # Trunk, DialStatus, Site: one per trunk attempt
# For the call record (ccbridge/records/): what only the dialplan knows. Every UserEvent
# carries the channel's CCB_CALLID (manager.conf channelvars) besides its own fields.
EVENT_QUEUE_EXIT = "CcbQueueExit"  # Queue, Status (QUEUESTATUS), Site: Queue() returned
EVENT_FALLBACK = "CcbFallback"  # Did, Site: the static fallback route took the call
EVENT_AFTER_HOURS = "CcbAfterHours"  # Action (voicemail | callback | closed), Site
EVENT_REJECT = "CcbReject"  # Did, Site: the call was refused (no service for it)
# The satisfaction survey's score (issue 12; the survey dialplan sends it after the agent
# hangs up): CallID (${CCB_CALLID}), Score 1-5, Site.
EVENT_SURVEY = "CCBSurvey"

# The agent's desk (issue 14, ccbridge/desk/): supervision, transfer, hold, conference.
# Set by the bridge on the caller's channel (AMI Setvar) before it moves the call on:
NOTE = "CCB_NOTE"  # a transfer's free-text note, %-encoded by the bridge (desk.encode)
IVR_PATH = "CCB_IVR_PATH"  # the caller's IVR path ("menu:step menu:step"), %-encoded
XFER_NUMBER = "CCB_XFER_NUMBER"  # a blind transfer's E.164 number (over carrier trunks)
ROOM = "CCB_ROOM"  # the call's desk room (a ConfBridge) once it is held or conferenced
ON_HOLD = "CCB_ON_HOLD"  # 1 on the agent's channel while it is out of the room (hold)
HEADER_NOTE = "X-CCB-Note"  # NOTE across sites
HEADER_IVR_PATH = "X-CCB-IVR"  # IVR_PATH across sites
# The extension prefix another site dials over an inter-site trunk to ring a phone of this
# site (a supervisor's, for live supervision): ccb-from-site has one per endpoint.
PHONE_PREFIX = "phone."
# Extensions of the ccb-transfer context (the kinds of transfer).
XFER_QUEUE = "queue"  # a queue of this site (CCB_QUEUE)
XFER_REMOTE = "remote"  # a queue at another site over CCB_TRUNK_1..n (ccb-dispatch's)
XFER_NUMBER_KIND = "number"  # a number over carrier trunks CCB_TRUNK_1..n
EVENT_TRANSFER = "CcbTransfer"  # Kind, Target (queue or masked nothing), Site: a transfer began
EVENT_HOLD = "CcbHold"  # Site: the desk put the caller on hold (the record's hold time)
EVENT_UNHOLD = "CcbUnhold"  # Site: the caller is back with the agent

# Routes held in each site's dialplan globals by the bridge (ccbridge/heldroutes.py,
# routing/held.py), set over AMI (Setvar with no channel) and read by the dialplan:
# CCB_H_<did>_<lang> per number and language, and three for the whole table.
HELD_GLOBAL_PREFIX = "CCB_H_"  # CCB_H_+918000000001_hi: ROUTE_ID/NEXT_ID/until/next_until/...
# CCB_HS_<did>_<service>_<lang>: the same value for an IVR caller of <did> who picked
# <service> (routing/held.py menu_services): no FastAGI for any service choice.
HELD_SERVICE_PREFIX = "CCB_HS_"
HELD_KEY = "CCB_HK"  # the name of the global ccb-route's slow path reads for this call
HELD_HEARTBEAT = "CCB_HELD_HB"  # the PBX's epoch when the bridge last confirmed the whole table
HELD_FRESH_UNTIL = "CCB_HELD_FRESH"  # heartbeat + fresh_age: the bridge counts as alive before
# The fresh path: the bridge replaces this priority of each number's ccb-inbound
# extensions (one per caller-ID pattern, i.e. per language) with the held route itself
# (routing/held.py fresh_steps, AMI DialplanExtensionAdd with Replace); the rendered one
# asks the bridge. A `dialplan reload` or a restart puts the rendered one back.
HELD_INBOUND_CONTEXT = "ccb-inbound"
HELD_ROUTE_PRIORITY = 2  # after the call ID's Set, which the bridge writes too (held.py)
HELD_NUMBER_LANGUAGE_PREFIX = "CCB_HL_"  # rendered CCB_HL_<did>=hi: the number's own language
HELD_VALUE = "CCB_HV"  # the value ccb-route read for this call (its slow paths)
HELD_SEP = "/"  # between the fields of a held value
HELD_ID_SEP = "."  # between the names of a route id (an extension of ccb-held)
HELD_LANGUAGE = "CCB_HELD_LANGUAGE"  # the language ccb-route resolved for the held lookup
HELD_SOURCE = "CCB_HELD"  # fallback: a held route took the call after the bridge failed
HELD_FRESH = "fresh"  # the bridge was alive: no FastAGI round trip
HELD_FALLBACK = "fallback"  # the bridge did not answer: the last known route
# Their language field is Lang: every UserEvent already carries the channel's Language.
EVENT_HELD_ROUTE = "CcbHeldRoute"  # Did, Lang, IvrService, Source, Site: a held route took the call
EVENT_HELD_REJECTED = "CcbHeldRejected"  # Did, Lang, IvrService, Reason, Site: a held value refused
HELD_REJECT_INVALID = "invalid"  # not a value the bridge writes for this site
HELD_REJECT_EXPIRED = "expired"  # past both of its validity windows

# Route kinds (values of CCB_ROUTE).
ROUTE_QUEUE = "queue"  # a queue at the receiving site
ROUTE_REMOTE = "remote"  # a queue at another site, over CCB_TRUNK_1..n
ROUTE_AFTER_HOURS = "after_hours"
ROUTE_REJECT = "reject"

ROUTE_KINDS = (ROUTE_QUEUE, ROUTE_REMOTE, ROUTE_AFTER_HOURS, ROUTE_REJECT)


# The SIP edge's HTTP path (dialplans/kamailio.cfg.j2, ccbridge/edge/rpc.py) where the
# bridge POSTs a site whose AMI link it lost: the calls in setup there go to the next site.
EDGE_SITE_LOST = "/site-lost"


def agi_url(host: str, route: str) -> str:
    """``agi://127.0.0.1:4573/route``: the URL the dialplan calls for ``route``."""
    return f"agi://{host}/{route}"


def hagi_url(name: str, route: str) -> str:
    """``hagi://bridges.example/route``: Asterisk looks up SRV ``_agi._tcp.NAME`` and
    tries the targets by priority and weight (a port in the URL would turn SRV off)."""
    return f"hagi://{name}/{route}"


def agi_url_global(index: int) -> str:
    """The dialplan global holding the ``index``-th URL to try (1: CCB_AGI_URL)."""
    return AGI_URL if index == 1 else f"{AGI_URL}_{index}"


def trunk_var(index: int) -> str:
    """CCB_TRUNK_1 for index 1: the dialplan reads them as ${CCB_TRUNK_${i}}."""
    return f"{TRUNK_PREFIX}{index}"


def all_names() -> frozenset[str]:
    """Every fixed CCB_ variable name (the numbered trunk variables are checked apart)."""
    return frozenset(
        v
        for k, v in globals().items()
        if k.isupper()
        and isinstance(v, str)
        and v.startswith(PREFIX)
        and v != PREFIX
        and k
        not in (
            "TRUNK_PREFIX",
            "HELD_GLOBAL_PREFIX",
            "HELD_SERVICE_PREFIX",
            "HELD_NUMBER_LANGUAGE_PREFIX",
        )
    )
