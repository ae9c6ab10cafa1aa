"""A problem found in a site's rendered configuration, pointing back to its template line."""

from __future__ import annotations

from dataclasses import dataclass

from ccbridge.deploy.sourcemap import Origin, RenderedFile

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    site: str
    severity: str  # ERROR | WARNING
    check: str  # stable id: syntax, application, goto, context, variable, unreachable, ...
    message: str
    file: str = ""  # the rendered file, e.g. extensions.conf
    line: int | None = None  # its line
    origin: Origin | None = None  # the template line that produced it

    def __str__(self) -> str:
        where = str(self.origin) if self.origin else (self.file or "-")
        rendered = f" ({self.file}:{self.line})" if self.file and self.line else ""
        return f"{where}: {self.severity}: [{self.site}] {self.check}: {self.message}{rendered}"


def at(
    files: dict[str, RenderedFile],
    site: str,
    severity: str,
    check: str,
    message: str,
    file: str = "",
    line: int | None = None,
) -> Finding:
    """A finding at ``file:line`` of the render, mapped to its template line."""
    rendered = files.get(file)
    origin = rendered.origin(line) if rendered is not None and line else None
    return Finding(site, severity, check, message, file, line, origin)
