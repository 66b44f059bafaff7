"""Patch-lag metrics on generated histories whose lags are known exactly, on both engines."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from bot.digest.compute import AgeBuckets, Digest, PeriodStats, compute, week_ends
from bot.store.db import Database
from bot.store.models import Suppression, TrackedFinding

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=7)  # the period is [START, NOW)
DAY = timedelta(days=1)
_ids = itertools.count()

SLA = {"critical": 7, "high": 8, "medium": 30, "low": 90}


def sla_days(team: str | None, severity: str) -> int | None:
    if team == "search" and severity == "medium":
        return 60
    return SLA.get(severity)


def finding(
    *,
    team: str | None = "payments",
    severity: str = "high",
    repository: str = "payments/api",
    fixable_since: datetime | None,
    fixed_at: datetime | None = None,
) -> TrackedFinding:
    n = next(_ids)
    seen = fixable_since or NOW - 400 * DAY
    return TrackedFinding(
        registry_name="local",
        repository=repository,
        check_id=f"CVE-2026-{n:05d}",
        package="openssl",
        severity=severity,
        title="openssl: something",
        fixed_version="3.0.99",
        team=team,
        status="open" if fixed_at is None else "fixed",
        first_seen_at=seen,
        last_seen_at=fixed_at or NOW,
        last_seen_digest="sha256:" + "ab" * 32,
        fixed_at=fixed_at,
        fixable_since=fixable_since,
    )


def resolved(lag: timedelta, *, at: datetime, **kw: object) -> TrackedFinding:
    return finding(fixable_since=at - lag, fixed_at=at, **kw)  # type: ignore[arg-type]


def opened(age: timedelta, **kw: object) -> TrackedFinding:
    return finding(fixable_since=NOW - age, **kw)  # type: ignore[arg-type]


async def run(db: Database, rows: list[object], **kw: object) -> Digest:
    async with db.transaction() as s:
        s.add_all(rows)
    async with db.transaction() as s:
        return await compute(s, now=NOW, sla_days=sla_days, **kw)  # type: ignore[arg-type]


async def test_resolved_lags_median_p90_mttr_by_nearest_rank(db: Database) -> None:
    # Ten high findings fixed in the period with lags of exactly 1..10 days.
    rows = [resolved(k * DAY, at=NOW - 2 * DAY - k * timedelta(hours=1)) for k in range(1, 11)]
    # Neither unfixable findings nor ones fixed outside both periods count.
    rows.append(finding(fixable_since=None, fixed_at=NOW - DAY))
    rows.append(finding(fixable_since=None))
    rows.append(resolved(3 * DAY, at=NOW - 30 * DAY))
    rows.append(resolved(3 * DAY, at=NOW + timedelta(seconds=1)))  # after `now`
    d = await run(db, rows)

    [team] = d.teams
    high = team.severity("high")
    assert high is not None and high.sla_days == 8
    cur = high.current
    assert cur.resolved == 10
    assert cur.median_lag == 5 * DAY  # rank ceil(0.5 * 10) = 5
    assert cur.p90_lag == 9 * DAY  # rank ceil(0.9 * 10) = 9
    assert cur.mttr == timedelta(days=5, hours=12)
    assert cur.resolved_lag == 55 * DAY
    assert cur.resolved_breaches == 2  # 9 and 10 days exceed 8; exactly 8 does not
    assert team.current.resolved == 10 and team.current.median_lag == 5 * DAY
    assert d.overall.current.p90_lag == 9 * DAY
    assert d.overall.severity("critical") is not None
    crit = d.overall.severity("critical")
    assert crit is not None and crit.current == PeriodStats()
    assert [s.severity for s in team.severities] == ["critical", "high", "medium", "low", "info"]


async def test_nearest_rank_with_odd_counts_and_one_value(db: Database) -> None:
    rows = [
        resolved(k * DAY, at=NOW - DAY, severity="medium") for k in (4, 1, 3, 2, 5)
    ]  # n = 5: median rank 3, p90 rank 5
    rows.append(resolved(timedelta(hours=7), at=NOW - DAY, severity="low"))
    d = await run(db, rows)
    [team] = d.teams
    medium, low = team.severity("medium"), team.severity("low")
    assert medium is not None and low is not None
    assert (medium.current.median_lag, medium.current.p90_lag) == (3 * DAY, 5 * DAY)
    assert (low.current.median_lag, low.current.p90_lag) == (timedelta(hours=7),) * 2
    # all six together, sorted: 7h, 1d, 2d, 3d, 4d, 5d -> ranks 3 and 6
    assert (team.current.median_lag, team.current.p90_lag) == (2 * DAY, 5 * DAY)
    assert team.current.mttr == (15 * DAY + timedelta(hours=7)) / 6


async def test_open_ages_buckets_and_breaches(db: Database) -> None:
    ages = [3, 7, 10, 45, 90, 200]
    rows = [opened(a * DAY, severity="critical") for a in ages]
    rows.append(opened(6 * DAY + timedelta(hours=23), severity="critical"))
    d = await run(db, rows)
    [team] = d.teams
    crit = team.severity("critical")
    assert crit is not None and crit.sla_days == 7
    cur = crit.current
    assert cur.open_fixable == 7
    # <7d: 3d, 6d23h; 7-30d: 7d (the boundary goes up), 10d; 30-90d: 45d; >=90d: 90d, 200d
    assert cur.buckets == AgeBuckets(2, 2, 1, 2)
    assert cur.open_breaches == 4  # over 7 days: 10, 45, 90, 200 (exactly 7 is not over)
    assert cur.breaches == 4 and cur.resolved == 0 and cur.mttr is None
    assert team.current.open_fixable == 7 and team.current.buckets == AgeBuckets(2, 2, 1, 2)


async def test_previous_period_numbers_at_its_own_end(db: Database) -> None:
    rows = [opened(a * DAY, severity="critical") for a in (3, 7, 10, 45, 90, 200)]
    # Resolved in the previous period [NOW-14d, NOW-7d): lags 2 and 4 days.
    rows += [resolved(lag * DAY, at=START - DAY) for lag in (2, 4)]
    # Open at the previous period's end, fixed in this one after 12 days (a resolved breach).
    rows.append(resolved(12 * DAY, at=NOW - 2 * DAY))
    d = await run(db, rows)
    [team] = d.teams
    crit, high = team.severity("critical"), team.severity("high")
    assert crit is not None and high is not None
    prev = crit.previous
    # At START the ages were 0 (fixable exactly at START counts), 3, 38, 83 and 193 days.
    assert prev.open_fixable == 5
    assert prev.buckets == AgeBuckets(2, 0, 2, 1)
    assert prev.open_breaches == 3
    assert high.previous.resolved == 2
    assert high.previous.median_lag == 2 * DAY and high.previous.p90_lag == 4 * DAY
    assert high.previous.mttr == 3 * DAY
    assert high.previous.open_fixable == 1  # the 12-day one, 7 days old at START
    assert high.previous.open_breaches == 0
    assert high.current.resolved == 1 and high.current.resolved_breaches == 1
    assert high.current.open_fixable == 0
    assert team.previous.open_fixable == 6 and team.current.open_fixable == 6
    assert team.current.breaches == 4 + 1 and team.previous.breaches == 3


async def test_teams_filter_and_each_teams_sla(db: Database) -> None:
    rows = [
        opened(40 * DAY, severity="medium"),
        opened(40 * DAY, severity="medium", team="search", repository="search/idx"),
        resolved(DAY, at=NOW - DAY, severity="low", team="search", repository="search/idx"),
        opened(100 * DAY, severity="low", team=None, repository="misc/tool"),
    ]
    d = await run(db, rows, teams=["payments"])
    assert [t.team for t in d.teams] == ["payments"]
    assert d.overall.current.open_fixable == 1 and d.overall.current.resolved == 0
    payments = d.teams[0].severity("medium")
    assert payments is not None and payments.current.open_breaches == 1  # 40 > 30

    d = await run(db, [], teams=["search", "nobody"])
    assert [t.team for t in d.teams] == ["search", "nobody"]
    search = d.teams[0]
    medium = search.severity("medium")
    assert medium is not None and medium.sla_days == 60 and medium.current.open_breaches == 0
    assert search.current.resolved == 1
    assert d.teams[1].current == PeriodStats() and d.teams[1].top_offenders == []

    d = await run(db, [])
    assert [t.team for t in d.teams] == ["payments", "search", None]
    assert d.overall.current.open_fixable == 3
    assert d.overall.current.open_breaches == 2  # payments 40 > 30, misc 100 > 90; search no
    overall_medium = d.overall.severity("medium")
    assert overall_medium is not None and overall_medium.sla_days is None  # 30 and 60
    overall_low = d.overall.severity("low")
    assert overall_low is not None and overall_low.sla_days == 90


async def test_top_offenders_by_total_open_lag(db: Database) -> None:
    rows = [
        opened(10 * DAY, repository="r/a"),
        opened(20 * DAY, repository="r/a", severity="critical"),  # 30 days in total
        opened(45 * DAY, repository="r/b", severity="low"),
        opened(1 * DAY, repository="r/c"),
        opened(5 * DAY, repository="r/d"),
        opened(2 * DAY, repository="r/e"),
        opened(3 * DAY, repository="r/f"),
        opened(100 * DAY, repository="s/x", team="search"),
        resolved(300 * DAY, at=NOW - DAY, repository="r/z"),  # fixed: no open lag
        finding(fixable_since=None, repository="r/y"),  # no fix known: no lag
    ]
    d = await run(db, rows)
    payments = d.team("payments")
    assert payments is not None
    top = payments.top_offenders
    assert [o.repository for o in top] == ["r/b", "r/a", "r/d", "r/f", "r/e"]
    assert top[1].open_fixable == 2 and top[1].total_open_lag == 30 * DAY
    assert top[1].oldest_lag == 20 * DAY and top[1].worst_severity == "critical"
    assert top[0].registry == "local" and top[0].worst_severity == "low"
    assert [o.repository for o in d.overall.top_offenders] == ["s/x", "r/b", "r/a", "r/d", "r/f"]


async def test_decisions_in_the_period_with_expiries(db: Database) -> None:
    async with db.transaction() as s:
        row = opened(10 * DAY)
        s.add(row)
        await s.flush()

        def sup(created: datetime, **kw: object) -> Suppression:
            values: dict[str, object] = {
                "kind": "approve",
                "scope": "repository",
                "team": "payments",
                "registry_name": "local",
                "repository": "payments/api",
                "check_id": row.check_id,
                "package": "openssl",
                "reason": "accepted <https://x|y>",
                "decided_by": "U123ABC",
                "created_at": created,
                "finding_id": row.id,
            }
            values.update(kw)
            return Suppression(**values)

        s.add_all(
            [
                sup(NOW - DAY, until=NOW + 30 * DAY),
                sup(NOW - 2 * DAY, kind="ignore", until_fixed=True, scope="vulnerability"),
                sup(NOW - 3 * DAY, kind="ignore", until=NOW - DAY, expired_at=NOW - DAY),
                sup(NOW - 8 * DAY),  # before the period
                sup(NOW - DAY, team="search"),
            ]
        )
    d = await run(db, [], teams=["payments"])
    decisions = d.teams[0].decisions
    assert [(x.kind, x.created_at) for x in decisions] == [
        ("ignore", NOW - 3 * DAY),
        ("ignore", NOW - 2 * DAY),
        ("approve", NOW - DAY),
    ]
    assert decisions[0].until == NOW - DAY and decisions[0].expired_at == NOW - DAY
    assert decisions[1].until is None and decisions[1].until_fixed
    assert decisions[2].until == NOW + 30 * DAY and not decisions[2].until_fixed
    assert decisions[2].decided_by == "U123ABC" and decisions[2].reason == "accepted <https://x|y>"
    d = await run(db, [])
    assert len(d.overall.decisions) == 4
    search = d.team("search")
    assert search is not None and len(search.decisions) == 1


async def test_weekly_open_fixable_series(db: Database) -> None:
    rows = [opened(a * DAY, severity="critical") for a in (3, 7, 10, 45, 90, 200)]
    # open 30..16 days ago, fixed 16 days ago: open at the ends of weeks 21 and 28 days ago
    rows.append(resolved(14 * DAY, at=NOW - 16 * DAY, severity="low"))
    rows.append(opened(8 * DAY, severity="low", team="search", repository="s/x"))
    d = await run(db, rows)
    assert d.week_ends == week_ends(NOW)
    assert d.week_ends[0] == NOW - 49 * DAY and d.week_ends[-1] == NOW

    def series(team: str | None, severity: str) -> list[int]:
        points = {
            p.week_end: p.open_fixable for p in d.weekly if (p.team, p.severity) == (team, severity)
        }
        return [points.get(w, 0) for w in d.week_ends]

    # at NOW - 7k days a finding is open when its age is at least 7k days
    assert series("payments", "critical") == [2, 3, 3, 3, 3, 3, 5, 6]
    assert series("payments", "low") == [0, 0, 0, 1, 1, 0, 0, 0]
    assert series("search", "low") == [0, 0, 0, 0, 0, 0, 1, 1]
    d = await run(db, [], teams=["search"])
    assert {p.team for p in d.weekly} == {"search"}


async def test_longer_periods_and_bad_arguments(db: Database) -> None:
    rows = [resolved(k * DAY, at=NOW - 20 * DAY) for k in (1, 2, 3)]
    d = await run(db, rows, days=30)
    assert d.period_start == NOW - 30 * DAY and d.days == 30
    assert d.overall.current.resolved == 3 and d.overall.current.median_lag == 2 * DAY
    async with db.transaction() as s:
        with pytest.raises(ValueError):
            await compute(s, now=NOW.replace(tzinfo=None), sla_days=sla_days)
        with pytest.raises(ValueError):
            await compute(s, now=NOW, days=0, sla_days=sla_days)
