"""Install a site's files through its configured method: the lab's folder, a local folder, or
a command template (rsync/ssh) for a remote site."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from ccbridge.config.deploy import InstallMethod
from ccbridge.config.model import Config, Site
from ccbridge.deploy.state import STAMP_FILE, Stamp, read_folder


class InstallError(RuntimeError):
    """The files could not be read from or written to the site."""


class Installer:
    def __init__(self, config: Config, site: Site, method: InstallMethod) -> None:
        self.config = config
        self.site = site
        self.method = method

    def describe(self) -> str:
        if self.method.kind == "command":
            return f"command: {self._format(self.method.command, src='SRC')}"
        return f"folder {self.folder()}"

    def folder(self) -> Path:
        if self.method.kind == "lab":
            from ccbridge.lab.sites import Lab

            return Lab(self.config).dirs(self.site).host("etc")
        return Path(self.method.path.replace("{site}", self.site.name))

    def _format(self, template: str, **extra: str) -> str:
        values = {"site": self.site.name, "host": self.site.sip.host, **extra}
        return template.format(**{k: shlex.quote(v) for k, v in values.items()})

    def check(self) -> None:
        """Before touching the site: its folder is there (local methods)."""
        if self.method.kind != "command" and not self.folder().is_dir():
            raise InstallError(f"{self.folder()} is not a folder")

    def current(self, names: set[str], state_copy: dict[str, str] | None) -> dict[str, str] | None:
        """The files the site has now (None: unknown, e.g. a remote site never deployed and
        no fetch command)."""
        if self.method.kind != "command":
            try:
                return read_folder(self.folder(), names)
            except OSError as exc:
                raise InstallError(f"cannot read {self.folder()}: {exc.strerror}") from None
        if self.method.fetch:
            with tempfile.TemporaryDirectory(prefix="ccb-fetch-") as dest:
                self._run(self._format(self.method.fetch, dest=dest), "fetch")
                return read_folder(Path(dest), names)
        return state_copy

    def site_stamp(self) -> Stamp | None:
        if self.method.kind == "command":
            return None
        try:
            return Stamp.parse((self.folder() / STAMP_FILE).read_text())
        except OSError:
            return None

    def install(self, files: dict[str, str], stamp: Stamp | None, remove: set[str]) -> None:
        """Write every file (each replaced atomically) and the stamp; delete ``remove``."""
        if self.method.kind == "command":
            with tempfile.TemporaryDirectory(prefix="ccb-install-") as src:
                _write(Path(src), files, stamp)
                self._run(self._format(self.method.command, src=src), "install")
            return
        folder = self.folder()
        _write(folder, files, stamp)
        if stamp is None:
            remove = remove | {STAMP_FILE}  # files from before ccbridge deploy: no stamp
        for name in remove:
            (folder / name).unlink(missing_ok=True)

    def _run(self, command: str, what: str) -> None:
        try:
            out = subprocess.run(
                command, shell=True, capture_output=True, text=True, timeout=120, check=False
            )
        except subprocess.TimeoutExpired:
            raise InstallError(f"{what} command timed out: {command}") from None
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip()[-500:]
            raise InstallError(f"{what} command failed ({out.returncode}): {command}\n{tail}")


def _write(folder: Path, files: dict[str, str], stamp: Stamp | None) -> None:
    items = dict(files)
    if stamp is not None:
        items[STAMP_FILE] = stamp.text()
    for name, text in items.items():
        target = folder / name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if name == "manager.conf":
            os.chmod(tmp, 0o600)  # it holds the AMI secret
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
