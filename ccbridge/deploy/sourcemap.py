"""Render a site's files keeping, for every output line, the template file and line it came from."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ccbridge.config.model import Config, Site
from ccbridge.render import GUARD_FILE, TEMPLATE_FILES, default_template_dir, make_environment

# A marker put at the start of every template line that produces output; control
# characters Asterisk configs never hold, so they cannot be confused with the text.
_OPEN, _CLOSE = "\x1e", "\x1f"
_MARK = re.compile(f"{_OPEN}([^{_CLOSE}]*):(\\d+){_CLOSE}")
_TAG_OPEN = re.compile(r"\{\{|\{%|\{#")
_TAG_CLOSE = {"{{": "}}", "{%": "%}", "{#": "#}"}


@dataclass(frozen=True, slots=True)
class Origin:
    template: str  # the template's name, e.g. extensions.conf.j2
    line: int  # 1-based line in that template

    def __str__(self) -> str:
        return f"{self.template}:{self.line}"


@dataclass(frozen=True, slots=True)
class RenderedFile:
    name: str
    text: str
    origins: tuple[Origin | None, ...]  # per output line (0-based index = line - 1)

    def origin(self, line: int) -> Origin | None:
        """Where output line ``line`` (1-based) came from."""
        if 1 <= line <= len(self.origins):
            return self.origins[line - 1]
        return None


class TemplateError(Exception):
    """A template that does not render: where (file:line) and what Jinja said."""

    def __init__(self, template: str, line: int | None, message: str, site: str) -> None:
        where = f"{template}:{line}" if line else template
        super().__init__(f"{where}: {message} (site {site})")
        self.template = template
        self.line = line
        self.message = message
        self.site = site


def instrument(source: str, name: str) -> str:
    """``source`` with a marker opening every line that starts outside a Jinja tag.

    A line that is only block tags or comments (which trim_blocks/lstrip_blocks make
    vanish) gets none: a marker there would be output, and its whitespace stripping
    would change. Line numbers are kept: no newline is added or removed.
    """
    out = []
    inside: str | None = None  # the closer we wait for when a tag spans lines
    for number, line in enumerate(source.split("\n"), 1):
        starts_inside = inside is not None
        pos = 0
        while True:
            if inside is not None:
                end = line.find(inside, pos)
                if end < 0:
                    break
                pos, inside = end + len(inside), None
            else:
                m = _TAG_OPEN.search(line, pos)
                if m is None:
                    break
                inside, pos = _TAG_CLOSE[m.group()], m.end()
        stripped = line.lstrip(" \t")
        if starts_inside or not stripped or stripped.startswith(("{%", "{#")):
            out.append(line)
        else:
            out.append(f"{_OPEN}{name}:{number}{_CLOSE}{line}")
    return "\n".join(out)


class _MappingLoader(jinja2.FileSystemLoader):
    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        return instrument(source, template), filename, uptodate


def strip(text: str) -> tuple[str, tuple[Origin | None, ...]]:
    """Rendered text with markers -> the plain text and each line's origin."""
    lines = text.split("\n")
    origins: list[Origin | None] = []
    last: Origin | None = None
    plain = []
    for line in lines:
        m = _MARK.search(line)
        if m is not None:
            last = Origin(m.group(1), int(m.group(2)))
        # a line with no marker of its own came from the tag or data just before it
        origins.append(last)
        plain.append(_MARK.sub("", line))
    return "\n".join(plain), tuple(origins)


def mapping_environment(template_dir: Path) -> jinja2.Environment:
    env = make_environment(template_dir)
    env.loader = _MappingLoader(str(template_dir))
    return env


def _template_frame(exc: BaseException, template_dir: Path) -> tuple[str, int | None]:
    """The innermost template frame of a render-time exception (Jinja rewrites its
    traceback so that template lines appear as frames of the template file)."""
    found: tuple[str, int | None] = ("", None)
    for frame in traceback.extract_tb(exc.__traceback__):
        p = Path(frame.filename)
        if p.suffix == ".j2" or str(p).startswith(str(template_dir)):
            found = (p.name, frame.lineno)
    return found


def render_site_mapped(
    config: Config, site: Site, template_dir: Path | None = None
) -> dict[str, RenderedFile]:
    """File name -> rendered text and source map for one site; TemplateError on a
    template that does not compile or raises while rendering."""
    from ccbridge.render import site_context

    tdir = template_dir or default_template_dir()
    env = mapping_environment(tdir)
    ctx = site_context(config, site)
    names = TEMPLATE_FILES + ((GUARD_FILE,) if ctx["guard"] is not None else ())
    out = {}
    for name in names:
        tname = f"{name}.j2"
        try:
            raw = env.get_template(tname).render(ctx)
        except jinja2.TemplateSyntaxError as exc:
            # also an unknown filter or test (TemplateAssertionError)
            where = Path(exc.filename).name if exc.filename else (exc.name or tname)
            raise TemplateError(where, exc.lineno, exc.message or str(exc), site.name) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(tname, None, f"template not found: {exc.name}", site.name) from None
        except Exception as exc:
            where, line = _template_frame(exc, tdir)
            kind = type(exc).__name__
            message = str(exc) if isinstance(exc, jinja2.UndefinedError) else f"{kind}: {exc}"
            raise TemplateError(where or tname, line, message, site.name) from None
        text, origins = strip(raw)
        out[name] = RenderedFile(name, text, origins)
    return out
