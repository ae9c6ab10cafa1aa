"""The `diff` and `deploy` subcommands' arguments. Their code (commands.py: jinja2, the
renders, the scratch Asterisk) is imported only when one runs: ``ccbridge run`` builds
this parser too, and importing it there cost every bridge 1.9 MB of RSS."""

from __future__ import annotations

import argparse


def _diff(args: argparse.Namespace) -> int:
    from ccbridge.deploy.commands import cmd_diff

    return cmd_diff(args)


def _deploy(args: argparse.Namespace) -> int:
    from ccbridge.deploy.commands import cmd_deploy

    return cmd_deploy(args)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("diff", help="unified diff of a new render against the deployed one")
    d.add_argument("config")
    d.add_argument(
        "--against",
        required=True,
        help="'site': the last render `ccbridge deploy` installed (deploy.state_dir); "
        "or a folder of an earlier render (one subfolder per site)",
    )
    d.add_argument("--site", help="only this site")
    d.add_argument("--templates", help="template folder (default: dialplans/)")
    d.set_defaults(func=_diff)

    p = sub.add_parser(
        "deploy",
        help="verify, then per site: drain, install, reload, post-check, undrain (or roll back)",
    )
    p.add_argument("config")
    p.add_argument("--site", help="only this site")
    p.add_argument("--dry-run", action="store_true", help="show the plan, touch nothing")
    p.add_argument("--templates", help="template folder (default: dialplans/)")
    p.add_argument("--static", action="store_true", help="verify without the scratch Asterisk")
    p.set_defaults(func=_deploy)
