"""`ccbridge deploy`: one site at a time verify, drain, install, reload what changed,
post-check, undrain; on a failure restore the site's previous files and stop."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ccbridge.config.model import Config, Site, queue_name
from ccbridge.deploy.ami import AmiError, AmiSession
from ccbridge.deploy.dialplan import parse
from ccbridge.deploy.findings import ERROR, Finding
from ccbridge.deploy.install import Installer, InstallError
from ccbridge.deploy.loaded import loaded_findings, parse_queues
from ccbridge.deploy.sourcemap import RenderedFile, strip
from ccbridge.deploy.state import Stamp, StateDir, changed_files, new_stamp
from ccbridge.deploy.verify import SiteRender

# The module that reads each rendered file, reloaded through AMI when the file changed.
RELOADS: dict[str, str] = {
    "extensions.conf": "pbx_config.so",
    "ivr.conf": "pbx_config.so",
    "pjsip.conf": "res_pjsip.so",
    "queues.conf": "app_queue.so",
    "manager.conf": "manager",
    "rtp.conf": "res_rtp_asterisk.so",
    "logger.conf": "logger",
    "voicemail.conf": "app_voicemail.so",
    "cel.conf": "cel",
    "cdr.conf": "cdr",
    "features.conf": "features",
    "musiconhold.conf": "res_musiconhold.so",
    "http.conf": "http",
}
# Files no reload applies: they take effect at the next restart (modules.conf), or belong
# to another program (the AGI guard's HAProxy).
NOT_RELOADED = {
    "modules.conf": "read at start-up only: takes effect when the site restarts",
    "haproxy.cfg": "the AGI guard's: reload its HAProxy (systemctl reload) to apply it",
}


class DeployBusy(RuntimeError):
    """Another deploy holds the lock."""


class DeployFailed(RuntimeError):
    """The rollout stopped; the report says where and what each site runs."""


@contextlib.contextmanager
def deploy_lock(path: Path) -> Iterator[None]:
    """Refuse (not wait) when another deploy runs: two rollouts must never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise DeployBusy(f"another deploy is running ({holder}; lock {path})") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class SitePlan:
    site: Site
    installer: Installer
    render: SiteRender
    current: dict[str, str] | None  # None: unknown (cannot roll back)
    previous: Stamp | None
    changed: list[str] = field(default_factory=list)

    @property
    def reloads(self) -> list[str]:
        return sorted({RELOADS[f] for f in self.changed if f in RELOADS})

    @property
    def notes(self) -> list[str]:
        out = [f"{f}: {NOT_RELOADED[f]}" for f in self.changed if f in NOT_RELOADED]
        out += [
            f"{f}: no module known to reload it"
            for f in self.changed
            if f not in RELOADS and f not in NOT_RELOADED
        ]
        return out


class Bridge:
    """Drain and undrain through the bridge's API (bridge.http_listen, bridge.api_token)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        listen = config.bridge.http_listen
        self.base = f"http://{listen.host}:{listen.port}"

    def _post(self, path: str) -> None:
        token = self.config.bridge.api_token
        headers = {"Authorization": f"Bearer {token.reveal()}"} if token else {}
        req = urllib.request.Request(f"{self.base}{path}", b"", headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5.0) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            raise DeployFailed(f"the bridge refused {path}: HTTP {exc.code}") from None
        except OSError as exc:
            raise DeployFailed(f"the bridge's API at {self.base} does not answer: {exc}") from None

    def drain(self, site: str) -> None:
        self._post(f"/api/v1/sites/{site}/drain")

    def undrain(self, site: str) -> None:
        self._post(f"/api/v1/sites/{site}/undrain")


def served_queue_findings(config: Config, site: Site, live_queues: set[str]) -> list[Finding]:
    """Queues the deployment routes calls to at this site must answer there."""
    out = []
    for o in site.offerings:
        for lang in o.languages:
            q = queue_name(o.service, lang)
            if q not in live_queues:
                out.append(
                    Finding(
                        site.name,
                        ERROR,
                        "queue",
                        f"queue {q}: the deployment routes {o.service} in {lang} here "
                        f"(sites.{site.name}.services) but the site has no such queue",
                    )
                )
    return out


def post_check(config: Config, site: Site, render: SiteRender, timeout: float) -> list[Finding]:
    """The site answers AMI and runs what was rendered; polled until ``timeout`` since a
    reload may take a moment to show."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with AmiSession(site) as ami:
                found = loaded_findings(
                    site.name, render.plan, render.files, ami.command, live=True
                )
                found += served_queue_findings(
                    config, site, parse_queues(ami.command("queue show"))
                )
        except AmiError as exc:
            found = [Finding(site.name, ERROR, "answer", str(exc))]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def render_from_texts(site: str, texts: dict[str, str]) -> SiteRender:
    """A SiteRender of files with no source map (a site's previous files)."""
    files = {n: RenderedFile(n, t, strip(t)[1]) for n, t in texts.items()}
    return SiteRender(site, files, parse(texts))


Say = Callable[[str], None]


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)  # deployed (new version)
    unchanged: list[str] = field(default_factory=list)
    failed: str | None = None
    not_started: list[str] = field(default_factory=list)
    still_drained: str | None = None  # deployed, but the bridge did not take the undrain

    @property
    def ok(self) -> bool:
        return self.failed is None and self.still_drained is None


class Rollout:
    def __init__(self, config: Config, renders: dict[str, SiteRender], say: Say) -> None:
        self.config = config
        self.settings = config.deploy
        self.renders = renders
        self.say = say
        self.state = StateDir(self.settings.state_dir)
        self.bridge = Bridge(config) if self.settings.drain else None

    def plan(self, site: Site) -> SitePlan:
        installer = Installer(self.config, site, self.settings.method(site.name))
        render = self.renders[site.name]
        names = set(render.files) | set(self.state.files(site.name) or {})
        current = installer.current(names, self.state.files(site.name))
        previous = installer.site_stamp() or self.state.stamp(site.name)
        p = SitePlan(site, installer, render, current, previous)
        p.changed = (
            changed_files(current or {}, render.texts())
            if current is not None
            else sorted(render.files)
        )
        return p

    def describe(self, p: SitePlan) -> list[str]:
        lines = [f"site {p.site.name}: {p.installer.describe()}; now {p.previous or 'no stamp'}"]
        if not p.changed:
            lines.append("  unchanged: nothing to do")
            return lines
        if p.current is None:
            lines.append(
                "  the site's current files are unknown (no fetch command): cannot roll back"
            )
        lines.append(f"  files: {', '.join(p.changed)}")
        lines.append(
            f"  steps: {'drain, ' if self.bridge else ''}install, "
            f"reload {', '.join(p.reloads) or 'nothing'}, post-check"
            + (f", hold {self.settings.hold_off:g}s, undrain" if self.bridge else "")
        )
        lines += [f"  note: {n}" for n in p.notes]
        return lines

    def run(self, sites: list[Site]) -> Outcome:
        out = Outcome()
        for i, site in enumerate(sites):
            try:
                self._reachable(site)
                p = self.plan(site)
            except (AmiError, InstallError) as exc:
                out.failed = site.name
                out.not_started = [s.name for s in sites[i:]]
                self.say(f"site {site.name}: unreachable, stopped before touching it: {exc}")
                return out
            for line in self.describe(p):
                self.say(line)
            if not p.changed:
                out.unchanged.append(site.name)
                continue
            if p.current is None:
                out.failed = site.name
                out.not_started = [s.name for s in sites[i:]]
                self.say(
                    f"site {site.name}: not deployed: nothing to roll back to (add a fetch command)"
                )
                return out
            if self.bridge:
                try:
                    self.bridge.drain(site.name)
                except DeployFailed as exc:
                    out.failed = site.name
                    out.not_started = [s.name for s in sites[i:]]
                    self.say(f"site {site.name}: cannot drain, stopped before touching it: {exc}")
                    return out
                self.say(
                    f"site {site.name}: drained (calls in progress go on; new calls go elsewhere)"
                )
            if not self._deploy_site(p):
                out.failed = site.name
                out.not_started = [s.name for s in sites[i + 1 :]]
                return out
            out.done.append(site.name)
            if self.bridge and not self._undrain(site.name, self.settings.hold_off):
                out.still_drained = site.name
                out.not_started = [s.name for s in sites[i + 1 :]]
                return out
        return out

    def _undrain(self, name: str, hold_off: float) -> bool:
        assert self.bridge is not None
        time.sleep(hold_off)  # the hold-off: a plain wait is the point here
        try:
            self.bridge.undrain(name)
        except DeployFailed as exc:
            self.say(
                f"site {name}: STILL DRAINED: {exc}; undrain it by hand "
                f"(POST /api/v1/sites/{name}/undrain) once the bridge answers"
            )
            return False
        self.say(f"site {name}: undrained" + (f" after {hold_off:g}s" if hold_off else ""))
        return True

    def _reachable(self, site: Site) -> None:
        with AmiSession(site, timeout=3.0) as ami:
            ami.action("Ping")
        Installer(self.config, site, self.settings.method(site.name)).check()

    def _deploy_site(self, p: SitePlan) -> bool:
        name = p.site.name
        texts = p.render.texts()
        stamp = new_stamp(name, p.previous, texts)
        assert p.current is not None
        try:
            p.installer.install(texts, stamp, set(p.current) - set(texts))
            self.say(f"site {name}: installed {stamp}")
            self._reload(p)
            problems = [
                f
                for f in post_check(self.config, p.site, p.render, self.settings.reload_timeout)
                if f.severity == ERROR
            ]
            if problems:
                raise DeployFailed("post-check failed:\n" + "\n".join(f"  {f}" for f in problems))
        except (DeployFailed, AmiError, InstallError) as exc:
            self.say(f"site {name}: FAILED: {exc}")
            self._restore(p)
            return False
        self.state.save(name, texts, stamp)
        self.say(f"site {name}: post-check passed, now {stamp}")
        return True

    def _reload(self, p: SitePlan) -> None:
        with AmiSession(p.site) as ami:
            for module in p.reloads:
                ami.reload(module)
                self.say(f"site {p.site.name}: reloaded {module}")

    def _restore(self, p: SitePlan) -> None:
        name = p.site.name
        assert p.current is not None
        try:
            p.installer.install(p.current, p.previous, set(p.render.files) - set(p.current))
            self._reload(p)
            old = render_from_texts(name, p.current)
            left = [
                f
                for f in post_check(self.config, p.site, old, self.settings.reload_timeout)
                if f.severity == ERROR
            ]
            state = (
                "and it passes the post-check"
                if not left
                else "but it FAILS the post-check:\n" + "\n".join(f"  {f}" for f in left)
            )
            self.say(f"site {name}: rolled back to {p.previous or 'its previous files'} {state}")
        except (AmiError, InstallError) as exc:
            self.say(f"site {name}: ROLLBACK FAILED: {exc}: the site needs a hand")
        if self.bridge:
            self._undrain(name, 0.0)


def summary(outcome: Outcome, state: StateDir, sites: list[Site]) -> str:
    lines = []
    for s in sites:
        stamp = state.stamp(s.name)
        what = (
            "deployed, STILL DRAINED"
            if s.name == outcome.still_drained
            else "deployed"
            if s.name in outcome.done
            else "unchanged"
            if s.name in outcome.unchanged
            else "FAILED, rolled back"
            if s.name == outcome.failed and s.name not in outcome.not_started
            else "not touched"
        )
        lines.append(f"  {s.name}: {what}; runs {stamp or 'its files from before ccbridge deploy'}")
    return "\n".join(lines)


def stamp_json(stamp: Stamp | None) -> str:
    return json.dumps(None if stamp is None else stamp.text())
