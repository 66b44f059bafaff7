"""The digest chart: a real PNG of the expected size, with the series the digest has."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from matplotlib.image import imread

from bot.digest.chart import chart_buckets, chart_figure, chart_png, chart_series
from bot.digest.compute import (
    AgeBuckets,
    Digest,
    PeriodStats,
    SeverityStats,
    TeamDigest,
    WeeklyPoint,
    week_ends,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def team_digest(team: str | None, buckets: dict[str, AgeBuckets]) -> TeamDigest:
    severities = [
        SeverityStats(s, 7, PeriodStats(open_fixable=sum(b.counts), buckets=b), PeriodStats())
        for s, b in buckets.items()
    ]
    return TeamDigest(team, severities, PeriodStats(), PeriodStats())


def digest() -> Digest:
    ends = week_ends(NOW)
    weekly = []
    for k, end in enumerate(ends):
        weekly.append(WeeklyPoint(end, "payments", "critical", k))
        weekly.append(WeeklyPoint(end, "payments", "high", 2))
        weekly.append(WeeklyPoint(end, "search", "high", 1 if k == 7 else 0))
        weekly.append(WeeklyPoint(end, "search", "low", 0))  # never open: no series
    teams = [
        team_digest("payments", {"critical": AgeBuckets(1, 2, 3, 1), "high": AgeBuckets(2)}),
        team_digest("search", {"high": AgeBuckets(0, 1), "low": AgeBuckets()}),
    ]
    overall = team_digest(
        None,
        {"critical": AgeBuckets(1, 2, 3, 1), "high": AgeBuckets(2, 1), "low": AgeBuckets()},
    )
    return Digest(NOW - timedelta(days=7), NOW, teams, weekly, overall)


def test_series_per_severity_over_the_weeks() -> None:
    d = digest()
    assert chart_series(d) == {
        "critical": [0, 1, 2, 3, 4, 5, 6, 7],
        "high": [2, 2, 2, 2, 2, 2, 2, 3],  # payments 2 each week, search 1 in the last
    }
    assert chart_series(d, "payments") == {
        "critical": [0, 1, 2, 3, 4, 5, 6, 7],
        "high": [2] * 8,
    }
    assert chart_series(d, "search") == {"high": [0, 0, 0, 0, 0, 0, 0, 1]}
    assert chart_series(d, "nobody") == {}
    assert chart_buckets(d) == {"critical": [1, 2, 3, 1], "high": [2, 1, 0, 0]}
    assert chart_buckets(d, "search") == {"high": [0, 1, 0, 0]}


def test_series_oldest_week_first() -> None:
    d = digest()
    assert d.week_ends[0] == NOW - timedelta(days=49) and d.week_ends[-1] == NOW


def test_figure_has_two_panels_with_severity_legends() -> None:
    fig = chart_figure(digest())
    weekly_ax, age_ax = fig.axes
    [legend] = fig.legends  # one for both panels
    assert [t.get_text() for t in legend.get_texts()] == ["critical", "high"]
    for ax in (weekly_ax, age_ax):
        assert ax.get_legend_handles_labels()[1] == ["critical", "high"]
    # 8 weeks x 2 severities, 4 buckets x 2 severities
    assert len(weekly_ax.patches) == 16 and len(age_ax.patches) == 8
    heights = [round(p.get_height()) for p in weekly_ax.patches]
    assert heights == [0, 1, 2, 3, 4, 5, 6, 7] + [2] * 7 + [3]
    assert [t.get_text() for t in age_ax.get_xticklabels()] == [
        "<7d",
        "7\u201330d",
        "30\u201390d",
        "\u226590d",
    ]
    assert fig.get_size_inches().tolist() == [10.0, 5.0] and fig.dpi == 100


def test_png_signature_and_size() -> None:
    png = chart_png(digest())
    assert png.startswith(PNG_SIGNATURE)
    image = imread(io.BytesIO(png), format="png")
    assert image.shape[:2] == (500, 1000)
    assert chart_png(digest()) == png  # deterministic


def test_png_of_a_team_and_of_nothing() -> None:
    empty = Digest(NOW - timedelta(days=7), NOW, [], [], team_digest(None, {}))
    for png in (chart_png(digest(), "search"), chart_png(empty)):
        assert png.startswith(PNG_SIGNATURE)
        assert imread(io.BytesIO(png), format="png").shape[:2] == (500, 1000)
    fig = chart_figure(empty)
    assert fig.legends == []
    assert len(empty.week_ends) == 8  # empty digests still have 8 weeks on the axis
