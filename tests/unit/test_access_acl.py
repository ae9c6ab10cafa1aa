"""The ACL matcher against a regex oracle (wazo-auth's own approach: a pattern becomes a
regular expression), and its laws: denial wins, grants only add, wildcards' reach."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from ccbridge.access.acl import allowed, matches, overlaps, well_formed

SEG = st.sampled_from(["ccb", "sites", "dhaka", "bangalore", "read", "drain", "a7", "me"])
PSEG = st.one_of(SEG, st.just("*"), st.just("#"))
PERMISSION = st.lists(SEG, min_size=1, max_size=6).map(".".join)
PATTERN = st.lists(PSEG, min_size=1, max_size=6).map(".".join)
ME = st.one_of(st.none(), st.sampled_from(["a7", "dhaka", "me"]))


def oracle(pattern: str, permission: str, me: str | None) -> bool:
    """An independent definition: '#' = any run of whole segments (none included)."""
    parts = []
    for seg in pattern.split("."):
        if seg == "#":
            parts.append(r"(?:[^.]+(?:\.[^.]+)*)?")
        elif seg == "*":
            parts.append(r"[^.]+")
        elif seg == "me" and me is not None:
            parts.append(f"(?:me|{re.escape(me)})" if me != "me" else "me")
        else:
            parts.append(re.escape(seg))
    # Dots between parts are optional only around an empty '#'.
    rx = ""
    for i, p in enumerate(parts):
        if i == 0:
            rx = p
        elif p.endswith(")?") or rx.endswith(")?"):
            rx += r"\.?" + p
        else:
            rx += r"\." + p
    if not re.fullmatch(rx, permission):
        return False
    # The optional dots may glue segments; confirm with a segment-wise reading.
    return _segmentwise(pattern.split("."), permission.split("."), me)


def _segmentwise(p: list[str], s: list[str], me: str | None) -> bool:
    if not p:
        return not s
    if p[0] == "#":
        return any(_segmentwise(p[1:], s[k:], me) for k in range(len(s) + 1))
    if not s:
        return False
    ok = p[0] in ("*", s[0]) or (p[0] == "me" and me is not None and s[0] == me)
    return ok and _segmentwise(p[1:], s[1:], me)


@given(PATTERN, PERMISSION, ME)
def test_matches_agrees_with_the_oracle(pattern: str, permission: str, me: str | None) -> None:
    assert matches(pattern, permission, me) == oracle(pattern, permission, me)


@given(PERMISSION)
def test_a_permission_matches_itself_and_hash_matches_all(permission: str) -> None:
    assert matches(permission, permission)
    assert matches("#", permission)
    assert allowed(["#"], permission)


@given(st.lists(SEG, min_size=2, max_size=6), st.integers(0, 5), SEG)
def test_star_is_exactly_one_segment(segs: list[str], i: int, other: str) -> None:
    i %= len(segs)
    pattern = ".".join([*segs[:i], "*", *segs[i + 1 :]])
    assert matches(pattern, ".".join([*segs[:i], other, *segs[i + 1 :]]))
    assert not matches(pattern, ".".join(segs[:i] + segs[i + 1 :]))  # none
    assert not matches(pattern, ".".join([*segs[:i], other, other, *segs[i + 1 :]]))  # two


@given(st.lists(PATTERN, max_size=5), st.lists(PATTERN, max_size=3), PERMISSION, ME)
def test_a_denial_that_matches_wins(
    grants: list[str], denials: list[str], permission: str, me: str | None
) -> None:
    acl = grants + ["!" + d for d in denials]
    if any(matches(d, permission, me) for d in denials):
        assert not allowed(acl, permission, me)
        assert not allowed([*acl, "#"], permission, me)  # not even everything grants it
    else:
        assert allowed(acl, permission, me) == any(matches(g, permission, me) for g in grants)


@given(st.lists(PATTERN, max_size=5), PATTERN, PERMISSION, ME)
def test_grants_only_add_and_denials_only_remove(
    acl: list[str], extra: str, permission: str, me: str | None
) -> None:
    before = allowed(acl, permission, me)
    assert allowed([*acl, extra], permission, me) >= before
    assert allowed([*acl, "!" + extra], permission, me) <= before


def test_me_is_the_callers_own_agent_only() -> None:
    acl = ["ccb.agents.me.#"]
    assert allowed(acl, "ccb.agents.a7.pause", me="a7")
    assert not allowed(acl, "ccb.agents.a8.pause", me="a7")
    assert not allowed(acl, "ccb.agents.a7.pause", me=None)  # not an agent: me is nobody
    assert allowed(["ccb.agents.*.read", "!ccb.agents.me.read"], "ccb.agents.a8.read", "a7")
    assert not allowed(["ccb.agents.*.read", "!ccb.agents.me.read"], "ccb.agents.a7.read", "a7")


def test_hash_reaches_any_depth_but_not_beside() -> None:
    assert allowed(["ccb.sites.dhaka.#"], "ccb.sites.dhaka.drain")
    assert allowed(["ccb.sites.dhaka.#"], "ccb.sites.dhaka.agents.a7.read")
    assert not allowed(["ccb.sites.dhaka.#"], "ccb.sites.bangalore.drain")
    assert not allowed(["ccb.sites.dhaka.#"], "ccb.sites.dhakax.drain")
    assert allowed(["ccb.#.read"], "ccb.sites.dhaka.read")
    assert not allowed(["ccb.#.read"], "ccb.sites.dhaka.drain")


def test_well_formed_and_overlaps() -> None:
    assert well_formed("ccb.sites.{site}.read") is None
    assert well_formed("!ccb.numbers.read") is None
    assert well_formed("") is not None and well_formed("ccb..x") is not None
    assert well_formed("ccb.sites.dha ka.read") is not None
    assert overlaps("ccb.sites.*.drain", ("ccb", "sites", "{site}", "drain"))
    assert overlaps("ccb.#", ("ccb", "sites", "{site}", "drain"))
    assert not overlaps("ccb.site.*.drain", ("ccb", "sites", "{site}", "drain"))
