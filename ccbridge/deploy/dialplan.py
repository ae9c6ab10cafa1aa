"""Parse a rendered extensions.conf (and the files it includes) into contexts, extensions and
priorities with their file and line: the model the static checks and the post-check read."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

# A comment that says why a context or extension is entered from outside the dialplan
# (an AMI Originate, a channel the bridge creates): the reachability check accepts it.
ENTRY_MARK = "entry:"
SPECIAL_EXTENSIONS = frozenset({"h", "i", "t", "e", "T", "a", "o"})
NON_DIALPLAN_SECTIONS = frozenset({"general", "globals"})


@dataclass(slots=True)
class Priority:
    number: int
    label: str | None
    app: str
    args: str
    file: str
    line: int


@dataclass(slots=True)
class Extension:
    name: str
    file: str
    line: int
    priorities: list[Priority] = field(default_factory=list)
    reason: str | None = None  # ENTRY_MARK comment on its first line
    cid: str = ""  # exten => NAME/CALLERID: the same name, another extension

    @property
    def key(self) -> str:
        """NAME, or NAME/CALLERID for a caller-ID match (as `dialplan show` lists them)."""
        return f"{self.name}/{self.cid}" if self.cid else self.name

    def labels(self) -> set[str]:
        return {p.label for p in self.priorities if p.label}


@dataclass(slots=True)
class Context:
    name: str
    file: str
    line: int
    extensions: dict[str, Extension] = field(default_factory=dict)
    includes: list[tuple[str, str, int]] = field(default_factory=list)  # (context, file, line)
    reason: str | None = None


@dataclass(slots=True)
class Dialplan:
    contexts: dict[str, Context] = field(default_factory=dict)
    globals: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # name -> value, at
    problems: list[tuple[str, int, str]] = field(default_factory=list)  # file, line, message

    def find(self, context: str, exten: str) -> Extension | None:
        """The extension Asterisk would run for ``exten`` in ``context`` (includes too)."""
        seen: set[str] = set()
        return self._find(context, exten, seen)

    def _find(self, context: str, exten: str, seen: set[str]) -> Extension | None:
        ctx = self.contexts.get(context)
        if ctx is None or context in seen:
            return None
        seen.add(context)
        if exten in ctx.extensions:
            return ctx.extensions[exten]
        for e in ctx.extensions.values():
            if e.name == exten:
                return e  # only caller-ID variants of it
        for e in ctx.extensions.values():
            if e.name.startswith("_") and pattern_matches(e.name, exten):
                return e
        for inc, _, _ in ctx.includes:
            if (hit := self._find(inc, exten, seen)) is not None:
                return hit
        return None


def strip_comment(line: str) -> tuple[str, str]:
    """(code, comment): ';' starts a comment unless escaped as '\\;'."""
    i = 0
    while True:
        i = line.find(";", i)
        if i < 0:
            return line, ""
        if i > 0 and line[i - 1] == "\\":
            i += 1
            continue
        return line[:i], line[i + 1 :]


_PRIO = re.compile(r"^\s*(\d+|n|n\+\d+|s|hint)\s*(?:\(([^)]*)\))?\s*$")


def parse(files: Mapping[str, str], main: str = "extensions.conf") -> Dialplan:
    """Parse ``main`` and the files it #includes (names relative to the same folder)."""
    plan = Dialplan()
    _parse_file(plan, files, main, [], _State())
    return plan


@dataclass(slots=True)
class _State:
    context: Context | None = None
    section: str = ""
    last: Extension | None = None


def _parse_file(
    plan: Dialplan, files: Mapping[str, str], name: str, stack: list[str], st: _State
) -> None:
    if name in stack:
        plan.problems.append((stack[-1], 0, f"#include loop through {name}"))
        return
    text = files.get(name)
    if text is None:
        plan.problems.append(
            (stack[-1] if stack else name, 0, f"#include of a missing file {name}")
        )
        return
    for number, raw in enumerate(text.split("\n"), 1):
        code, comment = strip_comment(raw)
        stripped = code.strip()
        reason = comment.strip()[len(ENTRY_MARK) :].strip() if _is_entry(comment) else None
        if not stripped:
            if reason and st.context is not None and not st.context.extensions:
                st.context.reason = reason
            continue
        if stripped.startswith(("#include", "#tryinclude")):
            target = stripped.split(None, 1)[1].strip().strip('"') if " " in stripped else ""
            if target in files or not stripped.startswith("#tryinclude"):
                _parse_file(plan, files, target, [*stack, name], st)
            continue
        if stripped.startswith("["):
            m = re.match(r"^\[([^\]]+)\]", stripped)
            if m is None:
                plan.problems.append((name, number, f"malformed section header: {stripped}"))
                continue
            st.section, st.last = m.group(1), None
            if st.section in NON_DIALPLAN_SECTIONS:
                st.context = None
            else:
                st.context = plan.contexts.setdefault(st.section, Context(st.section, name, number))
                if reason:
                    st.context.reason = reason
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip()
        value = value[1:] if value.startswith(">") else value
        value = value.strip()
        if not sep:
            plan.problems.append((name, number, f"not a 'name = value' line: {stripped}"))
            continue
        if st.section == "globals":
            plan.globals[key] = (value, name, number)
            continue
        if st.context is None:
            continue
        if key == "include":
            st.context.includes.append((value, name, number))
        elif key in ("exten", "same"):
            _exten_line(plan, st, key, value, name, number, reason)
        elif key not in ("switch", "ignorepat", "lswitch", "eswitch"):
            plan.problems.append((name, number, f"unknown dialplan keyword '{key}'"))


def _is_entry(comment: str) -> bool:
    return comment.strip().startswith(ENTRY_MARK)


def _exten_line(
    plan: Dialplan, st: _State, key: str, value: str, file: str, line: int, reason: str | None
) -> None:
    ctx = st.context
    assert ctx is not None
    if key == "exten":
        parts = split_args(value, 2)
        if len(parts) < 3:
            plan.problems.append(
                (file, line, f"exten line needs name,priority,application: {value}")
            )
            return
        name, _, cid = parts[0].strip().partition("/")
        key = f"{name}/{cid}" if cid else name
        ext = ctx.extensions.get(key)
        if ext is None:
            ext = ctx.extensions[key] = Extension(name, file, line, reason=reason, cid=cid)
        st.last = ext
        prio_text, app_text = parts[1], parts[2]
    else:
        if st.last is None:
            plan.problems.append((file, line, "'same =>' with no extension before it"))
            return
        ext = st.last
        parts = split_args(value, 1)
        if len(parts) < 2:
            plan.problems.append((file, line, f"same line needs priority,application: {value}"))
            return
        prio_text, app_text = parts[0], parts[1]
    m = _PRIO.match(prio_text)
    if m is None:
        plan.problems.append((file, line, f"bad priority '{prio_text.strip()}'"))
        return
    p = m.group(1)
    if p == "hint":
        return
    last = ext.priorities[-1].number if ext.priorities else 0
    if p.isdigit():
        number = int(p)
    elif p.startswith("n+"):
        number = last + 1 + int(p[2:])
    elif p == "s":
        number = last
    else:
        number = last + 1
    app, args = split_app(app_text.strip())
    ext.priorities.append(Priority(number, m.group(2), app, args, file, line))


def split_app(text: str) -> tuple[str, str]:
    """'Goto(a,b,1)' -> ('Goto', 'a,b,1'): up to the first '(' and the last ')' as
    pbx_config reads it."""
    i = text.find("(")
    if i < 0:
        return text.strip(), ""
    j = text.rfind(")")
    return text[:i].strip(), text[i + 1 : j] if j > i else text[i + 1 :]


def split_args(text: str, maxsplit: int = -1, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside brackets and ${...}/$[...] (as Asterisk's app argument
    parser does); at most ``maxsplit`` splits."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0 and (maxsplit < 0 or len(out) < maxsplit):
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return out


def split_condition(text: str) -> tuple[str, str, str] | None:
    """'cond?iftrue:iffalse' of GotoIf/ExecIf/GosubIf -> its three parts (None: no '?')."""
    parts = split_args(text, 1, "?")
    if len(parts) < 2:
        return None
    branches = split_args(parts[1], 1, ":")
    return parts[0], branches[0], branches[1] if len(branches) > 1 else ""


_CLASS = re.compile(r"\[([^\]]*)\]")


def pattern_matches(pattern: str, exten: str) -> bool:
    """Asterisk's extension pattern (_X. etc.) against a literal extension."""
    rx = []
    p = pattern[1:]
    i = 0
    while i < len(p):
        c = p[i]
        if c == "X":
            rx.append("[0-9]")
        elif c == "Z":
            rx.append("[1-9]")
        elif c == "N":
            rx.append("[2-9]")
        elif c == ".":
            rx.append(".+")
        elif c == "!":
            rx.append(".*")
        elif c == "[":
            end = p.find("]", i)
            if end < 0:
                return False
            body = p[i + 1 : end]
            rx.append("[" + re.sub(r"([\\\]^])", r"\\\1", body) + "]")
            i = end
        elif c == "-":
            pass  # dashes are ignored in patterns
        else:
            rx.append(re.escape(c))
        i += 1
    return re.fullmatch("".join(rx), exten) is not None


def has_variable(text: str) -> bool:
    return "${" in text or "$[" in text


def all_priorities(plan: Dialplan) -> Iterator[tuple[Context, Extension, Priority]]:
    for ctx in plan.contexts.values():
        for ext in ctx.extensions.values():
            for p in ext.priorities:
                yield ctx, ext, p
