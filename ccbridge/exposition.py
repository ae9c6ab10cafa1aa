"""The Prometheus text and OpenMetrics formats of a scrape, byte for byte as
prometheus_client's encoders write them, with each line's name-and-labels part cached.

prometheus_client escapes and validates every label name and value of every sample on
every scrape: ~9 us a line, 32-49 ms for the lab's ~3,400 lines, hundreds of ms at 20
sites. That formatting runs in a worker thread (ccbridge/http/metrics.py), but holds the
GIL the event loop needs: a lab test's /metrics scrape held the loop past the 50 ms gate
(BENCHMARKS.md §13). A sample's name and labels change far less often than its value, so
``Exposition`` keeps the line's text before the value per (name, labels), built by the
library's own escaping functions, and formats only the value per scrape.

What it formats: the plain text format (0.0.4, and text/plain with underscore escaping)
and OpenMetrics 1.0.0 with underscore escaping, which is what Prometheus asks for. Any
other Accept, and any scrape with an exemplar or a native histogram (the bridge exports
neither), is written by prometheus_client itself. tests/unit/test_exposition.py checks
the bytes against prometheus_client's on the lab's registry and on generated ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import Final

from prometheus_client import exposition as text_format
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as om_format
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString as _untyped_go

_go: Callable[[float], str] = _untyped_go  # the library's value format (untyped)
_om_latest: Callable[[Collector], bytes] = om_format.generate_latest  # (untyped)

__all__ = ["MAX_CACHED", "Exposition"]

Encoder = Callable[[Collector], bytes]
# Lines' prefixes kept per format; past this the cache starts again (a label set that
# changes every scrape must not grow it without bound). 20 sites x 10,000 agents is
# ~23,000 lines.
MAX_CACHED: Final = 200_000
_UNDERSCORES: Final = om_format.UNDERSCORES
_SUFFIXES: Final = ("_created", "_gsum", "_gcount")  # the text format's OpenMetrics extras


class _Unsupported(Exception):
    """A sample this module does not format (an exemplar, a native histogram)."""


class _Families(Collector):
    """Families collected already: the library's encoder is given the same ones."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _key(s: Sample) -> tuple[object, ...]:
    return (s.name, *s.labels.items())


class Exposition:
    """Encoders for one registry's scrapes, sharing their caches (any thread)."""

    def __init__(self) -> None:
        self._text: dict[tuple[object, ...], str] = {}
        self._om: dict[tuple[object, ...], str] = {}
        self._lock = threading.Lock()  # only around a cache's reset
        self.fallbacks = 0  # scrapes written by prometheus_client (not cached)

    def encoder(self, chosen: Encoder) -> Encoder:
        """The cached equivalent of ``chosen`` (what ``choose_encoder`` picked), or
        ``chosen`` itself when it is a format or escaping this module does not write."""
        if chosen is text_format.generate_latest:
            return self.text
        if isinstance(chosen, partial) and not chosen.args:
            if chosen.func is text_format.generate_latest and chosen.keywords == {
                "escaping": _UNDERSCORES
            }:
                return self.text
            if chosen.func is om_format.generate_latest and chosen.keywords == {
                "escaping": _UNDERSCORES,
                "version": "1.0.0",
            }:
                return self.openmetrics
        return chosen

    def _fits(self, cache: dict[tuple[object, ...], str]) -> None:
        if len(cache) > MAX_CACHED:
            with self._lock:
                cache.clear()

    def text(self, registry: Collector) -> bytes:
        """``prometheus_client.exposition.generate_latest(registry)``."""
        families = list(registry.collect())
        try:
            return _text(families, self._text)
        except _Unsupported:
            self.fallbacks += 1
            return text_format.generate_latest(_Families(families))
        finally:
            self._fits(self._text)

    def openmetrics(self, registry: Collector) -> bytes:
        """``prometheus_client.openmetrics.exposition.generate_latest(registry)``."""
        families = list(registry.collect())
        try:
            return _openmetrics(families, self._om)
        except _Unsupported:
            self.fallbacks += 1
            return _om_latest(_Families(families))
        finally:
            self._fits(self._om)


def _escape_value(v: str) -> str:
    """A label value as both formats write it (backslash, newline and quote escaped;
    allow-utf-8 escaping reads no rune check: the text format passes False for it)."""
    return om_format._escape(v, om_format.ALLOWUTF8, om_format._is_legacy_labelname_rune)


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _text_prefix(s: Sample) -> str:
    """The text format's line up to its value, as ``generate_latest``'s sample_line."""
    name = om_format.escape_metric_name(s.name, _UNDERSCORES)
    if not s.labels:
        return name
    labels = ",".join(
        f'{om_format.escape_label_name(k, _UNDERSCORES)}="{_escape_value(v)}"'
        for k, v in sorted(s.labels.items())
    )
    return f"{name}{{{labels}}}"


def _text_line(s: Sample, cache: dict[tuple[object, ...], str]) -> str:
    if s.exemplar is not None or s.native_histogram is not None:
        raise _Unsupported
    key = _key(s)
    prefix = cache.get(key)
    if prefix is None:
        prefix = cache[key] = _text_prefix(s)
    if s.timestamp is None:
        return f"{prefix} {_go(s.value)}\n"
    return f"{prefix} {_go(s.value)} {int(float(s.timestamp) * 1000):d}\n"


_TEXT_TYPES: Final = {
    "info": "gauge",
    "stateset": "gauge",
    "gaugehistogram": "histogram",
    "unknown": "untyped",
}


def _text(families: list[Metric], cache: dict[tuple[object, ...], str]) -> bytes:
    out: list[str] = []
    for metric in families:
        mname, mtype = metric.name, metric.type
        if mtype == "counter":
            mname += "_total"
        elif mtype == "info":
            mname += "_info"
        mtype = _TEXT_TYPES.get(mtype, mtype)
        name = om_format.escape_metric_name(mname, _UNDERSCORES)
        out.append(f"# HELP {name} {_help(metric.documentation)}\n")
        out.append(f"# TYPE {name} {mtype}\n")
        extras: dict[str, list[str]] = {}
        special = {metric.name + suffix: suffix for suffix in _SUFFIXES}
        for s in metric.samples:
            suffix = special.get(s.name)
            if suffix is None:
                out.append(_text_line(s, cache))
            else:
                extras.setdefault(suffix, []).append(_text_line(s, cache))
        for suffix, lines in sorted(extras.items()):
            name = om_format.escape_metric_name(metric.name + suffix, _UNDERSCORES)
            out.append(f"# HELP {name} {_help(metric.documentation)}\n")
            out.append(f"# TYPE {name} gauge\n")
            out.extend(lines)
    return "".join(out).encode("utf-8")


def _om_prefix(s: Sample) -> str:
    """OpenMetrics' line up to its value, as its ``generate_latest`` writes it."""
    name = om_format._escape(s.name, _UNDERSCORES, om_format._is_legacy_labelname_rune)
    if not s.labels:
        return name
    labels = ",".join(
        f'{om_format.escape_label_name(k, _UNDERSCORES)}="{_escape_value(v)}"'
        for k, v in sorted(s.labels.items())
    )
    return f"{name}{{{labels}}}"


def _openmetrics(families: list[Metric], cache: dict[tuple[object, ...], str]) -> bytes:
    out: list[str] = []
    for metric in families:
        name = om_format.escape_metric_name(metric.name, _UNDERSCORES)
        doc = om_format._escape(
            metric.documentation, om_format.ALLOWUTF8, om_format._is_legacy_labelname_rune
        )
        out.append(f"# HELP {name} {doc}\n")
        out.append(f"# TYPE {name} {metric.type}\n")
        if metric.unit:
            out.append(f"# UNIT {name} {metric.unit}\n")
        for s in metric.samples:
            if s.exemplar is not None or s.native_histogram is not None:
                raise _Unsupported
            key = _key(s)
            prefix = cache.get(key)
            if prefix is None:
                prefix = cache[key] = _om_prefix(s)
            value = "" if s.value is None else _go(s.value)
            if s.timestamp is None:
                out.append(f"{prefix} {value}\n")
            else:
                out.append(f"{prefix} {value} {s.timestamp}\n")
    out.append("# EOF\n")
    return "".join(out).encode("utf-8")
