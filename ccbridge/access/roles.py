"""The permission vocabulary, the built-in roles, and the ACL a principal holds. Pure.

A role is a list of ACL patterns that may name ``{site}`` (one copy per site the user is
responsible for) and ``{site_agent}`` (one copy per configured agent of those sites).
Roles defined in the config (``access.roles``) take the same form; ``ccbridge check``
refuses one that names a permission outside ``VOCABULARY`` or a site that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ccbridge.access.acl import allowed, overlaps, well_formed

# Every permission an endpoint may declare, with what it guards. ``{site}``, ``{agent}``
# and ``{mode}`` stand for one segment: a site's or an agent's name, a supervision mode.
VOCABULARY: Mapping[str, str] = {
    "ccb.sites.{site}.read": "a site's live state: sites, queues, trunks, agents",
    "ccb.sites.{site}.drain": "drain or undrain a site",
    "ccb.agents.{agent}.read": "an agent's state",
    "ccb.agents.{agent}.login": "log an agent in or out of queues",
    "ccb.agents.{agent}.pause": "pause or unpause an agent",
    "ccb.agents.{agent}.calls.read": "the calls an agent took (an agent's own calls)",
    "ccb.agents.{agent}.calls.control": "transfer, hold and conference the calls an agent is on",
    "ccb.calls.originate": "place an outbound call or callback",
    "ccb.calls.{site}.read": "call records that touched a site",
    "ccb.numbers.read": "caller numbers unmasked in answers and CSV",
    "ccb.reports.{site}.read": "a site's reports",
    "ccb.reports.{site}.export": "a site's reports as CSV",
    "ccb.recordings.{site}.read": "a site's recordings: list and play back (audited)",
    "ccb.routes.preview": "preview a routing decision",
    # live supervision of a call (issue 14) from a phone at a site the user answers for;
    # {mode}: listen, whisper or barge (ccbridge/desk/modes.py)
    "ccb.supervise.{mode}": "listen to a call, whisper to its agent, or barge in",
    "ccb.staffing.read": "staffing and coverage",
    "ccb.audit.read": "the audit trail",
    "ccb.cluster.read": "the bridges alive, their sites and sessions",
    "ccb.deploys.write": "apply a deployment",
}
TEMPLATES: tuple[tuple[str, ...], ...] = tuple(tuple(p.split(".")) for p in VOCABULARY)


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    acl: tuple[str, ...]
    description: str = ""

    @property
    def scoped(self) -> bool:
        """A role whose ACL names ``{site}`` needs the sites a user is responsible for."""
        return any("{site" in p for p in self.acl)


BUILTIN: Mapping[str, Role] = {
    r.name: r
    for r in (
        Role("admin", ("ccb.#",), "everything"),
        Role(
            "supervisor",
            (
                "ccb.sites.{site}.#",
                "ccb.agents.{site_agent}.#",
                "ccb.calls.{site}.read",
                "ccb.reports.{site}.#",
                "ccb.recordings.{site}.read",
                "ccb.supervise.*",
                "ccb.numbers.read",
                "ccb.routes.preview",
                "ccb.staffing.read",
            ),
            "the sites they are responsible for: live state, drain, their agents (and "
            "their calls: transfer, hold, conference), calls, reports, recordings, live "
            "supervision from those sites' phones",
        ),
        Role(
            "agent",
            ("ccb.agents.me.#",),
            "their own state: login, logout, pause, their own calls",
        ),
        Role(
            "viewer",
            (
                "ccb.sites.*.read",
                "ccb.agents.*.read",
                "ccb.agents.*.calls.read",
                "ccb.calls.*.read",
                "ccb.reports.*.read",
                "ccb.routes.preview",
                "ccb.staffing.read",
                "ccb.cluster.read",
                "!ccb.numbers.read",
            ),
            "read-only, caller numbers masked",
        ),
        Role(
            "service",
            ("ccb.calls.{site}.read", "ccb.sites.{site}.read", "ccb.agents.{site_agent}.read"),
            "an integration (a CRM): reads the calls and state of its sites",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a user, a service account, or the config's bootstrap token."""

    name: str
    role: str
    acl: tuple[str, ...]
    agent: str | None = None  # the agent ``me`` stands for
    sites: tuple[str, ...] = ()
    token_id: str | None = None
    kind: str = "user"  # user / service / bootstrap

    def can(self, permission: str) -> bool:
        return allowed(self.acl, permission, self.agent)

    def sites_with(self, template: str, sites: Iterable[str]) -> list[str]:
        """The sites among ``sites`` for which ``template.format(site=...)`` is granted."""
        return [s for s in sites if self.can(template.format(site=s))]


@dataclass(frozen=True, slots=True)
class SiteAgents:
    """The configured agents of each site: what ``{site_agent}`` expands to."""

    by_site: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def expand(role: Role, sites: Sequence[str], site_agents: SiteAgents) -> tuple[str, ...]:
    """The role's ACL for a user responsible for ``sites``."""
    out: list[str] = []
    agents = [a for s in sites for a in site_agents.by_site.get(s, ())]
    for pattern in role.acl:
        if "{site_agent}" in pattern:
            out += [pattern.replace("{site_agent}", a) for a in agents]
        elif "{site}" in pattern:
            out += [pattern.replace("{site}", s) for s in sites]
        else:
            out.append(pattern)
    return tuple(dict.fromkeys(out))


def check_pattern(pattern: str, sites: Iterable[str]) -> str | None:
    """Why a role's ACL pattern is refused (malformed, no such permission, no such site)."""
    why = well_formed(pattern)
    if why is not None:
        return why
    body = pattern.removeprefix("!")
    concrete = body.replace("{site_agent}", "*").replace("{site}", "*")
    if "{" in concrete or "}" in concrete:
        return f"{pattern!r}: only {{site}} and {{site_agent}} may stand for a name"
    segs = concrete.split(".")
    shapes = [t for t in TEMPLATES if overlaps(concrete, t)]
    if not shapes:
        return f"unknown permission {pattern!r} (see ccbridge/access/roles.py VOCABULARY)"
    known = set(sites)
    fixed = segs[: segs.index("#")] if "#" in segs else segs  # positions '#' cannot shift
    for t in shapes:
        for seg, tseg in zip(fixed, t, strict=False):
            if tseg == "{site}" and seg not in ("*", "me") and seg not in known:
                return f"{pattern!r} names site {seg!r}, which is not in sites"
    return None
