"""`ccbridge render --verify`: render every site with a source map, check it statically and
load it into a scratch Asterisk; every finding points at a template line."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ccbridge.config.model import Config, Site
from ccbridge.deploy.dialplan import Dialplan, parse
from ccbridge.deploy.findings import ERROR, WARNING, Finding, at
from ccbridge.deploy.loaded import loaded_findings, log_findings, sound_findings
from ccbridge.deploy.scratch import AsteriskInstall, find_asterisk, scratch_asterisk
from ccbridge.deploy.sourcemap import RenderedFile, render_site_mapped
from ccbridge.deploy.static import check_dialplan
from ccbridge.ivr_render import custom_prompts, prompts_dir


@dataclass(frozen=True, slots=True)
class SiteRender:
    site: str
    files: dict[str, RenderedFile]
    plan: Dialplan

    def texts(self) -> dict[str, str]:
        return {name: f.text for name, f in self.files.items()}


@dataclass(frozen=True, slots=True)
class SiteVerification:
    render: SiteRender
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]


def render_mapped(config: Config, site: Site, template_dir: Path | None = None) -> SiteRender:
    """Render one site (TemplateError when a template fails) and parse its dialplan."""
    files = render_site_mapped(config, site, template_dir)
    return SiteRender(site.name, files, parse({n: f.text for n, f in files.items()}))


def site_languages(site: Site) -> tuple[str, ...]:
    return tuple(sorted({lang for o in site.offerings for lang in o.languages}))


def verify_site(
    config: Config,
    site: Site,
    render: SiteRender,
    install: AsteriskInstall | None,
) -> SiteVerification:
    """Static checks, then (with an Asterisk) what a scratch Asterisk refuses."""
    findings = check_dialplan(render.plan, render.files, config, site)
    if install is not None:
        with scratch_asterisk(install, render.texts()) as scratch:
            findings += log_findings(site.name, render.files, scratch.log_problems())
            for file, line, path in scratch.stand_ins:
                findings.append(
                    at(
                        render.files,
                        site.name,
                        WARNING,
                        "keys",
                        f"{path} is the site's own: checked with a stand-in self-signed key here",
                        file,
                        line,
                    )
                )
            findings += loaded_findings(site.name, render.plan, render.files, scratch.cli)
        custom = custom_prompts(prompts_dir(config.ivr))
        configured = config.ivr.sounds_dir

        def sounds(lang: str) -> Path:
            if configured is not None:
                return configured / lang
            return install.resolve(install.sounds / lang)

        findings += sound_findings(
            site.name, render.plan, render.files, sounds, site_languages(site), custom
        )
    return SiteVerification(render, tuple(findings))


def verify_all(
    config: Config,
    renders: dict[str, SiteRender],
    *,
    with_asterisk: bool = True,
    install: AsteriskInstall | None = None,
) -> dict[str, SiteVerification]:
    """Verify the rendered sites, their scratch Asterisks side by side."""
    if with_asterisk and install is None:
        install = find_asterisk()
    inst = install if with_asterisk else None
    with ThreadPoolExecutor(max_workers=max(1, min(3, len(renders)))) as pool:
        futures = {
            name: pool.submit(verify_site, config, config.site(name), r, inst)
            for name, r in renders.items()
        }
        return {name: f.result() for name, f in futures.items()}
