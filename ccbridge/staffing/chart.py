"""The plan's PNG: per site, a heatmap of staffed minus required agents per half hour."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ccbridge.staffing.plan import IntervalPlan, Status

MARKED = (Status.UNREACHABLE, Status.NO_FORECAST, Status.CLOSED_WITH_DEMAND)


def grid(rows: Sequence[IntervalPlan], site: str) -> tuple[list[str], list[str], list[list[float]]]:
    """(queues, slot labels, values): staffed - required per queue and slot; NaN where
    the queue is closed or has no requirement."""
    queues = sorted({r.key.queue for r in rows if r.key.site == site})
    labels = sorted({r.slot_label for r in rows if r.key.site == site})
    col = {s: i for i, s in enumerate(labels)}
    qi = {q: i for i, q in enumerate(queues)}
    values = [[math.nan] * len(labels) for _ in queues]
    for r in rows:
        if r.key.site == site and r.open and r.required is not None:
            values[qi[r.key.queue]][col[r.slot_label]] = float(r.staffed - r.required)
    return queues, labels, values


def draw(rows: Sequence[IntervalPlan], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    sites = sorted({r.key.site for r in rows})
    fig, axes = plt.subplots(
        len(sites),
        1,
        figsize=(13, 1.5 + 1.8 * len(sites)),
        squeeze=False,
        layout="constrained",
    )
    try:
        worst = max(
            (abs(r.staffed - r.required) for r in rows if r.required is not None), default=1
        )
        norm = TwoSlopeNorm(vmin=-max(worst, 1), vcenter=0.0, vmax=max(worst, 1))
        cmap = plt.get_cmap("RdBu").with_extremes(bad="#dddddd")  # NaN: closed
        image = None
        legend = False
        for ax, site in zip(axes[:, 0], sites, strict=True):
            queues, labels, values = grid(rows, site)
            image = ax.imshow(values, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
            col = {s: i for i, s in enumerate(labels)}
            qi = {q: i for i, q in enumerate(queues)}
            marks = [
                (col[r.slot_label], qi[r.key.queue])
                for r in rows
                if r.key.site == site and r.status in MARKED
            ]
            if marks:
                ax.scatter(
                    [x for x, _ in marks],
                    [y for _, y in marks],
                    marker="x",
                    s=10,
                    color="black",
                    linewidths=0.7,
                    label=None
                    if legend
                    else "unreachable, no forecast, or closed with calls expected",
                )
                legend = True
            short = sum(1 for r in rows if r.key.site == site and r.status == Status.UNDERSTAFFED)
            title = f"{site} (local time): {short} queue half hours short"
            ax.set_title(title, fontsize="small", loc="left")
            ax.set_yticks(range(len(queues)), queues, fontsize="small")
            ticks = _ticks(labels)
            ax.set_xticks([i for i, _ in ticks], [t for _, t in ticks], fontsize="x-small")
            for i, label in enumerate(labels):
                if label.endswith("T00:00") and i:
                    ax.axvline(i - 0.5, color="white", lw=1.0)
        if image is not None:
            fig.colorbar(image, ax=axes[:, 0].tolist(), label="agents (red: short)", shrink=0.8)
        if legend:
            fig.legend(loc="outside lower left", fontsize="x-small", frameon=False)
        fig.suptitle(
            "staffed minus required agents per half hour (red: short, blue: spare, grey: closed)",
            fontsize="medium",
        )
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def _ticks(labels: Sequence[str]) -> list[tuple[int, str]]:
    """Every 6 hours with its date at midnight over up to 3 days, else one per day."""
    days = sum(1 for s in labels if s.endswith("T00:00"))
    out: list[tuple[int, str]] = []
    for i, s in enumerate(labels):
        hhmm = s[11:]
        if hhmm == "00:00":
            out.append((i, s[:10] if days > 3 else f"{s[5:10]}\n00:00"))
        elif days <= 3 and hhmm in ("06:00", "12:00", "18:00"):
            out.append((i, hhmm))
    return out
