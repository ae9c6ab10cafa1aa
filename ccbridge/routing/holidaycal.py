"""National holiday calendars from the `holidays` package, loading only the countries asked for.

Any country of `holidays` lives in a submodule of ``holidays.countries``, and that
package's ``__init__`` imports all ~250 of them: asking for India alone (or for the list
of supported countries, as the config check did) cost the bridge 8 MB of RSS
(BENCHMARKS.md §4). Here ``holidays.countries`` is registered as a bare namespace over
the package's own folder before any country is loaded, so ``holidays``' lazy loaders
import ``holidays.countries.india`` and nothing else. The calendars are the package's
own classes: only what gets imported changes.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

import holidays
from holidays.registry import EntityLoader

_PACKAGE = "holidays.countries"


def _lean_countries() -> None:
    """``holidays.countries`` as a package without its import-everything ``__init__``
    (nothing to do when something already imported the real one)."""
    if _PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        return  # not a package here: leave `holidays` to itself
    package = types.ModuleType(_PACKAGE, "holidays' countries, each loaded on first use")
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = _PACKAGE
    package.__spec__ = spec
    sys.modules[_PACKAGE] = package


def supported(country: str) -> bool:
    """True when `holidays` has a calendar for ``country`` (ISO 3166 code or alias)."""
    return country in EntityLoader.get_country_codes(True)


def subdivisions(country: str) -> tuple[str, ...]:
    """The subdivision codes of a supported ``country`` (loads that country only)."""
    _lean_countries()
    return tuple(getattr(holidays, country).subdivisions)


def calendar(country: str, subdiv: str | None) -> Any:
    """``holidays.country_holidays(country, subdiv=subdiv, years=())``, loading only the
    module of ``country``; years fill in on first lookup (the library's expand=True)."""
    _lean_countries()
    return holidays.country_holidays(country, subdiv=subdiv, years=())
