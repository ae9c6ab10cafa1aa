"""FastAGI handlers: turn a routing Decision into the channel variables the dialplan reads."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from ccbridge import variables as v
from ccbridge.agi import codec
from ccbridge.agi.codec import AgiCommandError, AgiRequest
from ccbridge.agi.server import Script, ScriptHandler, script
from ccbridge.logs import ctx, mask_number
from ccbridge.routing.engine import CallRequest, Decision
from ccbridge.routing.reasons import Outcome

log = logging.getLogger("ccbridge.route")

Decide = Callable[[CallRequest], Decision]


def decision_variables(decision: Decision, receiving_site: str) -> dict[str, str]:
    """The variables for one decision, in the order the dialplan contract defines them."""
    out = {
        v.SITE: decision.site or "",
        v.QUEUE: decision.queue or "",
        v.SERVICE: decision.service or "",
        v.LANGUAGE: decision.language or "",
        v.REASONS: " ".join(decision.reasons),
    }
    takes_call = decision.site is not None and decision.queue is not None
    if decision.outcome in (Outcome.QUEUE, Outcome.AFTER_HOURS) and takes_call:
        if decision.site == receiving_site:
            out[v.ROUTE] = v.ROUTE_QUEUE
        else:
            out[v.ROUTE] = v.ROUTE_REMOTE
            out[v.TRUNK_COUNT] = str(len(decision.trunks))
            for i, trunk in enumerate(decision.trunks, 1):
                out[v.trunk_var(i)] = trunk
    elif decision.outcome == Outcome.AFTER_HOURS:
        out[v.ROUTE] = v.ROUTE_AFTER_HOURS
        out[v.AFTER_HOURS] = decision.action or "closed"
    else:
        out[v.ROUTE] = v.ROUTE_REJECT
    return out


def call_request(req: AgiRequest, default_site: str | None = None) -> CallRequest:
    """What the dialplan told us: the DID is the extension, the site is in the query."""
    site = req.query.get("site") or default_site or ""
    lang = req.query.get("lang") or None
    service = req.query.get("service") or None
    return CallRequest(
        did=req.extension,
        caller=req.callerid if req.callerid not in ("", "unknown") else "",
        receiving_site=site,
        ivr_language=lang,
        service=service,
        call_id=req.query.get("callid", ""),
        uniqueid=req.uniqueid,
    )


def mset_argument(values: Mapping[str, str]) -> str | None:
    """``A=1,B=2`` for MSet, or None when a value holds a comma (MSet splits at commas)."""
    if any("," in val for val in values.values()):
        return None
    return ",".join(f"{name}={val}" for name, val in values.items())


def set_all(values: Mapping[str, str]) -> Script:
    """Set every variable in one round trip with ``EXEC MSet``, which is also atomic: a
    session cut before the reply leaves CCB_ROUTE empty, so the call takes the fallback.

    Pipelining several SET VARIABLE lines is no option: Asterisk reads AGI commands
    through a buffered stream but polls the socket for more, so they stall (seen in the
    lab). Without MSet (result -2) or with a comma in a value, one SET VARIABLE each,
    CCB_ROUTE last.
    """
    arg = mset_argument(values)
    if arg is not None:
        reply = yield codec.exec_app("MSet", arg)
        if reply.ok and reply.result != -2:
            return
        log.warning("MSet unavailable (%s): setting route variables one by one", reply.raw)
    for name, value in values.items():
        line = codec.set_variable(name, value)
        reply = yield line
        if not reply.ok:
            raise AgiCommandError(line, reply)


def make_route_handler(
    decide: Decide,
    on_decision: Callable[[CallRequest, Decision], None] | None = None,
    record: Callable[[Decision], str] | None = None,
) -> ScriptHandler:
    """``record`` decides whether the call is recorded (v.RECORD, inherited by the agent's
    channel and carried to another site); empty: the dialplan's own policy decides.

    A script: the decision is pure and the session one MSet round trip, so it runs in
    the connection's callbacks with no task (BENCHMARKS.md §2)."""

    def route(request: AgiRequest) -> Script:
        call = call_request(request)
        decision = decide(call)
        if on_decision is not None:
            on_decision(call, decision)
        values = decision_variables(decision, call.receiving_site)
        if record is not None and (rec := record(decision)):
            values[f"__{v.RECORD}"] = rec
        # ROUTE last: the dialplan treats an empty CCB_ROUTE as "take the fallback", so a
        # session cut half-way through leaves the call on the static route, never half-set.
        route_value = values.pop(v.ROUTE)
        values[v.ROUTE] = route_value
        yield from set_all(values)
        log.info(
            "routed",
            extra=ctx(
                did=call.did,
                caller=mask_number(call.caller),
                at=call.receiving_site,
                route=route_value,
                site=decision.site,
                queue=decision.queue,
                reasons=",".join(decision.reasons),
            ),
        )

    return script(route)
