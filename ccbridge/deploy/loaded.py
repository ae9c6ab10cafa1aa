"""What an Asterisk holds after loading a site's files (CLI output in, findings out): the
same checks for the scratch Asterisk of --verify and the live site after a deploy."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ccbridge.deploy.dialplan import Dialplan, all_priorities, has_variable, split_args
from ccbridge.deploy.findings import ERROR, WARNING, Finding, at
from ccbridge.deploy.sourcemap import RenderedFile
from ccbridge.deploy.static import applications, functions, pjsip_sections
from ccbridge.ivr_render import sound_names

Cli = Callable[[str], str]

# CLI listing per PJSIP object type: (command, the label its lines start with)
_PJSIP_LISTS = {
    "endpoint": ("pjsip list endpoints", "Endpoint:"),
    "aor": ("pjsip list aors", "Aor:"),
    "auth": ("pjsip list auths", "Auth:"),
    "identify": ("pjsip list identifies", "Identify:"),
    "transport": ("pjsip list transports", "Transport:"),
}
_FUNCTION_COLUMN = 20  # `core show functions` cuts longer names to this width
_PLAYING = {"playback": 0, "background": 0, "controlplayback": 0, "read": 1}


def parse_applications(text: str) -> set[str]:
    return {m.group(1).lower() for m in re.finditer(r"^\s*(\w+): ", text, re.M)}


def parse_functions(text: str) -> set[str]:
    out = set()
    for line in text.splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)\s+\S", line)
        if m:
            out.add(m.group(1))
    return out


def parse_queues(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^(\S+) has \d+ calls", text, re.M)}


def parse_pjsip_list(text: str, label: str) -> set[str]:
    out = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == label and not parts[1].startswith("<"):
            out.add(parts[1].split("/", 1)[0])
    return out


def parse_dialplan_show(text: str) -> dict[str, set[str]]:
    """`dialplan show` -> context -> its extensions."""
    return {c: set(exts) for c, exts in parse_dialplan_priorities(text).items()}


_PRIORITY_ROW = re.compile(
    r"^\s+(?:'(?P<exten>[^']+)' (?:\(CID match '(?P<cid>[^']*)'\) )?=>)?\s*(?:\[[^\]]*\])?\s*"
    r"(?P<prio>\d+)\. (?P<app>.*?)\s+\[(?P<file>[^\]\s]+):(?P<line>\d+)\]$"
)


def parse_dialplan_priorities(text: str) -> dict[str, dict[str, dict[int, str]]]:
    """`dialplan show` -> context -> extension -> priority -> 'App(args)' as loaded."""
    out: dict[str, dict[str, dict[int, str]]] = {}
    context: dict[str, dict[int, str]] | None = None
    exten = ""
    for line in text.splitlines():
        m = re.match(r"^\[ Context '([^']+)' created by '([^']+)' \]", line)
        if m:
            context = out.setdefault(m.group(1), {})
            continue
        if context is None:
            continue
        row = _PRIORITY_ROW.match(line)
        if row:
            if row.group("exten"):
                cid = row.group("cid")
                exten = f"{row.group('exten')}/{cid}" if cid else row.group("exten")
            context.setdefault(exten, {})[int(row.group("prio"))] = row.group("app").strip()
            continue
        m = re.match(r"^\s+'([^']+)' (?:\(CID match '([^']*)'\) )?=>", line)
        if m:
            exten = f"{m.group(1)}/{m.group(2)}" if m.group(2) else m.group(1)
            context.setdefault(exten, {})
    return out


def loaded_findings(
    site: str,
    plan: Dialplan,
    files: dict[str, RenderedFile],
    cli: Cli,
    *,
    live: bool = False,
) -> list[Finding]:
    """What Asterisk did not take of the rendered files: dialplan, applications and
    functions, PJSIP objects, queues."""
    out: list[Finding] = []
    what = "the site" if live else "Asterisk"
    shown = parse_dialplan_priorities(cli("dialplan show"))
    for ctx in plan.contexts.values():
        if ctx.name not in shown:
            out.append(
                at(
                    files,
                    site,
                    ERROR,
                    "dialplan",
                    f"{what} has no context {ctx.name}",
                    ctx.file,
                    ctx.line,
                )
            )
            continue
        for e in ctx.extensions.values():
            loaded = shown[ctx.name].get(e.key)
            if loaded is not None and live:
                # the site runs exactly what was rendered, priority by priority
                for p in e.priorities:
                    text = f"{p.app}({p.args})" if p.args or "(" in p.app else p.app
                    if loaded.get(p.number, "").replace("()", "") != text.replace("()", ""):
                        out.append(
                            at(
                                files,
                                site,
                                ERROR,
                                "dialplan",
                                f"{e.key}@{ctx.name} priority {p.number}: the site runs "
                                f"{loaded.get(p.number, 'nothing')!r}, the render says {text!r}",
                                p.file,
                                p.line,
                            )
                        )
                        break
            if loaded is None:
                out.append(
                    at(
                        files,
                        site,
                        ERROR,
                        "dialplan",
                        f"{what} did not load extension {e.key}@{ctx.name}",
                        e.file,
                        e.line,
                    )
                )
    apps = parse_applications(cli("core show applications"))
    funcs = parse_functions(cli("core show functions"))
    reported: set[str] = set()
    for _, _, p in all_priorities(plan):
        for app, _ in applications(p):
            if (
                app
                and not has_variable(app)
                and app.lower() not in apps
                and app.lower() not in reported
            ):
                reported.add(app.lower())
                out.append(
                    at(
                        files,
                        site,
                        ERROR,
                        "application",
                        f"unknown application {app} (no module of {what} provides it)",
                        p.file,
                        p.line,
                    )
                )
        for fn in sorted(functions(p)):
            if fn not in funcs and fn[:_FUNCTION_COLUMN] not in funcs and fn not in reported:
                reported.add(fn)
                out.append(
                    at(
                        files,
                        site,
                        ERROR,
                        "function",
                        f"unknown dialplan function {fn}()",
                        p.file,
                        p.line,
                    )
                )
    pj = files.get("pjsip.conf")
    if pj is not None:
        sections = pjsip_sections(pj.text)
        listed: dict[str, set[str]] = {}
        for name, opts, header, _ in sections:
            kind = opts.get("type", "")
            if kind not in _PJSIP_LISTS:
                if kind not in (
                    "global",
                    "system",
                    "domain_alias",
                    "acl",
                    "contact",
                    "registration",
                    "phoneprov",
                    "resource_list",
                    "outbound-publish",
                    "inbound-publication",
                ):
                    out.append(
                        at(
                            files,
                            site,
                            ERROR,
                            "pjsip",
                            f"[{name}]: unknown object type '{kind}'",
                            "pjsip.conf",
                            header,
                        )
                    )
                continue
            if kind not in listed:
                cmd, label = _PJSIP_LISTS[kind]
                listed[kind] = parse_pjsip_list(cli(cmd), label)
            if name not in listed[kind]:
                out.append(
                    at(
                        files,
                        site,
                        ERROR,
                        "pjsip",
                        f"{kind} {name} did not load",
                        "pjsip.conf",
                        header,
                    )
                )
    queues = parse_queues(cli("queue show"))
    qfile = files.get("queues.conf")
    if qfile is not None:
        for number, raw in enumerate(qfile.text.split("\n"), 1):
            m = re.match(r"^\[([^\]]+)\]", raw.strip())
            if m and m.group(1) != "general" and m.group(1) not in queues:
                out.append(
                    at(
                        files,
                        site,
                        ERROR,
                        "queue",
                        f"queue {m.group(1)} did not load",
                        "queues.conf",
                        number,
                    )
                )
    for _, _, p in all_priorities(plan):
        if p.app.lower() == "queue":
            q = split_args(p.args)[0].strip()
            if q and not has_variable(q) and q not in queues:
                out.append(
                    at(files, site, ERROR, "queue", f"Queue({q}): no such queue", p.file, p.line)
                )
    return out


_LOCATED = re.compile(r"(?:at )?line (\d+) of (\S*)")


def log_findings(
    site: str, files: dict[str, RenderedFile], problems: list[tuple[str, str, str]]
) -> list[Finding]:
    """Asterisk's WARNING and ERROR lines while loading, placed at the rendered line they name."""
    out = []
    for _level, source, message in problems:
        if source.startswith("pjproject") or "registered during operation" in message:
            continue  # pjproject's own start-up chatter, the same for every configuration
        m = _LOCATED.search(message)
        file, line = "", None
        if m:
            line = int(m.group(1))
            file = Path(m.group(2)).name if m.group(2) else _file_with_line(files, line, message)
        else:
            file, line = _section_line(files, source, message)
        out.append(at(files, site, ERROR, "asterisk", f"{source}: {message}", file, line))
    return out


# The file a module's messages are about, tried first when a message names no line.
_MODULE_FILES = {
    "app_queue.c": "queues.conf",
    "res_sorcery_config.c": "pjsip.conf",
    "pbx_config.c": "extensions.conf",
    "manager.c": "manager.conf",
    "app_voicemail.c": "voicemail.conf",
    "res_rtp_asterisk.c": "rtp.conf",
}


def _section_line(
    files: dict[str, RenderedFile], source: str, message: str
) -> tuple[str, int | None]:
    """A message with no line that quotes a section's name ("for queue 'orders-en'"): the
    line in that section holding another quoted value ('bogus'), else its header."""
    quoted = re.findall(r"'([^'\s]+)'", message)  # not the apostrophe of isn't
    first = _MODULE_FILES.get(source)
    order = ([first] if first in files else []) + [n for n in files if n != first]
    for name in order:
        lines = files[name].text.split("\n")
        for q in quoted:
            try:
                start = lines.index(f"[{q}]")
            except ValueError:
                continue
            end = next(
                (i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines)
            )
            for value in (v for v in quoted if v != q):
                for i in range(start + 1, end):
                    if value in lines[i].split(";", 1)[0]:
                        return name, i + 1
            return name, start + 1
    return "", None


def _file_with_line(files: dict[str, RenderedFile], line: int, message: str) -> str:
    """Some errors name a line but no file (config_options.c): the file whose line holds
    the quoted option."""
    m = re.search(r"parsing (\S+=\S*)", message)
    for name, f in files.items():
        lines = f.text.split("\n")
        if 1 <= line <= len(lines) and (m is None or m.group(1).split("=")[0] in lines[line - 1]):
            return name
    return ""


def sound_findings(
    site: str,
    plan: Dialplan,
    files: dict[str, RenderedFile],
    sounds: Callable[[str], Path],
    languages: tuple[str, ...],
    custom: dict[str, set[str]],
) -> list[Finding]:
    """Prompts the dialplan plays, per language: in none -> error (silence); missing in
    some of the site's languages -> warning (Asterisk plays the English one)."""
    have = {lang: sound_names(sounds(lang)) for lang in {"en", *languages}}
    out: list[Finding] = []
    seen: set[str] = set()
    for _, _, p in all_priorities(plan):
        for app, args in applications(p):
            index = _PLAYING.get(app.lower())
            if index is None:
                continue
            parts = split_args(args)
            if len(parts) <= index:
                continue
            for name in parts[index].split("&"):
                name = name.strip()
                if not name or has_variable(name) or name in seen:
                    continue
                seen.add(name)
                found = {lang for lang, names in have.items() if name in names}
                found |= custom.get(name.rsplit("/", 1)[-1], set())
                if not found:
                    out.append(
                        at(
                            files,
                            site,
                            ERROR,
                            "sound",
                            f"prompt {name} exists in no language (under {sounds('en').parent})",
                            p.file,
                            p.line,
                        )
                    )
                    continue
                missing = sorted(lang for lang in languages if lang not in found)
                if missing:
                    out.append(
                        at(
                            files,
                            site,
                            WARNING,
                            "sound",
                            f"prompt {name} missing in {', '.join(missing)}: "
                            "Asterisk plays the English one",
                            p.file,
                            p.line,
                        )
                    )
    return out
