"""The Prometheus text and OpenMetrics formats of a scrape, byte for byte as
prometheus_client's encoders write them, with each line's name-and-labels part cached.

prometheus_client escapes and validates every label name and value of every sample on
every scrape: ~9 us a line, 32-49 ms for the lab's ~3,400 lines, hundreds of ms at 20
sites. That formatting runs in a worker thread (ccbridge/http/metrics.py), but holds the
GIL the event loop needs: a lab test's /metrics scrape held the loop past the 50 ms gate
(BENCHMARKS.md §13). A sample's name and labels change far less often than its value, so
``Exposition`` keeps the line's text before the value per (name, labels), built by the
library's own escaping functions, and formats only the value per scrape.

What it formats: the text format (0.0.4, and 1.0.0 with any escaping) and OpenMetrics
1.0.0 with any escaping: Prometheus 2 asks for OpenMetrics with underscores, Prometheus 3
with allow-utf-8. Other versions, and any scrape with an exemplar or a native histogram
(the bridge exports neither), are written by prometheus_client itself.
tests/unit/test_exposition.py checks the bytes against prometheus_client's on the lab's
registry and on generated ones, in every escaping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Final

from prometheus_client import exposition as text_format
from prometheus_client import validation as _validation
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as om_format
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString as _untyped_go

from ccbridge.scrape import Collected

__all__ = ["AVAILABLE", "MAX_CACHED", "Exposition"]

# The library's helpers the lines are built with. Some are private to it, so they are
# looked for, not assumed: a prometheus_client without them (pyproject allows >=0.20)
# gets its own encoders, uncached, rather than a bridge that fails to import or scrape.
_ESCAPING_NAMES: Final = ("UNDERSCORES", "ALLOWUTF8", "DOTS", "VALUES")
_HELPERS: Final = (
    "_escape",
    "_is_legacy_labelname_rune",
    "escape_metric_name",
    "escape_label_name",
)
AVAILABLE: Final = all(hasattr(om_format, n) for n in _HELPERS + _ESCAPING_NAMES) and hasattr(
    _validation, "_is_valid_legacy_metric_name"
)

_go: Callable[[float], str] = _untyped_go  # the library's value format (untyped)
_om_latest: Callable[[Collector, str], bytes] = om_format.generate_latest  # (untyped)
_legacy_name: Callable[[str], bool] = getattr(
    _validation, "_is_valid_legacy_metric_name", lambda name: True
)

Encoder = Callable[[Collector], bytes]
# Lines' prefixes kept per format and escaping; past this the cache starts again, so a
# label set that changes every scrape cannot grow it without bound. A cached line holds
# ~600 bytes (measured: 2.0 MB for the lab's 3,321 lines, 14.2 MB for 22,820 at 20 sites
# x 10,000 agents), so this bound is ~30 MB a format at most.
MAX_CACHED: Final = 50_000
_UNDERSCORES: Final[str] = getattr(om_format, "UNDERSCORES", "underscores")
_ALLOWUTF8: Final[str] = getattr(om_format, "ALLOWUTF8", "allow-utf-8")
_ESCAPINGS: Final = frozenset(getattr(om_format, n, n) for n in _ESCAPING_NAMES)
_SUFFIXES: Final = ("_created", "_gsum", "_gcount")  # the text format's OpenMetrics extras


class _Unsupported(Exception):
    """A sample this module does not format (an exemplar, a native histogram)."""


def _prefix(
    s: Sample,
    escaping: str,
    cache: dict[tuple[object, ...], str],
    build: Callable[[Sample, str], str],
) -> str:
    """The line's text before its value, from the cache or built once; _Unsupported
    for what this module does not write."""
    if s.exemplar is not None or s.native_histogram is not None:
        raise _Unsupported
    key = (s.name, *s.labels.items())
    prefix = cache.get(key)
    if prefix is None:
        prefix = cache[key] = build(s, escaping)
    return prefix


class Exposition:
    """Encoders for one registry's scrapes, sharing their caches (any thread)."""

    def __init__(self) -> None:
        # Per (format, escaping): the line's text before its value, per sample key.
        self._caches: dict[tuple[str, str], dict[tuple[object, ...], str]] = {}
        self._lock = threading.Lock()  # only around a cache's creation and reset
        self.fallbacks = 0  # scrapes written by prometheus_client (not cached)

    def encoder(self, chosen: Encoder) -> Encoder:
        """The cached equivalent of ``chosen`` (what ``choose_encoder`` picked), or
        ``chosen`` itself when it is a format or version this module does not write."""
        if not AVAILABLE:
            return chosen
        if chosen is text_format.generate_latest:
            return self.text
        if isinstance(chosen, partial) and not chosen.args:
            kw = chosen.keywords
            escaping = kw.get("escaping")
            if escaping not in _ESCAPINGS:
                return chosen
            if chosen.func is text_format.generate_latest and kw.keys() == {"escaping"}:
                return partial(self.text, escaping=escaping)
            if (
                chosen.func is om_format.generate_latest
                and kw.keys() == {"escaping", "version"}
                and kw["version"] == "1.0.0"
            ):
                return partial(self.openmetrics, escaping=escaping)
        return chosen

    def _cache(self, kind: str, escaping: str) -> dict[tuple[object, ...], str]:
        with self._lock:
            cache = self._caches.setdefault((kind, escaping), {})
            if len(cache) > MAX_CACHED:
                cache.clear()
            return cache

    def text(self, registry: Collector, escaping: str = _UNDERSCORES) -> bytes:
        """``prometheus_client.exposition.generate_latest(registry, escaping)``."""
        families = list(registry.collect())
        try:
            return _text(families, escaping, self._cache("text", escaping))
        except _Unsupported:
            self.fallbacks += 1
            return text_format.generate_latest(Collected(families), escaping)

    def openmetrics(self, registry: Collector, escaping: str = _UNDERSCORES) -> bytes:
        """``prometheus_client.openmetrics.exposition.generate_latest(registry, escaping)``
        (version 1.0.0)."""
        families = list(registry.collect())
        try:
            return _openmetrics(families, escaping, self._cache("om", escaping))
        except _Unsupported:
            self.fallbacks += 1
            return _om_latest(Collected(families), escaping)


def _escape_value(v: str) -> str:
    """A label value as both formats write it (backslash, newline and quote escaped;
    allow-utf-8 escaping reads no rune check: the text format passes False for it)."""
    return om_format._escape(v, om_format.ALLOWUTF8, om_format._is_legacy_labelname_rune)


def _labels(s: Sample, escaping: str) -> str:
    return ",".join(
        f'{om_format.escape_label_name(k, escaping)}="{_escape_value(v)}"'
        for k, v in sorted(s.labels.items())
    )


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _text_prefix(s: Sample, escaping: str) -> str:
    """The text format's line up to its value, as ``generate_latest``'s sample_line."""
    labels = _labels(s, escaping) if s.labels else ""
    name = om_format.escape_metric_name(s.name, escaping)
    if escaping != _ALLOWUTF8 or _legacy_name(s.name):
        return f"{name}{{{labels}}}" if labels else name
    return f"{{{name},{labels}}}" if labels else f"{{{name}}}"


_TEXT_TYPES: Final = {
    "info": "gauge",
    "stateset": "gauge",
    "gaugehistogram": "histogram",
    "unknown": "untyped",
}


def _text(families: list[Metric], escaping: str, cache: dict[tuple[object, ...], str]) -> bytes:
    out: list[str] = []
    for metric in families:
        mname, mtype = metric.name, metric.type
        if mtype == "counter":
            mname += "_total"
        elif mtype == "info":
            mname += "_info"
        mtype = _TEXT_TYPES.get(mtype, mtype)
        name = om_format.escape_metric_name(mname, escaping)
        out.append(f"# HELP {name} {_help(metric.documentation)}\n")
        out.append(f"# TYPE {name} {mtype}\n")
        extras: dict[str, list[str]] = {}
        special = {metric.name + suffix: suffix for suffix in _SUFFIXES}
        for s in metric.samples:
            prefix = _prefix(s, escaping, cache, _text_prefix)
            if s.timestamp is None:
                line = f"{prefix} {_go(s.value)}\n"
            else:
                line = f"{prefix} {_go(s.value)} {int(float(s.timestamp) * 1000):d}\n"
            suffix = special.get(s.name)
            if suffix is None:
                out.append(line)
            else:
                extras.setdefault(suffix, []).append(line)
        for suffix, lines in sorted(extras.items()):
            name = om_format.escape_metric_name(metric.name + suffix, escaping)
            out.append(f"# HELP {name} {_help(metric.documentation)}\n")
            out.append(f"# TYPE {name} gauge\n")
            out.extend(lines)
    return "".join(out).encode("utf-8")


def _om_prefix(s: Sample, escaping: str) -> str:
    """OpenMetrics' line up to its value, as its ``generate_latest`` writes it."""
    legacy = _legacy_name(s.name)
    labels = ""
    if escaping == _ALLOWUTF8 and not legacy:
        labels = om_format.escape_metric_name(s.name, escaping) + ("," if s.labels else "")
    if s.labels:
        labels += _labels(s, escaping)
    if labels:
        labels = "{" + labels + "}"
    if escaping != _ALLOWUTF8 or legacy:
        return om_format._escape(s.name, escaping, om_format._is_legacy_labelname_rune) + labels
    return labels


def _openmetrics(
    families: list[Metric], escaping: str, cache: dict[tuple[object, ...], str]
) -> bytes:
    out: list[str] = []
    for metric in families:
        name = om_format.escape_metric_name(metric.name, escaping)
        doc = om_format._escape(
            metric.documentation, _ALLOWUTF8, om_format._is_legacy_labelname_rune
        )
        out.append(f"# HELP {name} {doc}\n")
        out.append(f"# TYPE {name} {metric.type}\n")
        if metric.unit:
            out.append(f"# UNIT {name} {metric.unit}\n")
        for s in metric.samples:
            prefix = _prefix(s, escaping, cache, _om_prefix)
            value = "" if s.value is None else _go(s.value)
            if s.timestamp is None:
                out.append(f"{prefix} {value}\n")
            else:
                out.append(f"{prefix} {value} {s.timestamp}\n")
    out.append("# EOF\n")
    return "".join(out).encode("utf-8")
