"""The `deploy:` section: where `ccbridge deploy` installs each site's files, how it rolls out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccbridge.config.reader import Reader

DEFAULT_STATE_DIR = "/var/lib/ccbridge/deployed"


@dataclass(frozen=True, slots=True)
class InstallMethod:
    """How one site's rendered files reach its Asterisk configuration folder.

    lab: the local lab's folder for the site; dir: a local folder (a single host);
    command: a shell command template run with {src} (a folder holding the files),
    {site} and {host}, e.g. an rsync over ssh; fetch: the same kind of template that
    copies the site's current files into {dest} (what a rollback restores).
    """

    kind: str  # "lab" | "dir" | "command"
    path: str = ""  # dir: the folder; {site} is replaced
    command: str = ""
    fetch: str = ""


@dataclass(frozen=True, slots=True)
class DeploySettings:
    state_dir: Path = Path(DEFAULT_STATE_DIR)  # the last deployed render of each site
    lock_file: Path | None = None  # default: state_dir/deploy.lock
    hold_off: float = 10.0  # seconds a site stays drained after its post-check passes
    drain: bool = True  # through the bridge's API (bridge.http_listen)
    reload_timeout: float = 15.0  # seconds for a reload to show in the post-check
    install: InstallMethod = InstallMethod("dir", "/etc/asterisk")
    sites: tuple[tuple[str, InstallMethod], ...] = field(default=())

    def method(self, site: str) -> InstallMethod:
        return dict(self.sites).get(site, self.install)

    @property
    def lock(self) -> Path:
        return self.lock_file or self.state_dir / "deploy.lock"


def _method(r: Reader, v: Any) -> InstallMethod:
    d = r.mapping(v, {"lab", "dir", "command", "fetch"})
    given = [k for k in ("lab", "dir", "command") if k in d]
    if len(given) != 1:
        raise r.fail("give exactly one of lab: true, dir: FOLDER, command: TEMPLATE")
    if "lab" in d:
        if not r.get(d, "lab", r.boolean, False):
            raise r.fail("lab: must be true when given")
        return InstallMethod("lab")
    if "dir" in d:
        p = Path(r.get(d, "dir", r.string, ""))
        return InstallMethod("dir", str(p if p.is_absolute() else r.base_dir / p))
    command = r.get(d, "command", r.string, "")
    if "{src}" not in command:
        with r.at("command", d):
            raise r.fail("the command must name {src}, the folder holding the site's files")
    fetch = r.get(d, "fetch", r.string, "")
    if fetch and "{dest}" not in fetch:
        with r.at("fetch", d):
            raise r.fail("the fetch command must name {dest}, the folder to copy into")
    return InstallMethod("command", command=command, fetch=fetch)


def parse_deploy(r: Reader, v: Any, sites: set[str]) -> DeploySettings:
    d = r.mapping(
        v, {"state_dir", "lock_file", "hold_off", "drain", "reload_timeout", "install", "sites"}
    )

    def path(key: str) -> Path | None:
        raw = r.get(d, key, r.string, None)
        if raw is None:
            return None
        p = Path(raw)
        return p if p.is_absolute() else r.base_dir / p

    per_site = []
    if "sites" in d:
        with r.at("sites", d):
            smap = r.mapping(d["sites"])
            for name, mv in smap.items():
                with r.at(name, smap):
                    if name not in sites:
                        raise r.fail(f"unknown site '{name}'")
                    per_site.append((str(name), _method(r, mv)))
    if "install" in d:
        with r.at("install", d):
            install = _method(r, d["install"])
    else:
        install = InstallMethod("dir", "/etc/asterisk")
    return DeploySettings(
        state_dir=path("state_dir") or Path(DEFAULT_STATE_DIR),
        lock_file=path("lock_file"),
        install=install,
        sites=tuple(per_site),
        **r.given(
            d,
            {
                "hold_off": r.number(0, 3600),
                "drain": r.boolean,
                "reload_timeout": r.number(1, 600),
            },
        ),
    )
