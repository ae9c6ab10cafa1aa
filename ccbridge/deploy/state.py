"""What was deployed where: each site's last render kept with a version stamp and its hash."""

from __future__ import annotations

import difflib
import getpass
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

STAMP_FILE = "ccbridge-deploy.json"  # beside the files, at the site and in the state dir


def render_hash(files: dict[str, str]) -> str:
    """sha256 over the file names and texts, in name order."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Stamp:
    site: str
    version: int
    hash: str
    deployed_at: float
    by: str

    def text(self) -> str:
        return (
            json.dumps(
                {
                    "site": self.site,
                    "version": self.version,
                    "hash": self.hash,
                    "deployed_at": time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.deployed_at)
                    ),
                    "by": self.by,
                },
                indent=2,
            )
            + "\n"
        )

    @staticmethod
    def parse(text: str) -> Stamp | None:
        try:
            raw = json.loads(text)
            when = time.mktime(time.strptime(raw["deployed_at"], "%Y-%m-%dT%H:%M:%SZ"))
            return Stamp(
                str(raw["site"]), int(raw["version"]), str(raw["hash"]), when, str(raw["by"])
            )
        except (ValueError, KeyError, TypeError):
            return None

    def __str__(self) -> str:
        return f"v{self.version} ({self.hash[:12]})"


def new_stamp(site: str, previous: Stamp | None, files: dict[str, str]) -> Stamp:
    version = previous.version + 1 if previous else 1
    try:
        by = getpass.getuser()
    except (KeyError, OSError):
        by = "unknown"
    return Stamp(site, version, render_hash(files), time.time(), by)


class StateDir:
    """state_dir/SITE/: the files of the site's last deploy and its stamp."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def site_dir(self, site: str) -> Path:
        return self.root / site

    def stamp(self, site: str) -> Stamp | None:
        try:
            return Stamp.parse((self.site_dir(site) / STAMP_FILE).read_text())
        except OSError:
            return None

    def files(self, site: str) -> dict[str, str] | None:
        d = self.site_dir(site)
        if not d.is_dir():
            return None
        return read_folder(d)

    def save(self, site: str, files: dict[str, str], stamp: Stamp) -> None:
        d = self.site_dir(site)
        tmp = d.with_name(d.name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
            if name == "manager.conf":
                (tmp / name).chmod(0o600)
        (tmp / STAMP_FILE).write_text(stamp.text())
        old = d.with_name(d.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if d.exists():
            d.rename(old)
        tmp.rename(d)
        shutil.rmtree(old, ignore_errors=True)


def read_folder(d: Path, names: set[str] | None = None) -> dict[str, str]:
    """The rendered files in a folder (every regular file but the stamp, or ``names``)."""
    out = {}
    for p in sorted(d.iterdir()):
        if p.name == STAMP_FILE or not p.is_file():
            continue
        if names is not None and p.name not in names:
            continue
        out[p.name] = p.read_text(encoding="utf-8", errors="replace")
    return out


def unified(site: str, old: dict[str, str], new: dict[str, str], old_label: str) -> list[str]:
    """Unified diffs, file by file, of a site's deployed files against a new render."""
    out: list[str] = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        out += difflib.unified_diff(
            (a or "").splitlines(keepends=True),
            (b or "").splitlines(keepends=True),
            fromfile=f"{site}/{name} ({old_label})" if a is not None else "/dev/null",
            tofile=f"{site}/{name} (new render)" if b is not None else "/dev/null",
        )
    return [line if line.endswith("\n") else line + "\n" for line in out]


def changed_files(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
