"""The agent's desk: live supervision (ChanSpy), transfer, hold and conference of a call.

Every operation checks everything it can before it sends anything (the call is known,
live and with an agent; its site and, for a supervisor elsewhere, the supervisor's site
answer AMI; a trunk exists): a refused request leaves no supervisor ringing and no
caller dropped. Which site acts is the one holding the agent's leg of the call.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from ccbridge import variables as v
from ccbridge.access.audit import AuditEvent
from ccbridge.ami.client import AmiActionError, AmiError, AmiTimeoutError, SiteDownError
from ccbridge.config.model import TrunkKind, queue_name
from ccbridge.desk import modes
from ccbridge.desk.live import CallState, LiveCall, SpySession, SpyState
from ccbridge.logs import ctx, mask_number
from ccbridge.routing.outbound import plan_outbound
from ccbridge.routing.state import ewt
from ccbridge.services.calls import E164
from ccbridge.services.errors import ServiceError
from ccbridge.services.ports import ActionFields, AmiLink, Runtime, connected_link
from ccbridge.services.recordsread import RecordsReader

log = logging.getLogger("ccbridge.services.desk")

CALL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
SESSION_ID = re.compile(r"[0-9a-f]{16}")
NOTE_MAX = 200
SUPERVISOR_RING_S = 30
NUMBER_RING_S = 45


@dataclass(frozen=True, slots=True)
class SessionView:
    id: str
    call_id: str
    site: str
    mode: str
    supervisor: str
    supervisor_site: str
    state: str

    @classmethod
    def of(cls, s: SpySession) -> SessionView:
        return cls(s.id, s.call_id, s.site, s.mode, s.supervisor, s.supervisor_site, s.state.value)


@dataclass(frozen=True, slots=True)
class Transfer:
    call_id: str
    from_site: str
    kind: str  # queue | remote | number
    site: str
    queue: str | None
    trunks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeskChange:
    call_id: str
    site: str
    held: bool
    room: str | None
    party: str | None = None


class DeskService:
    """Supervision sessions and call moves, over the AMI link of the agent's site."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._tasks: set[asyncio.Task[None]] = set()
        runtime.desk.on_session_end = self._session_ended
        # With records on, the store says which calls ended beyond the few the desk
        # remembers (desk/live.py ENDED_WITH_STORE).
        self._records = RecordsReader(runtime) if runtime.config.store.enabled else None

    async def close(self) -> None:
        if self._records is not None:
            await self._records.close()

    # -- lookups ------------------------------------------------------------------------
    async def call(self, call_id: str) -> LiveCall:
        """A live call by ID: 404 ``no-such-call`` (never seen, or garbage), 409
        ``call-ended`` (ended lately, or the record store has its end)."""
        if not CALL_ID.fullmatch(call_id):
            raise ServiceError("no-such-call", "no such call", call=call_id[:64])
        found = self._rt.desk.get(call_id)
        if found is not None:
            return found
        if self._rt.desk.ended_at(call_id) is not None or await self._ended_in_store(call_id):
            raise ServiceError("call-ended", f"call {call_id} has ended", call=call_id)
        raise ServiceError("no-such-call", f"no live call {call_id}", call=call_id)

    async def _ended_in_store(self, call_id: str) -> bool:
        """The record store has the call with its end (False without records, or with
        the store unreadable: the desk then knows only what it remembers)."""
        if self._records is None:
            return False
        from sqlalchemy import select

        from ccbridge.store.schema import calls

        query = select(calls.c.ended_at).where(calls.c.call_id == call_id)
        try:
            async with self._records.read() as engine, engine.connect() as conn:
                ended = (await conn.execute(query)).scalar_one_or_none()
        except ServiceError:
            return False
        return ended is not None

    async def connected(self, call_id: str) -> LiveCall:
        """A call talking with an agent now (409 ``call-not-connected`` otherwise)."""
        found = await self.call(call_id)
        if (
            found.state is not CallState.CONNECTED
            or not found.agent_channel
            or not found.caller_channel
        ):
            raise ServiceError(
                "call-not-connected",
                f"call {call_id} is {found.state.value}, not with an agent",
                call=call_id,
                state=found.state.value,
            )
        return found

    def phone_sites(self, endpoint: str) -> list[str]:
        """The sites where ``endpoint`` is a configured phone (sites.X.agents)."""
        return [s.name for s in self._rt.config.sites if any(a.name == endpoint for a in s.agents)]

    def session(self, session_id: str) -> SpySession:
        s = self._rt.desk.sessions.get(session_id) if SESSION_ID.fullmatch(session_id) else None
        if s is None:
            raise ServiceError("no-such-session", "no such supervision session")
        if s.state is SpyState.ENDED:
            raise ServiceError(
                "session-ended", f"the session has ended ({s.ended_reason})", session=s.id
            )
        return s

    # -- supervision --------------------------------------------------------------------
    async def monitor(
        self, call_id: str, mode: str, supervisor: str, *, actor: str, scope: tuple[str, ...]
    ) -> SessionView:
        """Ring the supervisor's phone from the agent's site and connect it to ChanSpy on
        the agent's channel in ``mode``. ``scope``: the sites the asker answers for (empty:
        all); the supervisor's phone must be at one of them."""
        if mode not in modes.MODES:
            raise ServiceError(
                "invalid-field", f"'mode' must be one of {', '.join(modes.MODES)}", field="mode"
            )
        where = self._phone_sites_of(supervisor)
        call = await self.connected(call_id)
        sup_site = call.site if call.site in where else where[0]
        if scope and sup_site not in scope:
            raise ServiceError(
                "forbidden", f"{actor} may not supervise from {sup_site}", site=sup_site
            )
        link = self._link(call.site)
        sup_site, dial = self._ring(call, supervisor)
        if self._rt.desk.session_of_supervisor(supervisor) is not None:
            raise ServiceError(
                "supervisor-busy",
                f"{supervisor} is already supervising a call",
                supervisor=supervisor,
            )
        sid = uuid.uuid4().hex[:16]
        channel_id = f"ccbspy-{sid}"
        session = SpySession(
            sid,
            call.call_id,
            call.site,
            mode,
            supervisor,
            sup_site,
            channel_id,
            actor,
            self._rt.clock.time(),
        )
        await self._send(
            link,
            call.site,
            "Originate",
            {
                "Channel": dial,
                "ChannelId": channel_id,
                "Application": "ChanSpy",
                "Data": f"{call.agent_channel},{modes.chanspy_options(mode)}",
                "CallerID": f'"{mode}" <{call.agent or "agent"}>',
                "Timeout": str(SUPERVISOR_RING_S * 1000),
                "Async": "true",
            },
            originate=True,
        )
        self._rt.desk.add_session(session)
        self._audit(
            actor, "supervise.start", call, {"mode": mode, "supervisor": supervisor, "session": sid}
        )
        log.info(
            "supervision started",
            extra=ctx(call=call.call_id, site=call.site, mode=mode, supervisor=supervisor),
        )
        return SessionView.of(session)

    async def change_mode(self, session_id: str, mode: str, *, actor: str) -> SessionView:
        """Switch a running session's mode: ChanSpy's DTMF 4/5/6 (option ``d``), received
        on the spy channel (AMI PlayDTMF with Receive)."""
        if mode not in modes.MODES:
            raise ServiceError(
                "invalid-field", f"'mode' must be one of {', '.join(modes.MODES)}", field="mode"
            )
        s = self.session(session_id)
        if s.state is not SpyState.ACTIVE:
            raise ServiceError(
                "session-not-active", "the supervisor has not answered yet", session=s.id
            )
        link = self._link(s.site)
        await self._send(
            link,
            s.site,
            "PlayDTMF",
            {
                "Channel": s.spyer_channel or s.channel_id,
                "Digit": modes.MODE_DIGIT[mode],
                "Duration": "120",
                "Receive": "true",
            },
        )
        before, s.mode = s.mode, mode
        self._audit_session(actor, "supervise.mode", s, {"from": before, "to": mode})
        return SessionView.of(s)

    async def stop_monitor(self, session_id: str, *, actor: str) -> SessionView:
        """End a session: hang up the spy channel (the supervisor's phone)."""
        s = self.session(session_id)
        link = self._link(s.site)
        try:
            await self._send(link, s.site, "Hangup", {"Channel": s.spyer_channel or s.channel_id})
        except ServiceError as exc:
            # Gone already (the supervisor hung up a moment ago): the session is over.
            if exc.error_id != "ami-error":
                raise
        self._rt.desk.end_session(s, f"stopped by {actor}")
        return SessionView.of(s)

    def _session_ended(self, s: SpySession) -> None:
        self._audit_session(s.actor, "supervise.end", s, {"reason": s.ended_reason or ""})
        log.info("supervision ended", extra=ctx(call=s.call_id, site=s.site, reason=s.ended_reason))
        if s.cancel_ringing:
            task = asyncio.get_running_loop().create_task(self._stop_ringing(s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _stop_ringing(self, s: SpySession) -> None:
        """No supervisor left ringing for a call that is gone."""
        link = self._rt.links.get(s.site)
        if link is None or not link.connected:
            return  # the site is down: its Asterisk ends the ring at the originate timeout
        try:
            await self._send(link, s.site, "Hangup", {"Channel": s.channel_id})
        except ServiceError as exc:
            # answered and gone a moment ago (ChanSpy's S option then ends it anyway)
            log.info("supervisor's ring not stopped: %s", exc, extra=ctx(call=s.call_id))

    # -- transfer -----------------------------------------------------------------------
    async def transfer(
        self,
        call_id: str,
        *,
        service: str | None,
        language: str | None = None,
        site: str | None = None,
        note: str | None = None,
        number: str | None = None,
        actor: str,
    ) -> Transfer:
        """Move the caller from the agent to ``service``'s queue (in ``language``, at
        ``site``) with the call's context, or (``number``) out over a carrier: a blind
        transfer (AMI BlindTransfer of the agent's channel into ccb-transfer)."""
        config = self._rt.config
        if (service is None) == (number is None):
            raise ServiceError("missing-field", "give 'service' (or 'number' for a blind transfer)")
        if note is not None and (len(note) > NOTE_MAX or not note.isprintable()):
            raise ServiceError(
                "invalid-field",
                f"'note' must be one line of at most {NOTE_MAX} characters",
                field="note",
            )
        if number is not None and not E164.fullmatch(number):
            raise ServiceError(
                "invalid-field", "'number' must be E.164, like +919812345678", field="number"
            )
        if service is not None and service not in config.services:
            raise ServiceError("invalid-field", f"no service {service!r}", field="service")
        if language is not None and language not in config.languages:
            raise ServiceError("invalid-field", f"no language {language!r}", field="language")
        if site is not None and site not in {s.name for s in config.sites}:
            raise ServiceError("no-such-site", f"no site named {site!r}", site=site)
        call = await self.connected(call_id)
        link = self._link(call.site)
        setvars: dict[str, str] = {}
        if call.ivr_path:
            setvars[f"__{v.IVR_PATH}"] = encode(" ".join(call.ivr_path))
        if note:
            setvars[f"__{v.NOTE}"] = encode(note)
        if number is not None:
            plan = plan_outbound(config, self._rt.state, number, call.site)
            if not plan.possible:
                raise ServiceError(
                    "no-carrier", f"site {call.site} has no carrier for this number",
                    reasons=list(plan.reasons),
                )  # fmt: skip
            kind, target, queue, trunks = v.XFER_NUMBER_KIND, call.site, None, plan.trunks
            setvars[v.XFER_NUMBER] = number
            setvars[v.CALLER_ID] = plan.caller_id or ""
            setvars[v.RING_SECONDS] = str(NUMBER_RING_S)
        else:
            assert service is not None
            lang = language or self._language_of(call)
            if lang is None:
                raise ServiceError(
                    "missing-field", "give 'language' (the call's is unknown)", field="language"
                )
            queue = queue_name(service, lang)
            target = site or self._best_site(queue, call.site)
            if queue not in self._queues(target):
                raise ServiceError(
                    "no-such-queue",
                    f"site {target} has no queue {queue!r}",
                    queue=queue,
                    site=target,
                )
            if target == call.site:
                kind, trunks = v.XFER_QUEUE, ()
            else:
                self._link(target)
                trunks = self._trunks(call.site, target)
                if not trunks:
                    raise ServiceError(
                        "no-trunk", f"no usable trunk from {call.site} to {target}", site=target
                    )
                kind = v.XFER_REMOTE
                setvars[v.RING_SECONDS] = ""
            setvars[v.QUEUE] = queue
            setvars[v.SERVICE] = service
            setvars[v.LANGUAGE] = lang
        if trunks:
            setvars[v.TRUNK_COUNT] = str(len(trunks))
            setvars.update({v.trunk_var(i): t for i, t in enumerate(trunks, 1)})
        assert call.caller_channel is not None and call.agent_channel is not None
        for name, value in setvars.items():
            await self._send(
                link,
                call.site,
                "Setvar",
                {"Channel": call.caller_channel, "Variable": name, "Value": value},
            )
        await self._send(
            link,
            call.site,
            "BlindTransfer",
            {"Channel": call.agent_channel, "Context": "ccb-transfer", "Exten": kind},
        )
        call.state = CallState.MOVING
        done = Transfer(call.call_id, call.site, kind, target, queue, tuple(trunks))
        details: dict[str, Any] = {"kind": kind, "site": target, "queue": queue}
        if number is not None:
            details["number"] = mask_number(number)
        self._audit(actor, "call.transfer", call, details)
        log.info(
            "call transferred", extra=ctx(call=call.call_id, site=call.site, kind=kind, to=target)
        )
        return done

    def _language_of(self, call: LiveCall) -> str | None:
        for s in self._rt.config.sites:
            for o in s.offerings:
                for lang in o.languages:
                    if queue_name(o.service, lang) == call.queue:
                        return lang
        return None

    def _queues(self, site: str) -> set[str]:
        s = self._rt.config.site(site)
        return {queue_name(o.service, lang) for o in s.offerings for lang in o.languages}

    def _best_site(self, queue: str, here: str) -> str:
        """Without a site: here if it has the queue, else the up site with the shortest
        expected wait for it (ties: config order)."""
        if queue in self._queues(here):
            return here
        state = self._rt.state
        best: tuple[float, int, str] | None = None
        for i, s in enumerate(self._rt.config.sites):
            live = state.sites.get(s.name)
            if queue not in self._queues(s.name) or live is None or not live.up or live.drained:
                continue
            key = (ewt(live.queues.get(queue)), i, s.name)
            best = key if best is None or key < best else best
        if best is None:
            raise ServiceError("no-such-queue", f"no site up takes {queue!r}", queue=queue)
        return best[2]

    # -- hold and conference (the call's desk room, a ConfBridge) -------------------------
    async def hold(self, call_id: str, *, actor: str) -> DeskChange:
        """Music on hold for the caller: the call moves into its desk room (first time),
        the agent steps out of it; the caller, alone there, hears music."""
        call = await self._roomable(call_id)
        link = self._link(call.site)
        if call.held:
            return DeskChange(call.call_id, call.site, True, call.room)
        assert call.agent_channel is not None
        if call.room is None:
            await self._enter_room(link, call, "ccb-room-hold")
        else:
            await self._redirect(link, call, call.agent_channel, "ccb-room-hold")
        call.held = True
        self._audit(actor, "call.hold", call, None)
        return DeskChange(call.call_id, call.site, True, call.room)

    async def unhold(self, call_id: str, *, actor: str) -> DeskChange:
        call = await self._roomable(call_id)
        link = self._link(call.site)
        if not call.held or call.room is None:
            return DeskChange(call.call_id, call.site, False, call.room)
        assert call.agent_channel is not None
        await self._redirect(link, call, call.agent_channel, "ccb-room-agent")
        call.held = False
        self._audit(actor, "call.unhold", call, None)
        return DeskChange(call.call_id, call.site, False, call.room)

    async def conference(self, call_id: str, party: str, *, actor: str) -> DeskChange:
        """A three-way call: the caller and the agent in the call's desk room, and
        ``party``'s phone (a second agent or a supervisor, at any site) rung into it."""
        self._phone_sites_of(party)  # an unknown phone: 404 before the call's state
        call = await self._roomable(call_id)
        link = self._link(call.site)
        _, dial = self._ring(call, party)
        if call.room is None:
            await self._enter_room(link, call, "ccb-room-agent")
        room = call.room
        assert room is not None
        await self._send(
            link,
            call.site,
            "Originate",
            {
                "Channel": dial,
                # through the dialplan (not Application=ConfBridge): its h extension
                # ends the caller's call when the party leaves the caller alone
                "Context": "ccb-room-agent",
                "Exten": room,
                "Priority": "1",
                "Variable": f"{v.ROOM}={room}",
                "CallerID": f'"conference" <{call.agent or "agent"}>',
                "Timeout": str(SUPERVISOR_RING_S * 1000),
                "Async": "true",
            },
            originate=True,
        )
        self._audit(actor, "call.conference", call, {"party": party})
        return DeskChange(call.call_id, call.site, call.held, call.room, party)

    async def _roomable(self, call_id: str) -> LiveCall:
        return await self.connected(call_id)

    def _phone_sites_of(self, phone: str) -> list[str]:
        where = self.phone_sites(phone)
        if not where:
            raise ServiceError("no-such-phone", f"no phone {phone!r} at any site", phone=phone)
        return where

    def _ring(self, call: LiveCall, phone: str) -> tuple[str, str]:
        """Where ``phone`` is rung from the call's site (its site, and the dial string:
        direct, or over the first usable inter-site trunk to the phone's site); its site's
        Asterisk must be up and a trunk usable, checked before anything is dialled."""
        where = self._phone_sites_of(phone)
        site = call.site if call.site in where else where[0]
        if site == call.site:
            return site, f"PJSIP/{phone}"
        self._link(site)
        trunks = self._trunks(call.site, site)
        if not trunks:
            raise ServiceError("no-trunk", f"no usable trunk from {call.site} to {site}", site=site)
        return site, f"PJSIP/{v.PHONE_PREFIX}{phone}@{trunks[0]}"

    async def _enter_room(self, link: AmiLink, call: LiveCall, agent_context: str) -> None:
        """The caller into a new desk room, the agent (in the same action) to
        ``agent_context``: into the room, or out of it for a hold."""
        assert call.agent_channel is not None and call.caller_channel is not None
        room = self._new_room(call)
        await self._set_room(link, call, room)
        await self._send(
            link,
            call.site,
            "Redirect",
            {
                "Channel": call.caller_channel,
                "Context": "ccb-room",
                "Exten": room,
                "Priority": "1",
                "ExtraChannel": call.agent_channel,
                "ExtraContext": agent_context,
                "ExtraExten": room,
                "ExtraPriority": "1",
            },
        )
        call.room = room

    def _new_room(self, call: LiveCall) -> str:
        # A room is named by the bridge (never by a caller-controlled string): 'r' and hex.
        return "r" + uuid.uuid4().hex[:12]

    async def _set_room(self, link: AmiLink, call: LiveCall, room: str) -> None:
        for channel in (call.caller_channel, call.agent_channel):
            assert channel is not None
            await self._send(
                link, call.site, "Setvar", {"Channel": channel, "Variable": v.ROOM, "Value": room}
            )

    async def _redirect(self, link: AmiLink, call: LiveCall, channel: str, context: str) -> None:
        assert call.room is not None
        await self._send(
            link,
            call.site,
            "Redirect",
            {"Channel": channel, "Context": context, "Exten": call.room, "Priority": "1"},
        )

    # -- plumbing ---------------------------------------------------------------------------
    def _link(self, site: str) -> AmiLink:
        return connected_link(self._rt.links, site)

    def _trunks(self, site: str, peer: str) -> tuple[str, ...]:
        """Inter-site trunks from ``site`` to ``peer`` in order, usable ones first."""
        if site == peer:
            return ()
        now = [t for t in self._rt.trunks_now() if t.trunk.kind is TrunkKind.INTERSITE]
        mine = sorted(
            (t for t in now if t.trunk.site == site and t.trunk.peer_site == peer),
            key=lambda t: (not t.usable, t.trunk.order),
        )
        return tuple(t.trunk.name for t in mine)

    async def _send(
        self,
        link: AmiLink,
        site: str,
        action: str,
        fields: ActionFields,
        *,
        originate: bool = False,
    ) -> None:
        try:
            await link.action(action, fields, as_list=False)
        except SiteDownError:
            raise ServiceError("site-down", f"site {site} is not connected", site=site) from None
        except AmiTimeoutError:
            raise ServiceError(
                "ami-timeout", f"site {site} did not answer {action}", site=site
            ) from None
        except (AmiError, TimeoutError) as exc:
            why = exc.response.get("Message", "") if isinstance(exc, AmiActionError) else exc
            if originate:
                raise ServiceError(
                    "originate-failed", f"{site}: {action} failed: {why}", site=site
                ) from None
            raise ServiceError("ami-error", f"{site}: {action} failed: {why}", site=site) from None

    def _audit(
        self, actor: str, action: str, call: LiveCall, details: dict[str, Any] | None
    ) -> None:
        self._rt.audit(
            AuditEvent(
                actor, "bridge", action, "ok", f"call:{call.call_id}", call.site, None, details
            )
        )

    def _audit_session(
        self, actor: str, action: str, s: SpySession, details: dict[str, Any]
    ) -> None:
        full = {"session": s.id, "mode": s.mode, "supervisor": s.supervisor, **details}
        self._rt.audit(
            AuditEvent(actor, "bridge", action, "ok", f"call:{s.call_id}", s.site, None, full)
        )


def encode(text: str) -> str:
    """``text`` as letters, digits and %XX of its UTF-8 bytes: safe in a channel variable,
    a SIP header and the dialplan's FILTER(0-9A-Za-z%), read back with URIDECODE."""
    return "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"%{b:02X}" for b in text.encode()
    )
