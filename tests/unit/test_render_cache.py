"""Templates are compiled once a process and still follow an edit (ccbridge.render)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ccbridge.config import load_config
from ccbridge.render import cached_environment, default_template_dir, render_site

REPO = Path(__file__).resolve().parents[2]


def test_one_environment_a_folder_compiles_each_template_once() -> None:
    config = load_config(REPO / "examples" / "lab.yaml")
    site = config.sites[0]
    first = render_site(config, site)
    env = cached_environment()
    assert cached_environment(default_template_dir()) is env
    compiled = {name: env.get_template(f"{name}.j2") for name in first}
    assert render_site(config, site) == first
    assert all(env.get_template(f"{name}.j2") is t for name, t in compiled.items())


def test_an_edited_template_is_rendered_anew(tmp_path: Path) -> None:
    config = load_config(REPO / "examples" / "lab.yaml")
    site = config.sites[0]
    templates = tmp_path / "dialplans"
    shutil.copytree(default_template_dir(), templates)
    before = render_site(config, site, templates)
    name = sorted(before)[0]
    source = templates / f"{name}.j2"
    time.sleep(0.01)  # a later mtime than the first compile saw
    source.write_text(source.read_text() + "; edited by the admin\n")
    after = render_site(config, site, templates)
    assert after[name].endswith("; edited by the admin\n")
    assert not before[name].endswith("; edited by the admin\n")
