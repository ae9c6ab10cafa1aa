"""Deployment checks beyond the schema: every number has somewhere to go, trunks connect."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ccbridge.config.model import Config, HostPort, TrunkKind
from ccbridge.ivr_render import custom_prompts, prompts_dir, sound_names
from ccbridge.render import fallback_for


def check_deployment(config: Config) -> list[str]:
    """Problems that would strand calls at run time, worded for a PBX admin."""
    problems: list[str] = []
    for n in config.numbers:
        site = config.site(n.site)
        if fallback_for(config, site, n) is None:
            problems.append(
                f"numbers.{n.did}: no static fallback: no site serving '{n.service}' is "
                f"reachable from {n.site} (add an intersite trunk or a queue at {n.site})"
            )
        serving = [s.name for s in config.sites if s.offering(n.service)]
        unreachable = [s for s in serving if s != n.site and not config.trunks_between(n.site, s)]
        for s in unreachable:
            problems.append(
                f"numbers.{n.did}: site {s} serves '{n.service}' but {n.site} has no "
                f"intersite trunk to it, so calls to this number can never overflow there"
            )
    problems += _trunk_problems(config)
    problems += _address_problems(config)
    problems += prompt_problems(config)
    return problems


def deployment_warnings(config: Config) -> list[str]:
    """Things that may be right, but deserve a second look."""
    warnings = []
    for t in config.trunks:
        if t.kind is TrunkKind.INTERSITE and t.peer_site:
            peer = config.site(t.peer_site)
            if t.remote not in peer.sip_addresses:
                listed = ", ".join(str(a) for a in peer.sip_addresses)
                warnings.append(
                    f"trunks.{t.name}: remote {t.remote} is none of site {peer.name}'s SIP "
                    f"addresses ({listed}): right behind a NAT or SBC that forwards to it, "
                    f"else add it to sites.{peer.name}.sip_alternates"
                )
    return warnings


def _trunk_problems(config: Config) -> list[str]:
    """A site pair may have several trunks, one per network path (address, port or
    transport); what strands calls is a far site that cannot tell who is calling."""
    problems = []
    paths: dict[tuple[str, str, HostPort], str] = {}
    for t in config.trunks:
        if t.kind is not TrunkKind.INTERSITE or not t.peer_site:
            continue
        # The far site recognises this site's calls by source address, through its own
        # trunks back here (their identify sections): without one the calls are strangers.
        if not config.trunks_between(t.peer_site, t.site):
            problems.append(
                f"trunks.{t.name}: site {t.peer_site} has no intersite trunk back to "
                f"{t.site}, so it cannot recognise the calls {t.site} sends over this trunk"
            )
        key = (t.site, t.peer_site, t.remote)
        if key in paths:
            problems.append(
                f"trunks.{t.name}: trunk {paths[key]} already reaches {t.peer_site} at "
                f"{t.remote}: a second trunk needs another path (address, port or transport)"
            )
        paths.setdefault(key, t.name)
    return problems


def _address_problems(config: Config) -> list[str]:
    """Two sites listening on one address: the second Asterisk would fail to bind."""
    owner: dict[HostPort, str] = {}
    problems = []
    for site in config.sites:
        for addr in site.sip_addresses:
            if addr in owner and owner[addr] != site.name:
                problems.append(
                    f"sites.{site.name}: SIP address {addr} is also site {owner[addr]}'s"
                )
            owner.setdefault(addr, site.name)
    return problems


# -- IVR prompts -----------------------------------------------------------------------


def prompt_problems(config: Config, sounds_dir: Path | None = None) -> list[str]:
    """Prompts that exist in no language: core sounds nor custom recordings."""
    if not used_prompts(config):
        return []
    configured = sounds_dir or config.ivr.sounds_dir
    if configured is not None and not configured.is_dir():
        return [f"ivr.sounds_dir: {configured} is not a folder of Asterisk sounds"]
    if configured is None and not default_sounds_dir().is_dir():
        # No Asterisk here (a CI box, a laptop): nothing to check the core sounds against.
        return []
    report = prompt_report(config, sounds_dir)
    return [
        f"ivr: prompt '{name}' ({', '.join(sorted(where))}) exists in no language: not in "
        f"{report.sounds_dir} nor in {report.prompts_dir}"
        for name, where in sorted(report.missing.items())
    ]


@dataclass(frozen=True, slots=True)
class PromptReport:
    sounds_dir: Path
    prompts_dir: Path
    missing: dict[str, set[str]]  # prompt -> where it is used
    english_only: dict[str, set[str]]  # prompt -> configured languages it falls back for


def used_prompts(config: Config) -> dict[str, set[str]]:
    """Prompt name -> the menus, lookups and survey that play it."""
    out: dict[str, set[str]] = {}
    for m in config.ivr.menus:
        for p in (*m.greeting, *m.prompts, *m.invalid_prompts, *m.timeout_prompts):
            out.setdefault(p, set()).add(f"menu {m.name}")
    for x in config.ivr.lookups:
        played = [*x.prompts, *x.default_prompts, *x.failure_prompts]
        played += [p for _, ps in x.answers for p in ps]
        if x.say_digits:
            played += [f"digits/{d}" for d in range(10)]
        for p in played:
            out.setdefault(p, set()).add(f"lookup {x.name}")
    if config.survey is not None:
        for p in (*config.survey.prompt, *config.survey.thanks):
            out.setdefault(p, set()).add("survey")
    return out


def prompt_report(config: Config, sounds_dir: Path | None = None) -> PromptReport:
    sounds = sounds_dir or config.ivr.sounds_dir or default_sounds_dir()
    custom_dir = prompts_dir(config.ivr)
    custom = custom_prompts(custom_dir)
    core = {d.name: sound_names(d) for d in _lang_dirs(sounds)}
    no_lang = sound_names(sounds) if sounds.is_dir() else set()
    missing: dict[str, set[str]] = {}
    english_only: dict[str, set[str]] = {}
    for name, where in used_prompts(config).items():
        langs = {lang for lang, names in core.items() if name in names}
        langs |= custom.get(name, set())
        base = {lang.split("_")[0] for lang in langs}
        if not base and name not in no_lang:
            missing[name] = where
            continue
        lacking = {lang for lang in config.languages if lang not in base}
        if lacking and "en" in base:
            english_only[name] = lacking
    return PromptReport(sounds, custom_dir, missing, english_only)


def default_sounds_dir() -> Path:
    """The lab root's sounds folder when there is one, else the system's."""
    from ccbridge.lab.sites import default_lab_dir

    lab = default_lab_dir() / "root"
    if (lab / "usr/share/asterisk/sounds").is_dir():
        return lab / "usr/share/asterisk/sounds"
    return Path("/usr/share/asterisk/sounds")


def _lang_dirs(sounds: Path) -> list[Path]:
    """Language folders, following symlinks as Asterisk would see them inside a chroot."""
    if not sounds.is_dir():
        return []
    root = _chroot_of(sounds)
    out = []
    for p in sorted(sounds.iterdir()):
        target = _resolve_in(root, p) if root is not None else p
        if target.is_dir() and _LANG_DIR_RE.match(p.name):
            out.append(target)
    return [Path(str(t)) for t in out]


_LANG_DIR_RE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9_]+)?$")


def _chroot_of(sounds: Path) -> Path | None:
    """A lab root holds usr/share/asterisk/sounds: absolute links in it point inside it."""
    parts = sounds.resolve().parts
    tail = ("usr", "share", "asterisk", "sounds")
    if parts[-4:] == tail and len(parts) > 5:
        return Path(*parts[:-4])
    return None


def _resolve_in(root: Path, path: Path, depth: int = 0) -> Path:
    """Follow symlinks of ``path`` whose absolute targets are relative to ``root``."""
    if depth > 20 or not path.is_symlink():
        return path
    target = Path(os.readlink(path))
    nxt = root / target.relative_to("/") if target.is_absolute() else path.parent / target
    return _resolve_in(root, nxt, depth + 1)
