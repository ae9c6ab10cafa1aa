"""Build and cache a debootstrap root of Debian testing that holds Asterisk 22 for the lab.

Standard library only: `make test` runs `python3 -m ccbridge.lab.rootfs` with the system
Python, so the root builds while the venv is made and the code checked."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("ccbridge.lab")

SUITE = os.environ.get("CCBRIDGE_LAB_SUITE", "forky")
PACKAGES = ("asterisk", "asterisk-modules", "asterisk-core-sounds-en", "asterisk-moh-opsound-gsm")
_MARKER = ".ccbridge-root"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def default_lab_dir() -> Path:
    return Path(os.environ.get("CCBRIDGE_LAB_DIR", str(REPO_ROOT / ".lab")))


class LabError(RuntimeError):
    """The lab cannot be built or started; the message says what to do."""


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (CCBRIDGE_LAB_MIRROR overrides it)."""
    env = os.environ.get("CCBRIDGE_LAB_MIRROR")
    if env:
        return env
    candidates: list[str] = []
    sources_d = Path("/etc/apt/sources.list.d")
    for f in sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []:
        candidates += _deb822_uris(f.read_text(encoding="utf-8", errors="replace"))
    for f in [Path("/etc/apt/sources.list"), *sorted(sources_d.glob("*.list"))]:
        if f.is_file():
            candidates += _one_line_uris(f.read_text(encoding="utf-8", errors="replace"))
    for uri in candidates:
        # The security archive has no full suites: skip it.
        if "security" not in uri:
            return uri
    raise LabError("no Debian mirror found in /etc/apt/sources.list{,.d}; set CCBRIDGE_LAB_MIRROR")


def _deb822_uris(text: str) -> list[str]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            k, _, v = line.partition(":")
            fields[k.strip().lower()] = v.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            out += fields.get("uris", "").split()
    return out


def _one_line_uris(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if parts and parts[0] == "deb":
            rest = [p for p in parts[1:] if not p.startswith("[")]
            if rest:
                out.append(rest[0])
    return out


def _fingerprint() -> str:
    return hashlib.sha256(" ".join((SUITE, *PACKAGES)).encode()).hexdigest()[:16]


def root_ready(root: Path) -> bool:
    marker = root / _MARKER
    return marker.is_file() and marker.read_text().strip() == _fingerprint()


def _debootstrap_script() -> str | None:
    """Older debootstrap (bookworm's 1.0.128) has no script for forky; sid's works for it."""
    scripts = Path("/usr/share/debootstrap/scripts")
    if (scripts / SUITE).exists():
        return None
    if (scripts / "sid").exists():
        return str(scripts / "sid")
    return None


def build_root(root: Path) -> float:
    """Make the root if it is missing or its package list changed; return seconds spent."""
    if root_ready(root):
        return 0.0
    if os.geteuid() != 0:
        raise LabError("building the lab root needs root (debootstrap and chroot)")
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is missing: apt-get install debootstrap")
    start = time.monotonic()
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    if root.exists():
        shutil.rmtree(root)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    mirror = apt_mirror()
    cmd = [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(PACKAGES),
        SUITE,
        str(tmp),
        mirror,
    ]
    script = _debootstrap_script()
    if script:
        cmd.append(script)
    log.info("building the lab root: %s (about a minute)", " ".join(cmd))
    logfile = root.parent / "debootstrap.log"
    with open(logfile, "wb") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-15:]
        raise LabError(f"debootstrap failed ({rc}); see {logfile}:\n" + "\n".join(tail))
    _prepare(tmp)
    (tmp / _MARKER).write_text(_fingerprint() + "\n")
    tmp.rename(root)
    return time.monotonic() - start


def _prepare(root: Path) -> None:
    """Fix what Asterisk needs in a chroot: name resolution without DNS."""
    host = socket.gethostname()
    (root / "etc/hosts").write_text(
        f"127.0.0.1 localhost {host}\n::1 localhost ip6-localhost ip6-loopback\n"
    )
    # No resolver: look-ups must fail at once instead of hanging (the lab has no DNS).
    (root / "etc/resolv.conf").write_text("# ccbridge lab: no DNS\n")
    # Nothing in the root may start services on its own.
    (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
    (root / "usr/sbin/policy-rc.d").chmod(0o755)


def main() -> int:
    """Build the lab's root under $CCBRIDGE_LAB_DIR (default: .lab/) if it is missing."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = default_lab_dir() / "root"
    try:
        took = build_root(root)
    except LabError as exc:
        print(f"lab root: {exc}", file=sys.stderr)
        return 1
    print(f"lab root ready ({f'built in {took:.0f}s' if took else 'cached'}): {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
