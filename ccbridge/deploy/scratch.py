"""A throwaway Asterisk that loads one site's rendered files: in its own temporary folders
and network namespace (it binds nothing the running lab or the host uses), then stopped."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ccbridge.lab.rootfs import root_ready
from ccbridge.lab.sites import BASE_CONFIGS, _modules_dir, default_lab_dir

ASTERISK = "/usr/sbin/asterisk"


class ScratchError(RuntimeError):
    """No Asterisk to verify with, or it did not start: the message says what to do."""


@dataclass(frozen=True, slots=True)
class AsteriskInstall:
    """An Asterisk to verify with: the lab's debootstrap root (chroot) or the host's."""

    root: Path | None  # None: the host's own /usr/sbin/asterisk

    def host(self, inside: str) -> Path:
        return Path(str(self.root) + inside) if self.root else Path(inside)

    def command(self, conf: str, *args: str) -> list[str]:
        cmd = [ASTERISK, "-C", conf, *args]
        return ["chroot", str(self.root), *cmd] if self.root else cmd

    @property
    def sounds(self) -> Path:
        return self.host("/usr/share/asterisk/sounds")

    def resolve(self, path: Path) -> Path:
        """``path`` with the root's absolute symlinks followed inside the root (Debian's
        sounds/en is a link through /etc/alternatives)."""
        for _ in range(16):
            if not path.is_symlink():
                return path
            target = os.readlink(path)
            if target.startswith("/"):
                path = self.host(target) if self.root else Path(target)
            else:
                path = path.parent / target
        return path


def find_asterisk() -> AsteriskInstall:
    """The lab root when it is built, else an installed Asterisk."""
    root = Path(os.environ.get("CCBRIDGE_VERIFY_ROOT", str(default_lab_dir() / "root")))
    if root_ready(root):
        return AsteriskInstall(root)
    if Path(ASTERISK).exists():
        return AsteriskInstall(None)
    raise ScratchError(
        f"no Asterisk to verify with: build the lab root ({root}) with `ccbridge lab prepare` "
        "or install asterisk"
    )


_ASTERISK_CONF = """\
; scratch Asterisk of `ccbridge render --verify`: every folder is its own
[directories]
astcachedir => {d}/cache
astetcdir => {d}/etc
astmoddir => {modules}
astvarlibdir => /var/lib/asterisk
astdbdir => {d}/db
astkeydir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => {d}/spool
astrundir => {d}/run
astlogdir => {d}/log
astsbindir => /usr/sbin

[options]
verbose=0
debug=0
systemname=ccbridge-verify
maxfiles=4096
"""

# Our own logger.conf: the site's may log nothing to a file; its own text is not checked.
_LOGGER_CONF = "[general]\ndateformat=%F %T\n\n[logfiles]\nverify.log => notice,warning,error\n"
LOG_LINE = re.compile(r"^\[[^\]]*\] (WARNING|ERROR)\[\d+\] ([\w.]+): (.*)$")


# Options naming a site's own key material (PJSIP transports, manager.conf's AMI TLS): the
# files live at the site, not in the render.
_KEY_OPTIONS = re.compile(
    r"^(\s*(?:cert_file|priv_key_file|ca_list_file|ca_list_path|tlscertfile|tlsprivatekey"
    r"|tlscafile|tlscapath)\s*=>?\s*)(\S+)(.*)$",
    re.M,
)


class Scratch:
    """One scratch Asterisk holding ``files`` (name -> text) as its configuration."""

    def __init__(self, install: AsteriskInstall, files: dict[str, str]) -> None:
        self.install = install
        self.files = files
        # key files the site has and this machine does not: (file, line, path)
        self.stand_ins: list[tuple[str, int, str]] = []
        self._proc: subprocess.Popen[bytes] | None = None
        base = install.host("/tmp")
        base.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="ccb-verify-", dir=base))
        self.inside = "/tmp/" + self.dir.name
        self.conf = f"{self.inside}/etc/asterisk.conf"

    def start(self, timeout: float = 30.0) -> None:
        etc = self.dir / "etc"
        for sub in ("etc", "run", "db", "log", "spool", "cache"):
            (self.dir / sub).mkdir()
        for base in sorted(BASE_CONFIGS.glob("*.conf")):
            shutil.copyfile(base, etc / base.name)
        for name, text in self.files.items():
            (etc / name).write_text(self._with_stand_in_keys(name, text), encoding="utf-8")
        modules = _modules_dir(self.install.root or Path("/"))
        (etc / "asterisk.conf").write_text(_ASTERISK_CONF.format(d=self.inside, modules=modules))
        (etc / "logger.conf").write_text(_LOGGER_CONF)
        # A network namespace of its own holding only a loopback: the site's bind
        # addresses work and clash with nothing, and no qualify reaches a real peer.
        script = 'ip link set lo up && exec "$@"'
        cmd = ["unshare", "--net", "sh", "-c", script, "sh"]
        cmd += self.install.command(self.conf, "-f", "-n", "-q")
        with open(self.dir / "console.log", "wb") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ctl = self.dir / "run" / "asterisk.ctl"
        deadline = time.monotonic() + timeout
        while not ctl.exists():
            if self._proc.poll() is not None:
                raise ScratchError(f"the scratch Asterisk exited at start:\n{self.console()}")
            if time.monotonic() > deadline:
                raise ScratchError(f"the scratch Asterisk did not start in {timeout:.0f}s")
            time.sleep(0.05)
        booted = self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
        if "fully booted" not in booted:
            raise ScratchError(f"the scratch Asterisk did not boot: {booted.strip()}")

    def _with_stand_in_keys(self, name: str, text: str) -> str:
        """``text`` with every key file this machine lacks replaced by a throwaway
        self-signed one, so that a TLS transport loads and the rest is still checked
        (same line numbers: only the value changes)."""

        def swap(m: re.Match[str]) -> str:
            path = m.group(2)
            if self.install.host(path).exists():
                return m.group(0)
            line = text.count("\n", 0, m.start()) + 1
            self.stand_ins.append((name, line, path))
            key = "key" if "key" in m.group(1) else "cert"
            return f"{m.group(1)}{self._throwaway(key)}{m.group(3)}"

        return _KEY_OPTIONS.sub(swap, text)

    def _throwaway(self, which: str) -> str:
        """A one-day self-signed certificate and key in the scratch folder (inside path)."""
        key, cert = self.dir / "stand-in.key", self.dir / "stand-in.crt"
        if not cert.exists():
            out = subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                 "-subj", "/CN=ccbridge-verify", "-keyout", str(key), "-out", str(cert)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                raise ScratchError(f"openssl could not make a stand-in key: {out.stderr[-300:]}")
        return f"{self.inside}/stand-in.{'key' if which == 'key' else 'crt'}"

    def console(self) -> str:
        try:
            return (self.dir / "console.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def cli(self, command: str, timeout: float = 10.0) -> str:
        out = subprocess.run(
            self.install.command(self.conf, "-rx", command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return out.stdout + out.stderr

    def log_problems(self) -> list[tuple[str, str, str]]:
        """(level, source file, message) of every WARNING and ERROR Asterisk logged."""
        try:
            text = (self.dir / "log" / "verify.log").read_text(errors="replace")
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            m = LOG_LINE.match(line)
            if m:
                out.append((m.group(1), m.group(2), m.group(3)))
        return out

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.cli("core stop now", timeout=5.0)
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5.0)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def scratch_asterisk(install: AsteriskInstall, files: dict[str, str]) -> Iterator[Scratch]:
    s = Scratch(install, files)
    try:
        s.start()
        yield s
    finally:
        s.stop()
