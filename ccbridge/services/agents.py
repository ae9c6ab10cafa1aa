"""Agents: log them in and out of queues and pause them, on the right site, over AMI."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ccbridge.agents import agents_view, memberships
from ccbridge.ami.client import AmiActionError, AmiTimeoutError, SiteDownError
from ccbridge.config.model import Site, queue_name
from ccbridge.logs import ctx
from ccbridge.services.errors import ServiceError
from ccbridge.services.ports import AmiLink, Runtime, connected_link

log = logging.getLogger("ccbridge.services.agents")

# Asterisk's replies that mean "already as you asked": the operations are idempotent.
_ALREADY = ("already there", "not there")


def interface(agent: str) -> str:
    """The queue member interface of an agent's phone."""
    return f"PJSIP/{agent}"


@dataclass(frozen=True, slots=True)
class Membership:
    """What a login or logout changed: the agent's queues at one site."""

    agent: str
    site: str
    queues: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PauseChange:
    agent: str
    site: str
    paused: bool
    reason: str
    queues: tuple[str, ...] | None  # None: every queue of the agent at that site


class AgentService:
    """Queue membership and pause of agents at each site, through the site's AMI link."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def agents(self) -> list[dict[str, Any]]:
        """One entry per agent with each site it is a member at (see agents.agents_view)."""
        return agents_view(self._rt.state, self._rt.agents)

    async def login(
        self, agent: str, site: str, queues: Sequence[str], penalty: int = 0
    ) -> Membership:
        """Add the agent's phone to ``queues`` at ``site``, unpaused."""
        where = self._agent_at(agent, site)
        wanted = self._queues(where, queues)
        link = self._link(where.name)
        for q in wanted:
            fields = {
                "Queue": q,
                "Interface": interface(agent),
                "MemberName": agent,
                "Penalty": str(penalty),
                "Paused": "false",
            }
            await _send(link, where.name, "QueueAdd", fields)
        log.info("agent login", extra=ctx(agent=agent, site=where.name, queues=",".join(wanted)))
        return Membership(agent, where.name, wanted)

    async def logout(
        self, agent: str, site: str | None = None, queues: Sequence[str] | None = None
    ) -> Membership:
        """Remove the agent from ``queues`` (default: every queue it is in) at ``site``
        (default: the one site it is logged in at)."""
        where = self._agent_at(agent, site) if site is not None else self._only_site(agent)
        link = self._link(where.name)
        if queues is None:
            wanted = tuple(sorted(memberships(self._rt.state, agent, where.name)))
        else:
            wanted = self._queues(where, queues)
        for q in wanted:
            await _send(
                link, where.name, "QueueRemove", {"Queue": q, "Interface": interface(agent)}
            )
        self._rt.agents.forget(where.name, interface(agent))
        log.info("agent logout", extra=ctx(agent=agent, site=where.name, queues=",".join(wanted)))
        return Membership(agent, where.name, wanted)

    async def pause(
        self,
        agent: str,
        paused: bool,
        *,
        site: str | None = None,
        queues: Sequence[str] | None = None,
        reason: str = "",
    ) -> PauseChange:
        """Pause (or unpause) the agent in ``queues`` (default: all of them) at ``site``."""
        where = self._agent_at(agent, site) if site is not None else self._only_site(agent)
        wanted = self._queues(where, queues) if queues is not None else None
        link = self._link(where.name)
        fields = {"Interface": interface(agent), "Paused": "true" if paused else "false"}
        if reason:
            fields["Reason"] = reason
        # Without queues, one QueuePause covers every queue of the interface at that site.
        targets: Sequence[str | None] = wanted or [None]
        for q in targets:
            await _send(link, where.name, "QueuePause", {**fields, **({"Queue": q} if q else {})})
        log.info(
            "agent paused" if paused else "agent unpaused",
            extra=ctx(agent=agent, site=where.name, reason=reason),
        )
        return PauseChange(agent, where.name, paused, reason, wanted)

    # -- lookups ------------------------------------------------------------------------

    def _agent_at(self, agent: str, site_name: str) -> Site:
        try:
            site = self._rt.config.site(site_name)
        except KeyError:
            raise ServiceError(
                "no-such-site", f"no site named {site_name!r}", site=site_name
            ) from None
        if agent not in {a.name for a in site.agents}:
            raise ServiceError(
                "no-such-agent",
                f"agent {agent!r} has no phone (PJSIP endpoint) at site {site.name}",
                agent=agent,
                site=site.name,
            )
        return site

    def _only_site(self, agent: str) -> Site:
        """Without a site: the one site the agent is logged in at."""
        config, state = self._rt.config, self._rt.state
        found = [s for s in config.sites if memberships(state, agent, s.name)]
        if len(found) == 1:
            return found[0]
        if not found and not any(agent == a.name for s in config.sites for a in s.agents):
            raise ServiceError(
                "no-such-agent", f"agent {agent!r} has no phone at any site", agent=agent
            )
        where = ", ".join(s.name for s in found) or "no site"
        raise ServiceError(
            "site-required", f"agent {agent!r} is logged in at {where}: give 'site'", field="site"
        )

    def _queues(self, site: Site, queues: Sequence[str]) -> tuple[str, ...]:
        known = {queue_name(o.service, lang) for o in site.offerings for lang in o.languages}
        unknown = sorted(set(queues) - known)
        if unknown:
            raise ServiceError(
                "no-such-queue",
                f"site {site.name} has no queue {', '.join(unknown)} "
                f"(it has {', '.join(sorted(known))})",
                queues=unknown,
            )
        return tuple(dict.fromkeys(queues))

    def _link(self, site: str) -> AmiLink:
        # Checked before anything is sent or forgotten (a logout forgets the mirror's).
        return connected_link(self._rt.links, site)


async def _send(link: AmiLink, site: str, action: str, fields: dict[str, str]) -> None:
    try:
        # QueueAdd's reply is not a list; panoramisk 1.4 hangs unless told so.
        await link.action(action, fields, as_list=False)
    except AmiActionError as exc:
        message = str(exc.response.get("Message", ""))
        if any(a in message.lower() for a in _ALREADY):
            return
        if "not dynamic" in message.lower():
            raise ServiceError(
                "static-member",
                f"{fields.get('Interface')} is a static member of {fields.get('Queue')} at "
                f"{site} (queues.conf): it cannot be logged out",
                site=site,
            ) from None
        raise ServiceError("ami-error", f"{site}: {action} failed: {message}", site=site) from None
    except SiteDownError:
        raise ServiceError("site-down", f"site {site} is not connected", site=site) from None
    except AmiTimeoutError:
        raise ServiceError(
            "ami-timeout", f"site {site} did not answer {action}", site=site
        ) from None
