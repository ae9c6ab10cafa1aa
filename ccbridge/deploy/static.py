"""Static checks of a rendered dialplan: jump targets, endpoint contexts, numbers, the CCB_*
variable contract, and extensions no inbound call can reach."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ccbridge import variables
from ccbridge.config.model import Config, Site
from ccbridge.deploy.dialplan import (
    SPECIAL_EXTENSIONS,
    Dialplan,
    Extension,
    Priority,
    all_priorities,
    has_variable,
    split_args,
    split_condition,
)
from ccbridge.deploy.findings import ERROR, Finding, at
from ccbridge.deploy.sourcemap import RenderedFile

_GOTO = {"goto", "gosub"}
_GOTO_IF = {"gotoif", "gosubif", "gotoiftime"}
# Dial/Queue options that run a subroutine or a jump on a leg: b(ctx^exten^pri),
# B(...), U(ctx) (exten s, priority 1), G(ctx^exten^pri), F(ctx^exten^pri).
_OPTION_JUMP = re.compile(r"(?<![A-Za-z0-9_])([bBGFU])\(([^()]*)\)")
_LOCAL_CHANNEL = re.compile(r"Local/[^@,()]*@([A-Za-z0-9_.-]+)")
_FUNCTION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\(")
_SET_FUNCTION = re.compile(r"^([A-Z][A-Z0-9_]*)\(")
_CCB_NAME = re.compile(r"(?<![A-Za-z0-9])CCB_[A-Z_]+[0-9]*\b")  # also __CCB_X (inherited)
_NUMBERED = re.compile(r"CCB_(TRUNK|H|HS|HL)_\w*")
_SECTION = re.compile(r"^\[([^\]]+)\]")


@dataclass(frozen=True, slots=True)
class Target:
    context: str
    exten: str | None  # None: decided at run time (a variable)
    priority: str | None
    file: str
    line: int
    what: str  # the application, for messages


def applications(p: Priority) -> Iterator[tuple[str, str]]:
    """(application, arguments) run by a priority, ExecIf's branches included."""
    yield p.app, p.args
    if p.app.lower() in ("execif", "execiftime"):
        cond = split_condition(p.args)
        if cond is not None:
            for branch in cond[1:]:
                if branch:
                    name, _, rest = branch.partition("(")
                    yield name.strip(), rest[:-1] if rest.endswith(")") else rest


def functions(p: Priority) -> set[str]:
    """Dialplan functions a priority reads (${FUNC(...)}) or writes (Set(FUNC(...)=...))."""
    found: set[str] = set()
    for app, args in applications(p):
        found |= set(_FUNCTION.findall(args))
        if app.lower() in ("set", "mset"):
            for assignment in split_args(args):
                m = _SET_FUNCTION.match(assignment.strip())
                if m:
                    found.add(m.group(1))
    return found


def _target(parts: list[str], ctx: str, exten: str, p: Priority, what: str) -> Target | None:
    parts = [x.strip() for x in parts]
    if not parts or parts == [""]:
        return None
    # Gosub's priority may carry arguments: 1(a,b)
    last = parts[-1]
    if "(" in last and not last.startswith("$"):
        parts[-1] = last[: last.index("(")]
    if len(parts) == 1:
        c, e, pr = ctx, exten, parts[0]
    elif len(parts) == 2:
        c, e, pr = ctx, parts[0], parts[1]
    else:
        c, e, pr = parts[0], parts[1], parts[2]
    return Target(
        c, None if has_variable(e) else e, None if has_variable(pr) else pr, p.file, p.line, what
    )


def targets(ctx: str, ext: Extension, p: Priority) -> Iterator[Target]:
    """Every place a priority may jump to or call."""
    for app, args in applications(p):
        low = app.lower()
        if low in _GOTO:
            t = _target(split_args(args, 2), ctx, ext.name, p, app)
            if t:
                yield t
        elif low in _GOTO_IF:
            cond = split_condition(args)
            if cond is not None:
                for branch in cond[1:]:
                    t = _target(split_args(branch, 2), ctx, ext.name, p, app)
                    if t:
                        yield t
        for opt, body in _OPTION_JUMP.findall(args) if low not in _GOTO | _GOTO_IF else []:
            parts = body.split("^")
            if opt == "U" or (opt in "bB" and len(parts) == 1):
                parts = [parts[0], "s", "1"]
            t = _target(parts[:3], ctx, ext.name, p, f"{app} option {opt}()")
            if t:
                yield t
        for local_ctx in _LOCAL_CHANNEL.findall(args):
            if not has_variable(local_ctx):
                yield Target(local_ctx, None, None, p.file, p.line, f"{app} Local channel")


def check_dialplan(
    plan: Dialplan, files: dict[str, RenderedFile], config: Config, site: Site
) -> list[Finding]:
    out: list[Finding] = []
    name = site.name
    for file, line, message in plan.problems:
        out.append(at(files, name, ERROR, "syntax", message, file, line))
    out += _jump_findings(plan, files, name)
    out += _endpoint_findings(plan, files, config, site)
    out += variable_findings(files, name)
    out += _reachability_findings(plan, files, config, site)
    return out


def _jump_findings(plan: Dialplan, files: dict[str, RenderedFile], site: str) -> list[Finding]:
    out = []
    for ctx, ext, p in all_priorities(plan):
        for t in targets(ctx.name, ext, p):
            problem = _unresolved(plan, t)
            if problem:
                out.append(at(files, site, ERROR, "goto", f"{t.what}: {problem}", t.file, t.line))
    for ctx in plan.contexts.values():
        for inc, file, line in ctx.includes:
            if inc not in plan.contexts:
                out.append(
                    at(
                        files,
                        site,
                        ERROR,
                        "goto",
                        f"include of a missing context {inc}",
                        file,
                        line,
                    )
                )
    return out


def _unresolved(plan: Dialplan, t: Target) -> str | None:
    if has_variable(t.context):
        return None
    if t.context not in plan.contexts:
        return f"no context '{t.context}'"
    if t.exten is None:
        return None
    ext = plan.find(t.context, t.exten)
    if ext is None:
        return f"no extension '{t.exten}' in context '{t.context}'"
    if t.priority is None:
        return None
    if t.priority.isdigit():
        if int(t.priority) not in {p.number for p in ext.priorities}:
            return f"no priority {t.priority} at {t.exten}@{t.context}"
    elif t.priority not in ext.labels():
        return f"no label '{t.priority}' at {ext.name}@{t.context}"
    return None


def pjsip_sections(text: str) -> list[tuple[str, dict[str, str], int, dict[str, int]]]:
    """(name, options, header line, option -> line) of every section of a pjsip.conf."""
    out: list[tuple[str, dict[str, str], int, dict[str, int]]] = []
    for number, raw in enumerate(text.split("\n"), 1):
        code = raw.split(";", 1)[0].strip()
        if not code:
            continue
        m = _SECTION.match(code)
        if m:
            out.append((m.group(1), {}, number, {}))
        elif out and "=" in code:
            k, _, v = code.partition("=")
            k = k.strip()
            out[-1][1].setdefault(k, v.lstrip(">").strip())
            out[-1][3].setdefault(k, number)
    return out


def endpoints(files: dict[str, RenderedFile]) -> dict[str, tuple[str, int]]:
    """Endpoint name -> (its dialplan context, the line of context=)."""
    pj = files.get("pjsip.conf")
    if pj is None:
        return {}
    return {
        name: (opts.get("context", "default"), lines.get("context", header))
        for name, opts, header, lines in pjsip_sections(pj.text)
        if opts.get("type") == "endpoint"
    }


def _endpoint_findings(
    plan: Dialplan, files: dict[str, RenderedFile], config: Config, site: Site
) -> list[Finding]:
    out = []
    eps = endpoints(files)
    for ep, (ctx, line) in eps.items():
        if ctx not in plan.contexts:
            out.append(
                at(
                    files,
                    site.name,
                    ERROR,
                    "context",
                    f"endpoint {ep}: context '{ctx}' does not exist in the dialplan",
                    "pjsip.conf",
                    line,
                )
            )
    inbound = sorted({c for c, _ in eps.values() if c in plan.contexts})
    for n in config.numbers:
        if n.site != site.name:
            continue
        if not any(plan.find(c, n.did) for c in inbound):
            out.append(
                Finding(
                    site.name,
                    ERROR,
                    "context",
                    f"number {n.did}: no extension for it in any endpoint's context "
                    f"({', '.join(inbound) or 'none'})",
                )
            )
    return out


def variable_findings(files: dict[str, RenderedFile], site: str) -> list[Finding]:
    """Every CCB_ name in the dialplan is in the contract (ccbridge/variables.py), a
    numbered family of it, or a global the dialplan defines itself."""
    known = variables.all_names()
    out = []
    texts = [f for n, f in files.items() if n in ("extensions.conf", "ivr.conf")]
    own: set[str] = set()
    for f in texts:
        in_globals = False
        for raw in f.text.split("\n"):
            code = raw.split(";", 1)[0].strip()
            if code.startswith("["):
                in_globals = code.startswith("[globals]")
            elif in_globals and "=" in code:
                own.add(code.split("=", 1)[0].strip())
    reported: set[str] = set()
    for f in texts:
        for number, raw in enumerate(f.text.split("\n"), 1):
            for used in _CCB_NAME.findall(raw):
                if used in known or used in own or used in reported or _NUMBERED.fullmatch(used):
                    continue
                reported.add(used)
                out.append(
                    at(
                        files,
                        site,
                        ERROR,
                        "variable",
                        f"{used} is not in the dialplan contract (ccbridge/variables.py)",
                        f.name,
                        number,
                    )
                )
    return out


def _reachability_findings(
    plan: Dialplan, files: dict[str, RenderedFile], config: Config, site: Site
) -> list[Finding]:
    """Extensions no inbound call reaches: entered from an endpoint's context, a jump, a
    menu (any extension of a context that waits for digits), or a declared entry."""
    reached: set[tuple[str, str]] = set()
    whole: set[str] = set()  # contexts every extension of which is reachable
    todo: list[tuple[str, str]] = []

    def reach_context(name: str) -> None:
        if name in whole or name not in plan.contexts:
            return
        whole.add(name)
        for e in plan.contexts[name].extensions:
            todo.append((name, e))
        for inc, _, _ in plan.contexts[name].includes:
            reach_context(inc)

    for entry, _ in endpoints(files).values():
        reach_context(entry)
    for ctx in plan.contexts.values():
        if ctx.reason:
            reach_context(ctx.name)
        for x in ctx.extensions.values():
            if x.reason:
                todo.append((ctx.name, x.key))
    while todo:
        c, e = todo.pop()
        if (c, e) in reached:
            continue
        reached.add((c, e))
        ctx = plan.contexts[c]
        ext = ctx.extensions[e]
        for name in SPECIAL_EXTENSIONS & set(ctx.extensions):
            todo.append((c, name))
        for p in ext.priorities:
            if p.app.lower() in ("background", "waitexten"):
                reach_context(c)  # whatever the caller keys in
            for t in targets(c, ext, p):
                if has_variable(t.context) or t.context not in plan.contexts:
                    continue
                if t.exten is None:
                    reach_context(t.context)
                elif (hit := plan.find(t.context, t.exten)) is not None:
                    owner = next(
                        (n for n, x in plan.contexts.items() if hit in x.extensions.values()),
                        t.context,
                    )
                    # every caller-ID variant of it: the caller decides which runs
                    todo += [
                        (owner, k)
                        for k, x in plan.contexts[owner].extensions.items()
                        if x.name == hit.name
                    ]
    out = []
    for ctx in plan.contexts.values():
        lost = [e for e in ctx.extensions.values() if (ctx.name, e.key) not in reached]
        if not lost:
            continue
        if len(lost) == len(ctx.extensions):
            out.append(
                at(
                    files,
                    site.name,
                    ERROR,
                    "unreachable",
                    f"context {ctx.name}: no inbound call reaches it (no endpoint, jump or "
                    "'; entry: <reason>' comment)",
                    ctx.file,
                    ctx.line,
                )
            )
            continue
        for x in lost:
            out.append(
                at(
                    files,
                    site.name,
                    ERROR,
                    "unreachable",
                    f"extension {x.key}@{ctx.name}: no inbound call reaches it (add "
                    "'; entry: <reason>' if something outside the dialplan enters it)",
                    x.file,
                    x.line,
                )
            )
    return out
