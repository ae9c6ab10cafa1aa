"""The `render --verify`, `diff` and `deploy` commands: arguments in, exit codes out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ccbridge.config import Config
from ccbridge.deploy.findings import ERROR, Finding
from ccbridge.deploy.scratch import ScratchError
from ccbridge.deploy.sourcemap import TemplateError
from ccbridge.deploy.verify import SiteRender, render_mapped, verify_all

EXIT_OK = 0
EXIT_FAILED = 1  # deploy: stopped and rolled back; diff: there are differences
EXIT_INVALID = 2  # a template or verify error: nothing was touched
EXIT_BUSY = 3  # another deploy holds the lock


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def render_sites(
    config: Config, templates: Path | None, only: str | None = None
) -> dict[str, SiteRender] | None:
    """Every (or one) site rendered with its source map; None after printing a template error."""
    out = {}
    for site in config.sites:
        if only and site.name != only:
            continue
        try:
            out[site.name] = render_mapped(config, site, templates)
        except TemplateError as exc:
            _err(f"error: {exc}")
            return None
    return out


def print_findings(findings: list[Finding], verbose: bool) -> None:
    errors = [f for f in findings if f.severity == ERROR]
    warnings = [f for f in findings if f.severity != ERROR]
    for f in errors:
        _err(str(f))
    if verbose:
        for f in warnings:
            _err(str(f))
    elif warnings:
        by: dict[tuple[str, str], int] = {}
        for f in warnings:
            by[(f.site, f.check)] = by.get((f.site, f.check), 0) + 1
        for (site, check), n in sorted(by.items()):
            _err(f"warning: [{site}] {n} {check} warnings (-v lists them)")


def verify_renders(
    config: Config, renders: dict[str, SiteRender], *, static_only: bool, verbose: bool
) -> int:
    try:
        results = verify_all(config, renders, with_asterisk=not static_only)
    except ScratchError as exc:
        _err(f"error: {exc}")
        return EXIT_INVALID
    findings = [f for r in results.values() for f in r.findings]
    print_findings(findings, verbose)
    errors = sum(1 for f in findings if f.severity == ERROR)
    how = "static checks" if static_only else "static checks and a scratch Asterisk"
    if errors:
        _err(f"verify: {errors} errors in {len(renders)} sites ({how})")
        return EXIT_INVALID
    print(f"verify: ok: {', '.join(renders)} ({how})")
    return EXIT_OK


def verify_command(
    config: Config, templates: Path | None, *, static_only: bool = False, verbose: bool = False
) -> int:
    renders = render_sites(config, templates)
    if renders is None:
        return EXIT_INVALID
    return verify_renders(config, renders, static_only=static_only, verbose=verbose)


def cmd_diff(args: argparse.Namespace) -> int:
    from ccbridge.cli import _load
    from ccbridge.deploy.state import StateDir, read_folder, unified

    config = _load(args.config)
    renders = render_sites(config, Path(args.templates) if args.templates else None, args.site)
    if renders is None:
        return EXIT_INVALID
    if args.site and not renders:
        _err(f"error: no site named {args.site!r}")
        return EXIT_INVALID
    state = StateDir(config.deploy.state_dir)
    differ = False
    for name, r in renders.items():
        new = r.texts()
        if args.against == "site":
            old = state.files(name)
            label = str(state.stamp(name) or "deployed")
            if old is None:
                print(
                    f"{name}: never deployed with ccbridge deploy "
                    f"({state.site_dir(name)} is missing)"
                )
                differ = True
                continue
        else:
            folder = Path(args.against) / name
            if not folder.is_dir():
                _err(f"error: {folder} is not a folder (--against DIR holds one folder per site)")
                return EXIT_INVALID
            old, label = read_folder(folder), str(folder)
        lines = unified(name, old, new, label)
        if lines:
            differ = True
            sys.stdout.writelines(lines)
        else:
            print(f"{name}: no changes against {label}")
    return EXIT_FAILED if differ else EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    from ccbridge.cli import _load
    from ccbridge.deploy.install import InstallError
    from ccbridge.deploy.rollout import DeployBusy, Rollout, deploy_lock, summary

    config = _load(args.config)
    sites = [s for s in config.sites if not args.site or s.name == args.site]
    if not sites:
        _err(f"error: no site named {args.site!r}")
        return EXIT_INVALID
    try:
        with deploy_lock(config.deploy.lock):
            renders = render_sites(
                config, Path(args.templates) if args.templates else None, args.site
            )
            if renders is None:
                return EXIT_INVALID
            code = verify_renders(config, renders, static_only=args.static, verbose=False)
            if code != EXIT_OK:
                _err("deploy: nothing was touched")
                return code
            rollout = Rollout(config, renders, print)
            if args.dry_run:
                for site in sites:
                    try:
                        for line in rollout.describe(rollout.plan(site)):
                            print(line)
                    except InstallError as exc:
                        print(f"site {site.name}: cannot plan: {exc}")
                print("dry run: nothing was touched")
                return EXIT_OK
            outcome = rollout.run(sites)
            from ccbridge.access.cli import _actor
            from ccbridge.deploy.audit import write_audit

            why = write_audit(config, outcome, rollout.state, _actor())
            if why:
                _err(f"warning: the deploy is not in the audit trail: {why}")
            stopped = outcome.failed or outcome.still_drained
            print("deploy: " + ("done" if outcome.ok else f"STOPPED at {stopped}"))
            print(summary(outcome, rollout.state, sites))
            return EXIT_OK if outcome.ok else EXIT_FAILED
    except DeployBusy as exc:
        _err(f"error: {exc}")
        return EXIT_BUSY
