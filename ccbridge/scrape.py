"""A /metrics scrape in two halves: loop-owned values copied on the loop, text made in a thread.

Why: prometheus_client's own handler collects and formats the whole registry on the
event loop, which held the bridge's loop 57-81 ms per scrape with 1,000 agents (more
with 10,000), delaying every waiting call at each Prometheus scrape.

How: ``freeze`` runs on the loop. For each collector of the registry (or of the names a
filtered scrape asks for) it takes

- ``c.snapshot()`` when the collector has one (``Snapshotting``): the collector copies
  what it reads from loop-owned objects (an immutable ``LiveState``, counts, a few
  small tuples) and returns a collector over that copy alone, safe in any thread. The
  costly part (families over 10,000 members, text) is left for the thread;
- prometheus_client's own metrics (Counter, Gauge, Histogram, ...) as they are: their
  values sit behind their own locks, made to be read from any thread. A Gauge's
  ``set_function`` runs in the thread too: the one in ccbridge (webhooks) reads
  ``asyncio.Queue.qsize``, a ``len`` of a deque, atomic under the GIL;
- any other collector's ``collect()`` result, on the loop (as before this module):
  a collector that does not say it is safe elsewhere is not run elsewhere.

``render`` (in a worker thread) then builds the families of the snapshots, keeps the
asked-for sample names as ``RestrictedRegistry`` does, and encodes them.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["Collected", "Deferred", "Frozen", "Snapshotting", "freeze", "render"]

Encoder = Callable[[Collector], bytes]


@runtime_checkable
class Snapshotting(Protocol):
    """A collector over loop-owned state that can hand a thread a copy of it."""

    def snapshot(self) -> Collector:
        """Called on the loop; the result's ``collect()`` may run in any thread."""
        ...


class Deferred(Collector):
    """A collector whose families come from ``build``, a function over copied values only."""

    def __init__(self, build: Callable[[], Iterable[Metric]]) -> None:
        self._build = build

    def collect(self) -> Iterable[Metric]:
        return self._build()


class Collected(Collector):
    """Families collected already: on the loop (a collector with no ``snapshot``), or
    in the thread, for the library's encoder (ccbridge/exposition.py's fallback)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


@dataclass(frozen=True, slots=True)
class Frozen:
    """One scrape's collectors, each safe to collect from a worker thread, and the
    sample names it asked for (None: all). A ``Collector`` for the encoders."""

    collectors: tuple[Collector, ...]
    names: frozenset[str] | None

    def collect(self) -> Iterable[Metric]:
        for c in self.collectors:
            for metric in c.collect():
                if self.names is None:
                    yield metric
                    continue
                # As RestrictedRegistry: a collector found by one name may export others.
                samples = [s for s in metric.samples if s.name in self.names]
                if samples:
                    kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                    kept.samples = samples
                    yield kept


def _collectors(registry: CollectorRegistry, names: frozenset[str] | None) -> list[Collector]:
    # client_python has no public way to list a registry's collectors; its own
    # RestrictedRegistry reads these same fields under the same lock (pinned <1; the
    # unit tests of this module fail if they move).
    with registry._lock:
        if names is None:
            return list(registry._collector_to_names)
        found = {
            registry._names_to_collectors[n] for n in names if n in registry._names_to_collectors
        }
        # Keep registration order, so a filtered scrape lists families as a full one does.
        return [c for c in registry._collector_to_names if c in found]


def freeze(registry: CollectorRegistry, names: Sequence[str] | None = None) -> Frozen:
    """On the loop: the registry's collectors made safe to collect from a thread."""
    wanted = frozenset(names) if names is not None else None
    out: list[Collector] = []
    for c in _collectors(registry, wanted):
        # The plain class check first: most collectors are prometheus_client's metrics,
        # and isinstance against the runtime Protocol costs ~24 us a collector (Python
        # 3.11): ~0.5 ms of the loop a scrape over the lab's 22 collectors, for nothing.
        if isinstance(c, MetricWrapperBase):
            out.append(c)
        elif isinstance(c, Snapshotting):
            out.append(c.snapshot())
        else:
            out.append(Collected(list(c.collect())))
    return Frozen(tuple(out), wanted)


def render(frozen: Frozen, encoder: Encoder, compress: bool) -> bytes:
    """In a worker thread: build and encode the families, gzip when asked."""
    body = encoder(frozen)
    # Level 6 (zlib's default) is the ratio/CPU balance aiohttp's own compression uses.
    return gzip.compress(body, compresslevel=6) if compress else body
