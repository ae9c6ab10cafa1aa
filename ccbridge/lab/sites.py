"""Run one Asterisk per configured site, each with its own directories and loopback address."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from ccbridge.agi import health as agi_health
from ccbridge.config.model import Config, Site
from ccbridge.lab.rootfs import REPO_ROOT as REPO_ROOT
from ccbridge.lab.rootfs import LabError, build_root
from ccbridge.lab.rootfs import default_lab_dir as default_lab_dir
from ccbridge.render import GUARD_FILE, render_site, tls_copies

if TYPE_CHECKING:
    from ccbridge.lab.edge import LabEdge

log = logging.getLogger("ccbridge.lab")

BASE_CONFIGS = REPO_ROOT / "asterisk"


@functools.lru_cache(maxsize=1)
def _base_environment() -> jinja2.Environment:
    """The lab's own templates (asterisk.conf.j2), compiled once a process: a site
    restart renders them again beside an in-process bridge (ccbridge.render's cache)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(BASE_CONFIGS)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True, slots=True)
class SiteDirs:
    """A site's directories as Asterisk sees them (inside) and as this process sees them."""

    inside: dict[str, str]
    host_root: Path  # prefix that maps an inside path to a host path

    def host(self, key: str) -> Path:
        return Path(str(self.host_root) + self.inside[key])


def _modules_dir(prefix: Path) -> str:
    for cand in (
        "usr/lib/x86_64-linux-gnu/asterisk/modules",
        "usr/lib/aarch64-linux-gnu/asterisk/modules",
        "usr/lib/asterisk/modules",
    ):
        if (prefix / cand).is_dir():
            return "/" + cand
    raise LabError(f"no Asterisk modules directory under {prefix}")


class Lab:
    """The local multi-site lab: build, start, check and stop the sites of one config."""

    def __init__(
        self, config: Config, lab_dir: Path | None = None, *, system: bool | None = None
    ) -> None:
        self.config = config
        self.dir = (lab_dir or default_lab_dir()).resolve()
        if system is None:
            system = os.environ.get("CCBRIDGE_LAB_SYSTEM_ASTERISK") == "1"
        self.system = system
        self.root = Path("/") if system else self.dir / "root"
        self.run_dir = self.dir / "run"
        # Children started by this object: kept so they are reaped, not left as zombies.
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = self.dir / "logs"

    # -- layout ------------------------------------------------------------
    def etc_inside(self, site: Site) -> str:
        """The site's config folder as its Asterisk sees it (needs no built root)."""
        if self.system:
            return f"{self.dir}/sites/{site.name}/etc"
        return f"/etc/ast-{site.name}"

    def dirs(self, site: Site) -> SiteDirs:
        if self.system:
            base = f"{self.dir}/sites/{site.name}"
            inside = {
                "etc": self.etc_inside(site),
                "db": f"{base}/db",
                "spool": f"{base}/spool",
                "run": f"{base}/run",
                "log": f"{base}/log",
                "cache": f"{base}/cache",
                "varlib": "/var/lib/asterisk",
                "data": "/usr/share/asterisk",
                "modules": _modules_dir(Path("/")),
            }
            return SiteDirs(inside, Path(""))
        n = site.name
        inside = {
            "etc": self.etc_inside(site),
            "db": f"/var/lib/ast-{n}",
            "spool": f"/var/spool/ast-{n}",
            "run": f"/var/run/ast-{n}",
            "log": f"/var/log/ast-{n}",
            "cache": f"/var/cache/ast-{n}",
            "varlib": "/var/lib/asterisk",
            "data": "/usr/share/asterisk",
            "modules": _modules_dir(self.root),
        }
        return SiteDirs(inside, self.root)

    def pidfile(self, site: Site) -> Path:
        return self.run_dir / f"{site.name}.pid"

    def guard_pidfile(self, site: Site) -> Path:
        return self.run_dir / f"{site.name}.guard.pid"

    def guard_config(self, site: Site) -> Path:
        """The site's rendered haproxy.cfg (written with its Asterisk configs)."""
        return self.dirs(site).host("etc") / GUARD_FILE

    def console_log(self, site: Site) -> Path:
        return self.log_dir / f"{site.name}.console.log"

    def messages_log(self, site: Site) -> Path:
        return self.dirs(site).host("log") / "messages.log"

    # -- build and configure -------------------------------------------------
    def prepare(self) -> float:
        """Build the root when needed; returns the seconds the build took (0 when cached)."""
        if self.system:
            if shutil.which("asterisk") is None:
                raise LabError("CCBRIDGE_LAB_SYSTEM_ASTERISK=1 but no asterisk on PATH")
            return 0.0
        return build_root(self.root)

    def install_configs(self, site: Site) -> None:
        d = self.dirs(site)
        for key in ("etc", "db", "spool", "run", "log", "cache"):
            d.host(key).mkdir(parents=True, exist_ok=True)
        etc = d.host("etc")
        for name, text in render_site(self.config, site).items():
            (etc / name).write_text(text, encoding="utf-8")
        (etc / "manager.conf").chmod(0o600)
        # The site's certificate, key and CA (sites.X.tls): the lab's install_dir is
        # etc/keys (ccbridge.lab.tls), where the rendered configs name them.
        for name, src in tls_copies(site).items():
            dest = etc / name
            dest.parent.mkdir(mode=0o700, exist_ok=True)
            shutil.copyfile(src, dest)
            dest.chmod(0o600)
        for base in sorted(BASE_CONFIGS.iterdir()):
            if base.suffix == ".conf":
                shutil.copyfile(base, etc / base.name)
        env = _base_environment()
        index = [s.name for s in self.config.sites].index(site.name) + 1
        (etc / "asterisk.conf").write_text(
            env.get_template("asterisk.conf.j2").render(site=site, dirs=d.inside, site_index=index)
        )

    # -- processes -------------------------------------------------------------
    def _command(self, site: Site, *args: str) -> list[str]:
        conf = self.dirs(site).inside["etc"] + "/asterisk.conf"
        cmd = ["/usr/sbin/asterisk", "-C", conf, *args]
        return cmd if self.system else ["chroot", str(self.root), *cmd]

    def pid(self, site: Site) -> int | None:
        try:
            pid = int(self.pidfile(site).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start_site(self, site: Site) -> int:
        if (pid := self.pid(site)) is not None:
            return pid
        self.install_configs(site)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.console_log(site), "ab") as out:
            proc = subprocess.Popen(
                self._command(site, "-f", "-n", "-q"),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `ccbridge lab up`; stopped by `lab down`
            )
        self._procs[site.name] = proc
        self.pidfile(site).write_text(f"{proc.pid}\n")
        self.start_guard(site)
        return proc.pid

    # -- the AGI guard beside each site (bridge.agi_guard) ---------------------------
    def guard_pid(self, site: Site) -> int | None:
        try:
            pid = int(self.guard_pidfile(site).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start_guard(self, site: Site, timeout: float = 5.0) -> int | None:
        """Run the site's HAProxy in the foreground of its own session; wait until it
        listens. Nothing to do when the config has no guard."""
        guard = self.config.bridge.agi_guard
        if guard is None:
            return None
        if (pid := self.guard_pid(site)) is not None:
            return pid
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise LabError("bridge.agi_guard needs HAProxy: apt-get install haproxy")
        cfg = self.guard_config(site)
        if not cfg.exists():
            self.install_configs(site)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{site.name}.guard.log", "ab") as out:
            proc = subprocess.Popen(
                [binary, "-db", "-f", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs[f"{site.name}.guard"] = proc
        self.guard_pidfile(site).write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while not _listening(site.sip.host, guard.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = _tail(self.log_dir / f"{site.name}.guard.log")
                self.stop_guard(site)
                raise LabError(f"site {site.name}: the AGI guard did not start\n{tail}")
            time.sleep(0.05)
        return proc.pid

    def stop_guard(self, site: Site) -> None:
        pid = self.guard_pid(site)
        if pid is not None:
            _signal(pid, signal.SIGTERM)  # -db: a hard stop, sessions closed at once
            _wait_gone(pid, 5.0)
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)
        proc = self._procs.pop(f"{site.name}.guard", None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
        self.guard_pidfile(site).unlink(missing_ok=True)

    def guard_forwards(self, site: Site, timeout: float = 1.0) -> bool:
        """A `health` request through the site's guard reaches a live bridge (blocking:
        run it in a thread when the bridge shares the caller's event loop)."""
        guard = self.config.bridge.agi_guard
        if guard is None:
            return True
        try:
            with socket.create_connection((site.sip.host, guard.port), timeout=timeout) as s:
                s.settimeout(timeout)
                s.sendall(agi_health.check_request().encode())
                got = b""
                while b"\n" not in got:
                    chunk = s.recv(4096)
                    if not chunk:
                        return False  # the guard has no bridge up
                    got += chunk
                s.sendall((agi_health.REPLY + "\n").encode())
                return agi_health.COMMAND.encode() in got
        except OSError:
            return False

    def reconfigure_guards(self, config: Config) -> None:
        """Restart only the guards with another config (other bridges behind them); the
        sites' dialplans must not change (the same guard ports)."""
        for site in self.config.sites:
            self.stop_guard(site)
        self.config = config
        for site in config.sites:
            text = render_site(config, site).get(GUARD_FILE)
            if text is not None:
                self.guard_config(site).write_text(text, encoding="utf-8")
            self.start_guard(site)

    def stop_site(self, site: Site, timeout: float = 10.0) -> None:
        self.stop_guard(site)
        pid = self.pid(site)
        if pid is not None:
            _signal(pid, signal.SIGCONT)  # a hung (SIGSTOPped) site must be able to exit
            _signal(pid, signal.SIGTERM)
            _wait_gone(pid, timeout)
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)
        proc = self._procs.pop(site.name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
        self.pidfile(site).unlink(missing_ok=True)

    def signal_site(self, site: Site, sig: signal.Signals) -> None:
        pid = self.pid(site)
        if pid is None:
            raise LabError(f"site {site.name} is not running")
        os.kill(pid, sig)

    def cli(self, site: Site, command: str, timeout: float = 10.0) -> str:
        """Run an Asterisk CLI command on a site through its own control socket."""
        out = subprocess.run(
            self._command(site, "-rx", command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return out.stdout + out.stderr

    def up(self, timeout: float = 60.0) -> dict[str, float]:
        """Start every site and wait until each answers AMI, then the SIP edge when the
        config enables one; returns timings in seconds."""
        t0 = time.monotonic()
        build = self.prepare()
        t1 = time.monotonic()
        for site in self.config.sites:
            self.start_site(site)
        for site in self.config.sites:
            self.wait_ami(site, timeout=max(5.0, timeout - (time.monotonic() - t1)))
        if self.config.edge is not None and self.config.edge.enabled:
            self.edge().start()
        return {"build": build, "start": time.monotonic() - t1, "total": time.monotonic() - t0}

    def reconfigure(self, config: Config, timeout: float = 30.0) -> None:
        """Run the sites with another config (a test's variant of the same sites): a site
        whose files change restarts with them (every module reads its files again); one
        whose files stay the same keeps running, as a restart would change nothing."""
        keep = {
            s.name
            for s in config.sites
            if self._files(self.config, s.name) == self._files(config, s.name)
        }
        for site in self.config.sites:
            if site.name not in keep:
                self.stop_site(site)
        self.config = config
        for site in config.sites:
            self.start_site(site)  # nothing to do for a site still running
        for site in config.sites:
            self.wait_ami(site, timeout)

    def _files(self, config: Config, name: str) -> object:
        """What install_configs writes for site ``name`` under ``config`` (None: no site)."""
        site = next((s for s in config.sites if s.name == name), None)
        if site is None:
            return None
        index = [s.name for s in config.sites].index(name)
        return site, index, render_site(config, site), tls_copies(site)

    def wait_ami(self, site: Site, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.pid(site) is None:
                tail = _tail(self.console_log(site)) + _tail(self.messages_log(site))
                raise LabError(f"site {site.name}: Asterisk exited during start-up\n{tail}")
            try:
                if ami_login_ok(site, timeout=2.0):
                    # AMI answers before every module is loaded: wait for the full boot.
                    self.cli(
                        site, "core waitfullybooted", timeout=max(1.0, deadline - time.monotonic())
                    )
                    return
                last = "login refused"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise LabError(f"site {site.name}: AMI not ready after {timeout:.0f}s ({last})")

    def edge(self, config: Config | None = None) -> LabEdge:
        """The lab's SIP edge for ``config`` (default: the lab's own), started or not."""
        from ccbridge.lab.edge import LabEdge  # it imports this module's helpers

        return LabEdge(config or self.config, self.dir)

    def down(self) -> None:
        if self.config.edge is not None:
            self.edge().stop()
        for site in self.config.sites:
            self.stop_site(site)
        # Leave no process behind, even from an earlier lab whose pid files are gone:
        # Asterisks in the root, and SIPp agents whose stats go to this lab's logs.
        strays = [] if self.system else processes_in(self.root)
        strays += processes_mentioning(str(self.log_dir), "sipp")
        strays += processes_mentioning(
            str(self.root) if not self.system else str(self.dir), "haproxy"
        )
        strays += processes_mentioning(str(self.dir), "kamailio")  # the SIP edge's
        for pid in strays:
            _signal(pid, signal.SIGCONT)
            _signal(pid, signal.SIGKILL)

    def status(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for site in self.config.sites:
            pid = self.pid(site)
            try:
                ami = pid is not None and ami_login_ok(site, timeout=1.0)
            except OSError:
                ami = False
            out[site.name] = {
                "pid": pid,
                "sip": str(site.sip),
                "ami": ami,
                "guard": self.guard_pid(site),
            }
        return out


def ami_login_ok(site: Site, timeout: float) -> bool:
    """Connect to the site's AMI (over TLS, verified, when the bridge's link uses TLS), read
    the banner and log in: True when it says Success."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(
            socket.create_connection((site.ami.host, site.ami.link_port), timeout=timeout)
        )
        s = raw
        if site.ami.tls is not None:
            ctx = ssl.create_default_context(cafile=site.ami.tls.ca)
            s = stack.enter_context(ctx.wrap_socket(raw, server_hostname=site.ami.host))
        return _ami_login(s, site, timeout)


def _ami_login(s: socket.socket, site: Site, timeout: float) -> bool:
    """Read the banner, log in and log off; True when the login said Success."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("AMI closed before its banner")
        buf += chunk
    if not buf.startswith(b"Asterisk Call Manager/"):
        raise OSError(f"not an AMI banner: {buf[:60]!r}")
    s.sendall(
        f"Action: Login\r\nUsername: {site.ami.username}\r\n"
        f"Secret: {site.ami.secret.reveal()}\r\nEvents: off\r\n\r\n".encode()
    )
    buf = buf.split(b"\r\n", 1)[1]
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("AMI closed during login")
        buf += chunk
    ok = b"Response: Success" in buf.split(b"\r\n\r\n", 1)[0]
    s.sendall(b"Action: Logoff\r\n\r\n")
    # Let Asterisk close first: over TLS, a peer that vanished makes it log an ERROR
    # (SSL_shutdown failed: Broken pipe) for every probe.
    with contextlib.suppress(OSError):
        while s.recv(4096):
            pass
    return ok


def processes_in(root: Path) -> list[int]:
    """PIDs of processes whose root directory is ``root`` (chrooted lab sites)."""
    found = []
    target = str(root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "root") == target:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def processes_mentioning(text: str, program: str) -> list[int]:
    """PIDs of ``program`` processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(program.encode()) and any(text.encode() in a for a in argv):
            found.append(int(entry.name))
    return found


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
    except OSError:
        return ""
