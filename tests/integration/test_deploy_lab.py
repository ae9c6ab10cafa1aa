"""`ccbridge deploy` on the lab: a template change rolled out over three sites while SIPp
calls them, a broken template refused by --verify, a change that loads but fails the
post-check rolled back while the site keeps serving."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccbridge.config import Config
from ccbridge.deploy.state import STAMP_FILE, Stamp
from ccbridge.lab.sipp import Agent, CallResult, place_calls
from ccbridge.lab.sites import REPO_ROOT, Lab
from tests.integration.conftest import BridgeFactory

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # every site open
CALLS = {  # site -> (SIP address, a number it answers)
    "bangalore": ("127.0.1.1:5060", "+918000000001"),
    "dhaka": ("127.0.2.1:5060", "+8809600000001"),
    "manila": ("127.0.3.1:5060", "+6328000001"),
}


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    d = tmp_path / "dialplans"
    shutil.copytree(REPO_ROOT / "dialplans", d)
    return d


@pytest.fixture
def deploy_config(tmp_path: Path, lab_config: Config) -> Path:
    """The session's lab config (examples/lab.yaml with the lab's TLS, written by
    enable_lab_tls), deploying into the lab with its state and lock in tmp_path."""
    text = Path(lab_config.source).read_text()
    text = re.sub(r"(?m)^  state_dir: .*$", f"  state_dir: {tmp_path / 'state'}", text)
    # a failing post-check is retried until reload_timeout: short here, the reloads are
    # synchronous and the rollback test would wait it out
    text = re.sub(r"(?m)^  hold_off: .*$", "  hold_off: 1\n  reload_timeout: 3", text)
    assert str(tmp_path / "state") in text
    path = tmp_path / "lab.yaml"  # secrets: the lab's environment variables
    path.write_text(text)
    return path


@pytest.fixture
def restore_lab(lab: Lab) -> object:
    """Put the lab's own files back after a test deployed others."""
    yield None
    for site in lab.config.sites:
        lab.install_configs(site)
        (lab.dirs(site).host("etc") / STAMP_FILE).unlink(missing_ok=True)
        for module in ("pbx_config.so", "app_queue.so", "res_pjsip.so"):
            lab.cli(site, f"module reload {module}")


async def ccbridge(*args: str) -> tuple[int, str]:
    """Run the command line as an admin does; never on this event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ccbridge.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def move_ami(config: Path, site: str, host: str, elsewhere: str) -> None:
    """Point a site's AMI at an address nothing listens on (the YAML enable_lab_tls wrote)."""
    text = config.read_text()
    start = text.index(f"\n  {site}:\n")
    at = text.index(f"      host: {host}\n", text.index("    ami:\n", start))
    config.write_text(text[:at] + text[at:].replace(host, elsewhere, 1))


def edit(path: Path, old: str, new: str) -> int:
    text = path.read_text()
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new))
    return line


# One call every 4 s per site: each number's queue has two agents with a 5 s wrap-up,
# so the agents keep up and a call that fails is the deploy's doing, not a backlog's.
RATE = 0.25
CALLS_EACH = 8


async def calls_during(site: str, port: int, calls: int) -> CallResult:
    target, did = CALLS[site]
    return await asyncio.to_thread(
        place_calls,
        target,
        did,
        calls=calls,
        rate=RATE,
        duration_ms=1500,
        local_port=port,
        max_seconds=calls / RATE + 30,
        limit=4,
    )


def stamp(lab: Lab, site: str) -> Stamp | None:
    try:
        return Stamp.parse((lab.dirs(lab.config.site(site)).host("etc") / STAMP_FILE).read_text())
    except OSError:
        return None


async def test_a_template_change_rolls_out_over_three_sites_with_no_failed_call(
    lab: Lab,
    agents: dict[str, Agent],
    bridge_at: BridgeFactory,
    templates: Path,
    deploy_config: Path,
    restore_lab: object,
) -> None:
    edit(
        templates / "extensions.conf.j2",
        "NoOp(ccbridge: route ${EXTEN} at {{ site.name }})",
        "NoOp(ccbridge: route ${EXTEN} at {{ site.name }}, deployed)",
    )
    args = (str(deploy_config), "--templates", str(templates))
    async with bridge_at(WEDNESDAY_MORNING):
        code, plan = await ccbridge("deploy", *args, "--dry-run", "--static")
        assert code == 0, plan
        assert plan.count("files: extensions.conf") == 3 and "reload pbx_config.so" in plan
        assert stamp(lab, "bangalore") is None  # a dry run touches nothing
        callers = [
            asyncio.create_task(calls_during(site, 6300 + 10 * i, CALLS_EACH))
            for i, site in enumerate(CALLS)
        ]
        loop = asyncio.get_running_loop()
        started = loop.time()
        code, out = await ccbridge("deploy", *args)
        took = loop.time() - started
        results = await asyncio.gather(*callers)
    assert code == 0, out
    # the callers were still placing calls when the last site was undrained
    assert took < (CALLS_EACH - 1) / RATE, f"the deploy took {took:.1f}s: place more calls"
    for site in CALLS:
        assert f"site {site}: drained" in out and f"site {site}: undrained" in out
        assert f"site {site}: reloaded pbx_config.so" in out
        assert "res_pjsip" not in out  # only the module whose file changed
        s = stamp(lab, site)
        assert s is not None and s.version == 1, out
        shown = await asyncio.to_thread(lab.cli, lab.config.site(site), "dialplan show ccb-route")
        assert f"at {site}, deployed)" in shown
    for site, r in zip(CALLS, results, strict=True):
        assert r.failed == 0 and r.successful == r.created == CALLS_EACH, (site, r.output[-1500:])
    # nothing left to do: a second deploy changes nothing and keeps the versions
    code, out = await ccbridge("deploy", *args, "--static")
    assert code == 0 and out.count("unchanged: nothing to do") == 3, out
    code, out = await ccbridge(
        "diff", str(deploy_config), "--against", "site", "--templates", str(templates)
    )
    assert code == 0 and out.count("no changes against v1") == 3, out


async def test_a_broken_template_is_refused_with_its_line(
    lab: Lab, templates: Path, deploy_config: Path, lab_config: Config
) -> None:
    line = edit(templates / "extensions.conf.j2", "Playback(vm-goodbye)", "Playbak(vm-goodbye)")
    code, out = await ccbridge(
        "render", str(deploy_config), "--verify", "--templates", str(templates)
    )
    assert code == 2, out
    assert (
        f"extensions.conf.j2:{line}: error: [dhaka] application: unknown application Playbak" in out
    )
    assert "Traceback" not in out
    # deploy verifies first: nothing is touched
    code, out = await ccbridge("deploy", str(deploy_config), "--templates", str(templates))
    assert code == 2 and "nothing was touched" in out, out
    assert all(stamp(lab, s.name) is None for s in lab_config.sites)


async def test_a_change_that_fails_the_post_check_is_rolled_back_and_the_site_serves(
    lab: Lab,
    agents: dict[str, Agent],
    bridge_at: BridgeFactory,
    templates: Path,
    deploy_config: Path,
    restore_lab: object,
) -> None:
    # returns-en removed everywhere in manila's templates: consistent, so it loads, but
    # the deployment still routes English returns callers to it
    for name in ("extensions.conf.j2", "queues.conf.j2"):
        edit(
            templates / name,
            "{% for q in queues %}",
            "{% for q in queues if q.name != 'returns-en' %}",
        )
    edit(
        templates / "ivr.conf.j2",
        "{% for f in ivr_fallbacks %}",
        "{% for f in ivr_fallbacks if f.queue != 'returns-en' %}",
    )
    manila = lab.config.site("manila")
    async with bridge_at(WEDNESDAY_MORNING):
        caller = asyncio.create_task(calls_during("manila", 6350, 3))
        code, out = await ccbridge(
            "deploy", str(deploy_config), "--site", "manila", "--templates", str(templates)
        )
        result = await caller
        assert code == 1, out
        assert "site manila: FAILED: post-check failed" in out and "queue returns-en" in out
        assert "site manila: rolled back to its previous files and it passes the post-check" in out
        assert "site manila: undrained" in out and "manila: FAILED, rolled back" in out
        queues = await asyncio.to_thread(lab.cli, manila, "queue show returns-en")
        assert "returns-en has" in queues
        assert stamp(lab, "manila") is None
        assert result.failed == 0 and result.successful == result.created == 3, result.output[
            -1500:
        ]
        after = await calls_during("manila", 6360, 1)
        assert after.ok, after.output[-1500:]


async def test_an_unreachable_site_stops_the_rollout_before_it_is_touched(
    lab: Lab,
    bridge_at: BridgeFactory,
    templates: Path,
    deploy_config: Path,
    restore_lab: object,
) -> None:
    # manila's AMI at an address nothing listens on: the rollout reaches it third
    move_ami(deploy_config, "manila", "127.0.3.1", "127.0.3.2")
    edit(templates / "queues.conf.j2", "ringinuse=no", "ringinuse=no\nannounce-holdtime=no")
    async with bridge_at(WEDNESDAY_MORNING):
        code, out = await ccbridge(
            "deploy", str(deploy_config), "--templates", str(templates), "--static"
        )
    assert code == 1, out
    assert "site manila: unreachable, stopped before touching it" in out
    assert "bangalore: deployed; runs v1" in out and "dhaka: deployed; runs v1" in out
    assert "manila: not touched; runs its files from before ccbridge deploy" in out
    assert "site manila: drained" not in out and stamp(lab, "manila") is None
    assert all(stamp(lab, s) is not None for s in ("bangalore", "dhaka"))


async def test_no_bridge_to_drain_through_stops_before_the_first_site(
    lab: Lab, templates: Path, deploy_config: Path
) -> None:
    # no bridge runs: the drain is refused, so nothing may be installed anywhere
    edit(templates / "queues.conf.j2", "ringinuse=no", "ringinuse=no\nannounce-holdtime=no")
    code, out = await ccbridge(
        "deploy", str(deploy_config), "--templates", str(templates), "--static"
    )
    assert code == 1, out
    assert "site bangalore: cannot drain, stopped before touching it" in out
    assert "installed" not in out and "deploy: STOPPED at bangalore" in out
    assert all(stamp(lab, s.name) is None for s in lab.config.sites)
