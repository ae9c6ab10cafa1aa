"""The ACL matcher: does a list of ACL patterns grant one permission? Pure, no I/O.

Permissions and patterns are dot-separated segments, e.g. ``ccb.sites.dhaka.drain``.
In a pattern ``*`` matches exactly one segment, ``#`` any number of segments (none
included), ``me`` the caller's own agent (only when the caller is an agent), and a
pattern starting with ``!`` denies: a denial that matches wins over every grant
(wazo-auth's semantics, whose negative ACLs are checked first).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

ONE = "*"
ANY = "#"
ME = "me"
DENY = "!"


@lru_cache(maxsize=4096)
def _segments(text: str) -> tuple[str, ...]:
    return tuple(text.split("."))


def matches(pattern: str, permission: str, me: str | None = None) -> bool:
    """True when ``pattern`` (without its ``!``) covers ``permission``."""
    return _match(_segments(pattern), 0, _segments(permission), 0, me)


def _match(p: tuple[str, ...], i: int, s: tuple[str, ...], j: int, me: str | None) -> bool:
    while i < len(p):
        seg = p[i]
        if seg == ANY:
            # Collapse runs of '#', then try every split point (patterns are short).
            while i < len(p) and p[i] == ANY:
                i += 1
            if i == len(p):
                return True
            return any(_match(p, i, s, k, me) for k in range(j, len(s) + 1))
        if j >= len(s):
            return False
        if seg == ONE or seg == s[j] or (seg == ME and me is not None and s[j] == me):
            i += 1
            j += 1
            continue
        return False
    return j == len(s)


def allowed(acl: Iterable[str], permission: str, me: str | None = None) -> bool:
    """True when some pattern grants ``permission`` and no ``!`` pattern denies it."""
    granted = False
    for pattern in acl:
        if pattern.startswith(DENY):
            if matches(pattern[1:], permission, me):
                return False
        elif not granted and matches(pattern, permission, me):
            granted = True
    return granted


def well_formed(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable ACL string, or None."""
    body = pattern[1:] if pattern.startswith(DENY) else pattern
    if not body:
        return "empty ACL"
    for seg in body.split("."):
        if not seg:
            return f"empty segment in {pattern!r}"
        if seg not in (ONE, ANY) and not all(c.isalnum() or c in "-_{}" for c in seg):
            return f"segment {seg!r} of {pattern!r}: letters, digits, - and _ only"
    return None


def overlaps(pattern: str, template: Sequence[str]) -> bool:
    """True when the pattern could grant some permission of ``template``'s shape (a
    vocabulary entry whose ``{placeholder}`` segments stand for any one segment)."""
    body = pattern[1:] if pattern.startswith(DENY) else pattern
    return _overlap(_segments(body), 0, tuple(template), 0)


def _overlap(p: tuple[str, ...], i: int, t: tuple[str, ...], j: int) -> bool:
    if i == len(p):
        return j == len(t)
    seg = p[i]
    if seg == ANY:
        return any(_overlap(p, i + 1, t, k) for k in range(j, len(t) + 1))
    if j >= len(t):
        return False
    tseg = t[j]
    fits = seg in (ONE, ME) or tseg.startswith("{") or seg == tseg
    return fits and _overlap(p, i + 1, t, j + 1)
