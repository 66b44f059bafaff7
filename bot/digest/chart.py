"""The digest's chart as a PNG: open fixable findings over 8 weeks, and their open lags by age.

Drawn on a `matplotlib.figure.Figure` with the Agg canvas: no pyplot, no global state, no
backend switch, so it is safe in a running bot. The image is always 1000 x 500 pixels.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from bot.digest.compute import BUCKET_LABELS, Digest, TeamDigest, severity_sort_key

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH_IN, HEIGHT_IN, DPI = 10, 5, 100  # 1000 x 500 px
SEVERITY_COLORS = {
    "critical": "#b91c1c",
    "high": "#ea580c",
    "medium": "#ca8a04",
    "low": "#2563eb",
    "info": "#9ca3af",
}
OTHER_COLOR = "#6b7280"


def _scope(digest: Digest, team: str | None) -> TeamDigest | None:
    return digest.overall if team is None else digest.team(team)


def chart_series(digest: Digest, team: str | None = None) -> dict[str, list[int]]:
    """Open fixable findings by severity at each of `digest.week_ends` (oldest first).

    `team` None sums every team in the digest. Severities that were never open are left out;
    the rest come critical first.
    """
    ends = digest.week_ends
    index = {w: i for i, w in enumerate(ends)}
    series: dict[str, list[int]] = {}
    for p in digest.weekly:
        if team is not None and p.team != team:
            continue
        at = index.get(p.week_end)
        if at is not None:
            series.setdefault(p.severity, [0] * len(ends))[at] += p.open_fixable
    return {s: series[s] for s in sorted(series, key=severity_sort_key) if any(series[s])}


def chart_buckets(digest: Digest, team: str | None = None) -> dict[str, list[int]]:
    """Open fixable findings at the period's end by severity and age bucket (BUCKET_LABELS)."""
    scope = _scope(digest, team)
    if scope is None:
        return {}
    return {
        s.severity: list(s.current.buckets.counts)
        for s in scope.severities
        if any(s.current.buckets.counts)
    }


def chart_figure(digest: Digest, team: str | None = None) -> Figure:
    """The two panels on a new Figure (for tests to inspect; `chart_png` renders it).

    matplotlib is imported on first use: with numpy it is about 55 MB that `serve` need not
    hold until a digest is drawn."""
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    weekly_ax, age_ax = fig.subplots(1, 2, width_ratios=(3, 2))
    who = "all teams" if team is None else team
    fig.suptitle(f"Patch lag: {who}", fontsize=13)

    ends = digest.week_ends
    labels = [f"{w.day} {w:%b}" for w in ends]
    x = list(range(len(ends)))
    bottom = [0] * len(ends)
    series = chart_series(digest, team)
    for severity, counts in series.items():
        weekly_ax.bar(
            x,
            counts,
            bottom=bottom,
            label=severity,
            color=SEVERITY_COLORS.get(severity, OTHER_COLOR),
            width=0.7,
        )
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    weekly_ax.set_xticks(x, labels, fontsize=8)
    weekly_ax.set_title("Open fixable findings, end of each week", fontsize=10)
    weekly_ax.set_ylabel("findings")
    weekly_ax.yaxis.get_major_locator().set_params(integer=True)

    buckets = chart_buckets(digest, team)
    bx = list(range(len(BUCKET_LABELS)))
    stacked = [0] * len(BUCKET_LABELS)
    for severity, counts in buckets.items():
        age_ax.bar(
            bx,
            counts,
            bottom=stacked,
            label=severity,
            color=SEVERITY_COLORS.get(severity, OTHER_COLOR),
            width=0.7,
        )
        stacked = [b + c for b, c in zip(stacked, counts, strict=True)]
    age_ax.set_xticks(bx, list(BUCKET_LABELS), fontsize=9)
    age_ax.set_title("Open patch lag now, by age", fontsize=10)
    age_ax.yaxis.get_major_locator().set_params(integer=True)

    handles: dict[str, Artist] = {}
    for ax, data in ((weekly_ax, series), (age_ax, buckets)):
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        if not data:
            ax.text(
                0.5,
                0.5,
                "No open fixable findings",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color=OTHER_COLOR,
            )
            ax.set_ylim(0, 1)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:  # one legend for both panels, under them
        labels = sorted(handles, key=severity_sort_key)
        fig.legend(
            [handles[label] for label in labels],
            labels,
            loc="outside lower center",
            ncols=len(labels),
            frameon=False,
            fontsize=9,
        )
    return fig


def chart_png(digest: Digest, team: str | None = None) -> bytes:
    """The chart as PNG bytes, 1000 x 500 px (`team` None: all teams together)."""
    fig = chart_figure(digest, team)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
