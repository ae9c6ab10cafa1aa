"""The report's PNG: achieved calls/s, failed calls and response time, faults on the time axis."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ccbridge.loadtest.report import Report

FAULT_COLOURS = {
    "kill-site": "tab:red",
    "hang-site": "tab:orange",
    "kill-carrier": "tab:purple",
    "restart-bridge": "tab:brown",
    "drain": "tab:olive",
}


def draw(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    secs = report.series.seconds
    t = [s.t for s in secs]
    fig, (ax_rate, ax_fail, ax_rt) = plt.subplots(3, 1, sharex=True, figsize=(11, 7.5))
    try:
        ax_rate.plot(t, [s.created for s in secs], label="calls placed/s", color="tab:blue")
        ax_rate.plot(t, [s.successful for s in secs], label="calls completed/s", color="tab:green")
        ax_rate.axhline(float(report.plan["rate"]), ls=":", color="grey", label="target rate")
        ax_rate.set_ylabel("calls/s")
        ax_rate.legend(loc="upper left", fontsize="small")
        ax_fail.bar(t, [s.failed for s in secs], color="tab:red", width=1.0)
        ax_fail.set_ylabel("failed calls")
        rt = [(s.t, s.response_ms) for s in secs if s.response_ms is not None]
        ax_rt.plot([x for x, _ in rt], [y for _, y in rt], color="tab:gray", marker=".", lw=1)
        ax_rt.set_ylabel("INVITE→200 ms")
        ax_rt.set_xlabel("seconds since start")
        for f in report.faults:
            start = f.get("started")
            if not isinstance(start, float | int):
                continue
            end = f.get("recovered")
            colour = FAULT_COLOURS.get(str(f["kind"]), "black")
            for ax in (ax_rate, ax_fail, ax_rt):
                if isinstance(end, float | int) and end - start > 0.5:
                    ax.axvspan(start, end, color=colour, alpha=0.12)
                ax.axvline(start, color=colour, lw=1)
            label = f"{f['kind']} {f['target']}".strip()
            ax_rate.annotate(
                label,
                (start, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                fontsize="x-small",
                color=colour,
            )
        total = report.totals
        fig.suptitle(
            f"ccbridge load test: {total['placed']} calls, {total['failed']} failed "
            f"({total['failed_saveable']} saveable)"
        )
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
