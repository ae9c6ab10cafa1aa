"""Fixtures for tests against the real lab: Asterisk sites, SIPp agents, the bridge, AMI events.

The lab is one per machine (sites bind 127.0.N.1:5060), so a session holds an exclusive
lock on it; parallel test runs wait for each other instead of colliding.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import gc
import logging
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

import pytest

from ccbridge import loopdebug
from ccbridge.ami.client import SiteLink
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config, load_config
from ccbridge.lab.demo import bridge_log_file
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sipp import Agent, start_member_agents
from ccbridge.lab.sites import REPO_ROOT, Lab
from ccbridge.lab.tls import enable_lab_tls
from ccbridge.logs import KeyValueFormatter
from tests.logscan import Leak, scan
from tests.polling import until, until_sync
from tests.slowsteps import is_test_step

LAB_CONFIG = REPO_ROOT / "examples" / "lab.yaml"
LOCK_FILE = Path("/tmp/ccbridge-lab.lock")
# The team's limit for one event-loop callback: every bridge the integration tests run
# (subprocesses through $CCBRIDGE_LOOP_DEBUG_MS, in-process ones on the test's loop)
# reports longer ones, and a test during which one was reported fails.
SLOW_CALLBACK_MS = float(os.environ.get("CCB_TEST_SLOW_MS", "50"))
os.environ.setdefault(loopdebug.ENV, str(SLOW_CALLBACK_MS))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_config() -> Config:
    """examples/lab.yaml with TLS on between bangalore and manila (ccbridge.lab.tls): their
    AMI links over TLS, their trunks over SIP TLS with SRTP; certificates made for the run.

    The secrets go into the variables the config reads first: tests write copies of
    examples/lab.yaml into their temporary folders, where its relative secret files
    (../.lab/secrets) name nothing."""
    ensure_lab_secrets(export=True)
    return enable_lab_tls(load_config(LAB_CONFIG))


@pytest.fixture(scope="session")
def lab(lab_config: Config) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (chroot): run them as root, e.g. via make test")
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lab = Lab(lab_config)
        lab.down()  # a clean start: no site left from an interrupted run
        lab.up()
        logs = SessionLogs(lab)
        _SESSION_LOGS[:] = [logs]
        # What the run built so far (modules, ~2,100 collected tests, fixtures) lives until
        # it ends: out of the collector's reach, as Bridge.start does for the bridge's own.
        # A full collection of it paused this process's loop for 77-82 ms under load, on
        # an AMI read of the recorder, which the slow-callback gate then failed.
        gc.collect()
        gc.freeze()
        try:
            yield lab
        finally:
            lab.down()
            leaks = logs.finish(lab_config)
            _SESSION_LOGS.clear()
        if leaks:
            # The whole run's bridge logs (every subprocess bridge and every in-process
            # one): a full caller number, token, password or secret fails the run.
            shown = "\n".join(str(leak) for leak in leaks[:20])
            pytest.fail(f"{len(leaks)} leak(s) in this run's bridge logs:\n{shown}")


@pytest.fixture
def session_logs(lab: Lab) -> SessionLogs:
    """This session's bridge logs so far (the lab fixture keeps them)."""
    return _SESSION_LOGS[0]


class SessionLogs:
    """The bridge logs of one test session: what subprocess bridges append to bridge.log
    from now on, and every record of the in-process bridges (the `ccbridge` loggers, at
    INFO as `ccbridge run` logs by default) in a file of their own, both scanned at the end
    (tests/logscan.py)."""

    def __init__(self, lab: Lab) -> None:
        lab.log_dir.mkdir(parents=True, exist_ok=True)
        self.subprocess_log = lab.log_dir / "bridge.log"
        self.offset = self.subprocess_log.stat().st_size if self.subprocess_log.exists() else 0
        self.inprocess_log = lab.log_dir / "inprocess-bridge.log"
        self.handler = logging.FileHandler(self.inprocess_log, mode="w", encoding="utf-8")
        self.handler.setFormatter(KeyValueFormatter())
        self.logger = logging.getLogger("ccbridge")
        self.level = self.logger.level
        self.logger.setLevel(min(self.level or logging.INFO, logging.INFO))
        self.logger.addHandler(self.handler)

    def texts(self) -> list[tuple[str, str]]:
        self.handler.flush()
        out = [(self.inprocess_log.name, self.inprocess_log.read_text(errors="replace"))]
        if self.subprocess_log.exists():
            with open(self.subprocess_log, "rb") as f:
                f.seek(self.offset)
                out.append((self.subprocess_log.name, f.read().decode(errors="replace")))
        return out

    def finish(self, config: Config) -> list[Leak]:
        try:
            return [leak for name, text in self.texts() for leak in scan(name, text, config)]
        finally:
            self.logger.removeHandler(self.handler)
            self.logger.setLevel(self.level)
            self.handler.close()


_SESSION_LOGS: list[SessionLogs] = []


def udp_port_taken(host: str, port: int) -> bool:
    """True once something (a SIPp UAS) has bound ``host:port``: our bind is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


@pytest.fixture(scope="session")
def agents(lab: Lab) -> Iterator[dict[str, Agent]]:
    """A SIPp UAS for every configured agent, answering for the whole session."""
    # identity_log: what each phone was shown as the caller (callback tests read it).
    by_contact = start_member_agents(lab.config, 1800, lab.log_dir, identity_log=True)
    started = {a.name: by_contact[a.contact] for site in lab.config.sites for a in site.agents}
    until_sync(
        lambda: all(udp_port_taken(a.host, a.port) for a in by_contact.values()),
        5,
        "every SIPp agent listening on its port",
    )
    try:
        yield started
    finally:
        for agent in by_contact.values():
            agent.stop()


# Set to a verbose level (1-10), e.g. `CCB_TEST_ASTERISK_VERBOSE=4 pytest tests/integration`:
# each site's Asterisk logs its dialplan steps (AGI results, fallbacks, queue joins) during
# every lab test into verbose.log beside messages.log, which a failed test keeps and shows
# the tail of. Off by default: the load tests' thousands of calls would make Asterisk
# format and write ~30 lines each. How a call that should have reached the bridge took the
# static route was found this way (test_bad_input, eleventh session).
ASTERISK_VERBOSE_ENV = "CCB_TEST_ASTERISK_VERBOSE"
VERBOSE_LOG = "verbose.log"
KEPT_BRIDGE_LOG = 4 << 20  # bytes of bridge.log kept beside the Asterisk logs of a failed test


def asterisk_verbose_level() -> int | None:
    raw = os.environ.get(ASTERISK_VERBOSE_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 10:
        raise pytest.UsageError(f"{ASTERISK_VERBOSE_ENV}={raw!r}: a verbose level from 1 to 10")
    return int(raw)


@pytest.fixture(autouse=True)
def asterisk_verbose(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each site's verbose trace of this test (``ASTERISK_VERBOSE_ENV``), started afresh.
    A site restarted by the test logs to messages.log only from then on."""
    level = asterisk_verbose_level()
    if level is None or "lab" not in request.fixturenames:
        yield
        return
    lab: Lab = request.getfixturevalue("lab")
    channels = []
    for site in lab.config.sites:
        inside = f"{lab.dirs(site).inside['log']}/{VERBOSE_LOG}"
        (lab.dirs(site).host("log") / VERBOSE_LOG).unlink(missing_ok=True)
        lab.cli(site, f"logger add channel {inside} notice,warning,error,verbose({level})")
        channels.append((site, inside))
    try:
        yield
    finally:
        for site, inside in channels:
            lab.cli(site, f"logger remove channel {inside}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    # A test that failed while the lab fixture was still being set up (e.g. waiting for
    # the lab lock until pytest-timeout) has no lab to keep logs from.
    lab: Lab | None = getattr(item, "funcargs", {}).get("lab")
    if report.failed and lab is not None:
        keep = lab.dir / "failed" / item.name
        keep.mkdir(parents=True, exist_ok=True)
        for site in lab.config.sites:
            verbose = lab.dirs(site).host("log") / VERBOSE_LOG
            for src in (lab.messages_log(site), lab.console_log(site), verbose):
                if src.exists():
                    shutil.copyfile(src, keep / f"{site.name}-{src.name}")
            tail = _tail(lab.messages_log(site))
            report.sections.append((f"asterisk {site.name} messages.log (tail)", tail))
            if asterisk_verbose_level() is not None and verbose.exists():
                shown = _tail(verbose, 150)
                report.sections.append((f"asterisk {site.name} {VERBOSE_LOG} (tail)", shown))
        # The bridge subprocesses' own log (ccbridge.lab.demo appends every one of them
        # there): its last part, where a failure of a bridge's is told.
        bridge_log = bridge_log_file(lab)
        if bridge_log.exists():
            with open(bridge_log, "rb") as src_log:
                src_log.seek(max(0, bridge_log.stat().st_size - KEPT_BRIDGE_LOG))
                (keep / "bridge.log").write_bytes(src_log.read())
        report.sections.append(("kept Asterisk and bridge logs", str(keep)))
    return report


@pytest.fixture(autouse=True)
async def no_slow_callbacks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fail the test if a callback ran over SLOW_CALLBACK_MS on its loop (in-process
    bridges, AMI observers) or in a bridge subprocess of the lab.

    A step of the test function's own coroutine (``coro=<test_...>``), or of an async
    fixture's set-up or tear-down (tests/slowsteps.py), is test code, not the bridge: it
    is listed in the test's report ("slow test steps") but does not fail it, since on
    this shared 2-core machine a plain step of test code sometimes takes 60-80 ms of wall
    time (test_prometheus's fixture that opens an aiohttp client session took 64 ms once,
    with no collection in it, in a lab run on a machine just booted). Known blocking
    calls in tests run in threads instead. Nor does a callback that was over the limit
    only by the time its thread waited for a CPU (the kernel's run-queue wait,
    ccbridge/loopdebug.py), or only because the host ran the CPUs several times slower
    meanwhile (under the limit at the host's normal speed, the same module): it is
    listed, not failed.
    """
    loop = asyncio.get_running_loop()
    found = loopdebug.report_slow_callbacks(loop, SLOW_CALLBACK_MS)
    bridge_log = _bridge_log(request)
    offset = bridge_log.stat().st_size if bridge_log and bridge_log.exists() else 0
    try:
        yield
    finally:
        loopdebug.stop_reporting(loop, found)
    own = [line for line in found.lines if is_test_step(line)]
    if own:
        request.node.add_report_section("call", "slow test steps", "\n".join(own))
    if found.preempted:  # under the limit but for a wait for a CPU or the host's slow CPU
        request.node.add_report_section(
            "call",
            "callbacks slow only by their wait for a CPU or the host's slow CPU",
            "\n".join(found.preempted),
        )
    lines = [line for line in found.lines if line not in own]
    lines += _slow_lines(bridge_log, offset)
    if lines:
        pytest.fail(f"slow callbacks (over {SLOW_CALLBACK_MS:.0f} ms):\n" + "\n".join(lines))


def _slow_lines(bridge_log: Path | None, offset: int) -> list[str]:
    if bridge_log is None or not bridge_log.exists():
        return []
    with open(bridge_log, "rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    return [f"bridge.log: {line}" for line in loopdebug.unexplained(text)]


def _bridge_log(request: pytest.FixtureRequest) -> Path | None:
    """Where BridgeProcess (ccbridge.lab.demo) appends the bridge subprocess's output."""
    if "lab" not in request.fixturenames:
        return None
    lab: Lab = request.getfixturevalue("lab")
    return bridge_log_file(lab)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class AmiRecorder:
    """An independent AMI observer per site: records every event the tests assert on."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.events: list[tuple[str, dict[str, str]]] = []
        self.links: list[SiteLink] = []

    def _on_event(self, site: str, event: Mapping[str, str]) -> None:
        self.events.append((site, dict(event)))

    async def start(self) -> None:
        for site in self.config.sites:
            link = SiteLink(site.name, site.ami, self._on_event)
            self.links.append(link)
            await link.start()
        await until(
            lambda: all(link.connected for link in self.links),
            10,
            "the AMI recorder to connect to every site",
        )

    async def stop(self) -> None:
        for link in self.links:
            await link.stop()

    def connected(self, site: str) -> bool:
        """True while the recorder's link to ``site`` is up: events there are seen."""
        return any(link.site_name == site and link.connected for link in self.links)

    def named(self, name: str, site: str | None = None) -> list[dict[str, str]]:
        return [e for s, e in self.events if e.get("Event") == name and (site is None or s == site)]

    async def wait_for(
        self, predicate: Callable[[], bool], within: float = 10.0, what: str = "condition"
    ) -> None:
        """`until`, with the names of the events seen so far in the failure message."""
        try:
            await until(predicate, within, what)
        except AssertionError as timed_out:
            seen = sorted({e.get("Event", "?") for _, e in self.events})
            raise AssertionError(f"{timed_out}; events seen: {seen}") from None


@pytest.fixture
async def ami(lab: Lab, lab_config: Config) -> AsyncIterator[AmiRecorder]:
    rec = AmiRecorder(lab_config)
    await rec.start()
    try:
        yield rec
    finally:
        await rec.stop()


async def guards_forward(lab: Lab, within: float = 10.0) -> None:
    """Every site's AGI guard passes calls to the bridge, and goes on doing so: call it
    once the bridge has finished its first sync (its health route says "alive" from then on).

    A guard marks a bridge up one health check after it answers, and calls before that
    take the static route. One request forwarded is not enough: a check sent before the
    sync finished (answered "syncing") may still be in flight, and after one refused
    while no bridge listened (the previous test's had just stopped) it is the second
    failure that marks the bridge down, for a check interval, after the request got
    through: the first call of a test then took the static route (1 of 2 in
    test_bad_input, seen with the lab's verbose log). Checks sent before this call end
    within the check timeout, so a request forwarded after that time stays forwarded.
    The check blocks, so it runs in a thread (the bridge may share this event loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    guard = lab.config.bridge.agi_guard
    settled = loop.time()
    if guard is not None:
        settled += min(guard.check_interval, guard.route_timeout) + 0.05
    for site in lab.config.sites:
        while loop.time() < settled or not await asyncio.to_thread(lab.guard_forwards, site):
            assert loop.time() < deadline, f"{site.name}'s AGI guard not forwarding"
            await asyncio.sleep(0.05)


BridgeFactory = Callable[..., "contextlib.AbstractAsyncContextManager[Bridge]"]


@pytest.fixture
def bridge_at(lab: Lab, lab_config: Config) -> BridgeFactory:
    """`async with bridge_at(datetime) as b:` a started bridge whose clock starts there."""

    @contextlib.asynccontextmanager
    async def factory(
        at: datetime | None = None, config: Config | None = None
    ) -> AsyncIterator[Bridge]:
        bridge = Bridge(config or lab_config, Clock(at))
        await bridge.start()
        try:
            await until(
                lambda: (
                    bridge.state.synced
                    and all(s.up for s in bridge.state.sites.values())
                    and bridge.first_sync_done()
                ),
                10,
                f"the bridge to sync every site: {sorted(bridge.state.sites)}",
            )
            await guards_forward(lab)
            yield bridge
        finally:
            await bridge.stop()

    return factory


def clear_held_routes(lab: Lab) -> None:
    """Forget every held route and heartbeat in every site's globals (a dialplan reload
    with clearglobalvars=yes): the next call without a bridge takes the static fallback,
    as before the bridge ever ran."""
    for site in lab.config.sites:
        out = lab.cli(site, "dialplan reload")
        assert "reloaded" in out.lower(), out


def without_held_routes(config: Config) -> Config:
    """The config with the bridge writing no held routes (the dialplan still reads them)."""
    held = dataclasses.replace(config.routing.held_routes, enabled=False)
    return dataclasses.replace(
        config, routing=dataclasses.replace(config.routing, held_routes=held)
    )


async def fresh_queue_stats(lab: Lab, site: str) -> None:
    """Forget app_queue's hold and talk averages at ``site`` before a bridge syncs them.

    The expected wait the router compares with its overflow thresholds is built from the
    queue's average talk time. Earlier tests (the hung-bridge runs place thousands of
    sub-second calls) leave it near zero, so a busy queue would look like a short wait
    and a test of load overflow would depend on which tests ran before it. After a reset
    the bridge uses its default handle time until the test's own calls complete.
    """
    out = await asyncio.to_thread(lab.cli, lab.config.site(site), "queue reset stats")
    assert "reset" in out.lower() or not out.strip(), out


JOINED = "CcbTestJoin"  # the UserEvent of a call reaching a queue answering() replaced


@contextlib.contextmanager
def answering(lab: Lab, queues: dict[str, str]) -> Iterator[None]:
    """The queues (site -> queue) answer at once, for longer than a caller talks (the
    caller hangs up, as its scenario expects); each call reaching one says so with a
    UserEvent. For tests about the route step, trunks or bad input, not agents: with
    the lab's (one or two a queue, 5 s wrap-up) their calls waited ~30 s in queues."""
    for name, queue in queues.items():
        site = lab.config.site(name)
        for priority, app in enumerate(
            (f"UserEvent({JOINED})", "Answer()", "Wait(5)", "Hangup()"), 1
        ):
            lab.cli(site, f"dialplan add extension {queue},{priority},{app} into ccb-queue replace")
        shown = lab.cli(site, f"dialplan show {queue}@ccb-queue")
        assert JOINED in shown, shown
    try:
        yield
    finally:
        for name in queues:
            lab.cli(lab.config.site(name), "dialplan reload")


def answered_at(ami: AmiRecorder, site: str, since: int = 0, until: int | None = None) -> int:
    """Calls that reached an answering queue at ``site`` (events ``since`` to ``until``)."""
    return sum(1 for s, e in ami.events[since:until] if s == site and e.get("UserEvent") == JOINED)
