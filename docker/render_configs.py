"""Render every site's Asterisk configs for the docker stack, at container start.

Runs in the `render` service before the sites start: `ccbridge render`'s output for
docker/ccbridge.yaml (dialplans/*.j2, manager.conf with the AMI secret from the Docker
secret), plus the lab's base configs (asterisk/*.conf) and asterisk.conf with the standard
Debian directories. Rendering at start, not committing docker/rendered/, keeps the secret
out of the repository and makes drift from the templates impossible.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import jinja2

from ccbridge.config import load_config
from ccbridge.render import render_all

# Standard directories of Debian's asterisk package; the modules path is a symlink the
# asterisk image makes to the multiarch directory, so the config is the same on any CPU.
DOCKER_DIRS = {
    "cache": "/var/cache/asterisk",
    "modules": "/usr/lib/asterisk/modules",
    "varlib": "/var/lib/asterisk",
    "db": "/var/lib/asterisk",
    "data": "/usr/share/asterisk",
    "spool": "/var/spool/asterisk",
    "run": "/var/run/asterisk",
    "log": "/var/log/asterisk",
}


def render_stack(config_path: Path, out: Path, base: Path, templates: Path | None) -> list[Path]:
    """Write out/SITE/*.conf for every site; returns the files written."""
    config = load_config(config_path)
    written = render_all(config, out, templates)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(base)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    for index, site in enumerate(config.sites, start=1):
        d = out / site.name
        for conf in sorted(base.glob("*.conf")):
            shutil.copyfile(conf, d / conf.name)
            written.append(d / conf.name)
        dirs = {**DOCKER_DIRS, "etc": str(d)}
        text = env.get_template("asterisk.conf.j2").render(site=site, dirs=dirs, site_index=index)
        (d / "asterisk.conf").write_text(text, encoding="utf-8")
        written.append(d / "asterisk.conf")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--base", type=Path, required=True, help="the repository's asterisk/ folder")
    p.add_argument("--templates", type=Path, help="dialplans/ (default: CCBRIDGE_TEMPLATES)")
    args = p.parse_args(argv)
    for path in render_stack(args.config, args.out, args.base, args.templates):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
