"""`ccbridge deploy` without the lab: the lock that refuses a second deploy, the deploy:
section, the dry-run plan against a folder, version stamps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccbridge.config import ConfigError, load_config
from ccbridge.deploy.rollout import DeployBusy, deploy_lock
from ccbridge.deploy.state import Stamp, new_stamp, render_hash

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"
ENV = {**os.environ, "CCBRIDGE_AMI_SECRET": "s3cret-ami", "CCBRIDGE_API_TOKEN": "tok"}


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "s3cret-ami")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "tok")


def deploy_file(tmp_path: Path, deploy: str) -> Path:
    text = LAB.read_text()
    head, _, _ = text.partition("\ndeploy:\n")
    path = tmp_path / "deploy.yaml"
    path.write_text(head + "\ndeploy:\n" + deploy)
    return path


def ccbridge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccbridge.cli", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )


def test_a_second_deploy_is_refused_while_one_runs(tmp_path: Path) -> None:
    targets = tmp_path / "sites"
    for site in ("bangalore", "dhaka", "manila"):
        (targets / site).mkdir(parents=True)
    cfg = deploy_file(
        tmp_path,
        f"  state_dir: {tmp_path / 'state'}\n  install: {{dir: '{targets}/{{site}}'}}\n",
    )
    config = load_config(cfg)
    with deploy_lock(config.deploy.lock):
        busy = ccbridge("deploy", str(cfg), "--dry-run", "--static")
        with (
            pytest.raises(DeployBusy, match="another deploy is running"),
            deploy_lock(config.deploy.lock),
        ):
            pass
    assert busy.returncode == 3, busy.stderr
    assert f"another deploy is running (pid {os.getpid()}" in busy.stderr
    # once the first one is over, the next one goes ahead (a dry run: touches nothing)
    done = ccbridge("deploy", str(cfg), "--dry-run", "--static")
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"site dhaka: folder {targets}/dhaka; now no stamp" in done.stdout
    files = next(line for line in done.stdout.splitlines() if line.startswith("  files: "))
    assert {"extensions.conf", "ivr.conf", "pjsip.conf", "queues.conf"} <= set(
        files.removeprefix("  files: ").split(", ")
    )
    assert "note: modules.conf: read at start-up only" in done.stdout
    assert not any((targets / "dhaka").iterdir())


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        ("  install: {command: rsync -a /tmp/x host:/etc/asterisk}\n", "must name {src}"),
        ("  install: {dir: /x, lab: true}\n", "exactly one of"),
        ("  sites: {lima: {dir: /x}}\n", "unknown site 'lima'"),
        ("  install: {command: 'cp -r {src}/. /x', fetch: 'cp -r /x/. /y'}\n", "name {dest}"),
        ("  hold_off: -1\n", "hold_off"),
    ],
)
def test_bad_deploy_sections_are_refused(tmp_path: Path, deploy: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(deploy_file(tmp_path, deploy))
    assert any(message in str(p) for p in err.value.problems), err.value.problems


def test_a_command_install_names_its_placeholders(tmp_path: Path) -> None:
    config = load_config(
        deploy_file(
            tmp_path,
            "  install: {command: 'rsync -a {src}/ root@{host}:/etc/asterisk/'}\n"
            "  sites: {manila: {dir: /srv/manila}}\n",
        )
    )
    assert config.deploy.method("dhaka").kind == "command"
    assert config.deploy.method("manila").path == "/srv/manila"


def test_stamps_count_versions_and_hash_the_render() -> None:
    files = {"extensions.conf": "[a]\n", "queues.conf": "[q]\n"}
    first = new_stamp("dhaka", None, files)
    second = new_stamp("dhaka", first, {**files, "queues.conf": "[q2]\n"})
    assert (first.version, second.version) == (1, 2)
    assert first.hash == render_hash(dict(reversed(files.items()))) != second.hash
    again = Stamp.parse(second.text())
    assert again is not None and (again.version, again.hash) == (2, second.hash)
    assert Stamp.parse("{not json") is None


def test_each_site_of_a_deploy_is_written_to_the_audit_trail(tmp_path: Path) -> None:
    import asyncio

    from sqlalchemy import select

    from ccbridge.deploy.audit import write_audit
    from ccbridge.deploy.rollout import Outcome
    from ccbridge.deploy.state import StateDir
    from ccbridge.store.engine import make_engine
    from ccbridge.store.migrate import upgrade
    from ccbridge.store.schema import audit

    text = deploy_file(tmp_path, f"  state_dir: {tmp_path / 'state'}\n").read_text()
    cfg = tmp_path / "with-store.yaml"
    cfg.write_text(text + f"\nstore: {{url: 'sqlite:///{tmp_path / 'ccb.db'}'}}\n")
    config = load_config(cfg)
    state = StateDir(config.deploy.state_dir)
    files = {"extensions.conf": "[a]\n"}
    state.save("dhaka", files, new_stamp("dhaka", None, files))
    outcome = Outcome(done=["dhaka"], failed="manila", not_started=["manila"])
    # no database yet: the deploy stands, the caller is told why it is not audited
    assert "no database file" in (write_audit(config, outcome, state, "cli:alice") or "")

    async def rows() -> list[tuple[str, str, str | None, str | None]]:
        engine = make_engine(config.store)
        try:
            async with engine.connect() as conn:
                q = select(audit.c.action, audit.c.result, audit.c.site, audit.c.object)
                return [tuple(r) for r in (await conn.execute(q.order_by(audit.c.seq))).all()]
        finally:
            await engine.dispose()

    async def migrate() -> None:
        engine = make_engine(config.store)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    assert write_audit(config, outcome, state, "cli:alice") is None
    assert asyncio.run(rows()) == [
        ("deploy.apply", "ok", "dhaka", "release:1"),
        ("deploy.unreachable", "failed", "manila", None),
    ]
