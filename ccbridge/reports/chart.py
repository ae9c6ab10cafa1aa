"""The interval report as a PNG: per site, offered calls (bars) and service level (line)
per interval, for a manager who would rather look than read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any


def series(
    rows: Sequence[dict[str, Any]], site: str
) -> tuple[list[datetime], list[int], list[float | None], list[bool]]:
    """(interval starts, offered, service level or None, incomplete) of one site's rows
    from a report rolled up by site (``by=site``: one row per interval)."""
    mine = [r for r in rows if r["site"] == site]
    return (
        [datetime.fromisoformat(r["interval_start"]) for r in mine],
        [r["offered"] or 0 for r in mine],
        [r["service_level"] for r in mine],
        [bool(r["incomplete"]) for r in mine],
    )


def draw(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    sites = list(dict.fromkeys(r["site"] for r in rows))
    fig, axes = plt.subplots(
        len(sites), 1, figsize=(13, 1.5 + 2.6 * len(sites)), squeeze=False, layout="constrained"
    )
    try:
        for ax, site in zip(axes[:, 0], sites, strict=True):
            starts, offered, sl, incomplete = series(rows, site)
            x = list(range(len(starts)))
            colors = ["#bbbbbb" if bad else "#4c72b0" for bad in incomplete]
            ax.bar(x, offered, color=colors, width=0.85, label="offered")
            ax.set_ylabel("offered calls")
            ax.set_title(f"{site} ({starts[0].tzname() if starts else ''}, local time)", loc="left")
            right = ax.twinx()
            right.plot(
                x,
                [v * 100 if v is not None else float("nan") for v in sl],
                color="#dd8452",
                marker=".",
                label="service level",
            )
            right.set_ylim(0, 105)
            right.set_ylabel("service level %")
            step = max(1, len(x) // 16)
            ax.set_xticks(x[::step])
            fmt = "%H:%M" if len({s.date() for s in starts}) == 1 else "%m-%d %H:%M"
            ax.set_xticklabels([s.strftime(fmt) for s in starts[::step]], rotation=30)
            if any(incomplete):
                ax.text(
                    0.99,
                    0.95,
                    "grey: incomplete (coverage gap)",
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize=8,
                )
        fig.suptitle(title)
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
