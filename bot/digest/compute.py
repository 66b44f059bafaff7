"""Patch-lag metrics for the weekly digest, computed in SQL on SQLite and PostgreSQL alike.

Definitions (the README quotes these):

* A *fixable* finding is a tracked finding with `fixable_since` set: a fix became known while
  the finding was deployed. Findings without a known fix have no patch lag and are not counted.
* *Patch lag* runs from `fixable_since` until `fixed_at` for a resolved finding, or until the
  moment looked at (`now`, or a period's end) for one still open: an open lag grows.
  Lags are reported to the whole second.
* A finding is *open fixable at T* when `fixable_since <= T` and it was not fixed by then
  (`fixed_at` is empty or later than T). Approved and ignored findings still count: they are
  deployed and a fix exists. (A finding that came back after a fix starts afresh, as the bot
  posts it anew, so its earlier lag is not in the history.)
* The *period* is [`now - days`, `now`); the *previous period* is the one of equal length
  before it, [`now - 2*days`, `now - days`). Every number below is given for both, the
  previous period's taken at its own end, so trends compare like with like.
* *Open fixable*: findings open fixable at the period's end.
* *Resolved*: fixable findings whose `fixed_at` falls in the period.
* *Median* and *p90* lag of the resolved, by nearest rank: the value at rank ceil(p * n / 100)
  in ascending order of n lags (n = 10: the 5th and the 9th). No value when nothing resolved.
* *MTTR* (mean time to remediate): the mean lag of the resolved.
* *SLA breaches*: with `sla_days(team, severity)` days (no SLA: never a breach), the open
  fixable findings whose open lag at the period's end exceeds it, plus the resolved ones whose
  lag exceeded it. Both parts are kept apart as well.
* *Age buckets* of the open fixable findings by open lag: [0, 7d), [7d, 30d), [30d, 90d),
  [90d, ...).
* *Top offenders*: the 5 repositories (registry and repository) with the most total open lag
  (the sum of their open fixable findings' lags) at `now`, per team and over all teams.
* *Decisions*: the Approve and Ignore decisions (`suppressions`) taken in the period, with
  what they cover and until when.
* *Weekly*: open fixable findings by team and severity at `now - 7k days`, k = 7 ... 0.

Every figure is an aggregate query (GROUP BY, window functions); nothing loops over findings in
Python. Severities are ordered critical > high > medium > low > info (unknown ones last).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    extract,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.model.findings import Severity
from bot.store.models import Suppression, TrackedFinding, UTCDateTime

SEVERITY_ORDER: tuple[str, ...] = tuple(s.value for s in Severity)  # critical first
BUCKET_LABELS: tuple[str, ...] = ("<7d", "7\u201330d", "30\u201390d", "\u226590d")
BUCKET_DAYS: tuple[int, int, int] = (7, 30, 90)
TOP_OFFENDERS = 5
WEEKS = 8
DAY = 86400

SlaDays = Callable[[str | None, str], int | None]


def severity_rank(severity: str) -> int:
    """Higher is worse; unknown severities sort after info."""
    try:
        return Severity(severity).rank
    except ValueError:
        return -1


def severity_sort_key(severity: str) -> tuple[int, str]:
    return (-severity_rank(severity), severity)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class AgeBuckets:
    """Open fixable findings by open lag: [0, 7d), [7d, 30d), [30d, 90d), [90d, ...)."""

    under_7d: int = 0
    d7_to_30: int = 0
    d30_to_90: int = 0
    over_90d: int = 0

    @property
    def counts(self) -> tuple[int, int, int, int]:
        return (self.under_7d, self.d7_to_30, self.d30_to_90, self.over_90d)

    def __add__(self, other: AgeBuckets) -> AgeBuckets:
        return AgeBuckets(*(a + b for a, b in zip(self.counts, other.counts, strict=True)))


@dataclass(frozen=True)
class PeriodStats:
    """One period's numbers for one scope (a team and severity, a team, a severity, or all)."""

    #: open fixable at the period's end, and those of them past their SLA
    open_fixable: int = 0
    open_breaches: int = 0
    buckets: AgeBuckets = AgeBuckets()
    #: resolved in the period, those that took longer than their SLA, and their summed lag
    resolved: int = 0
    resolved_breaches: int = 0
    resolved_lag: timedelta = timedelta(0)
    median_lag: timedelta | None = None
    p90_lag: timedelta | None = None

    @property
    def breaches(self) -> int:
        return self.open_breaches + self.resolved_breaches

    @property
    def mttr(self) -> timedelta | None:
        """Mean time to remediate: the mean lag of the findings resolved in the period."""
        if not self.resolved:
            return None
        return timedelta(seconds=round(self.resolved_lag.total_seconds() / self.resolved))


@dataclass(frozen=True)
class SeverityStats:
    severity: str
    #: the SLA of this team and severity (None: no SLA, or several teams with different ones)
    sla_days: int | None
    current: PeriodStats
    previous: PeriodStats


@dataclass(frozen=True)
class Offender:
    """A repository with open fixable findings, ranked by their total open lag at `now`."""

    registry: str
    repository: str
    open_fixable: int
    total_open_lag: timedelta
    oldest_lag: timedelta
    worst_severity: str


@dataclass(frozen=True)
class DecisionTaken:
    """An Approve (accepted risk) or Ignore decision taken in the period."""

    id: int
    kind: str  # "approve" | "ignore"
    scope: str  # "image" | "repository" | "vulnerability"
    team: str | None
    registry: str | None
    repository: str | None
    check_id: str
    package: str | None
    decided_by: str
    reason: str
    created_at: datetime
    until: datetime | None
    until_fixed: bool
    expired_at: datetime | None


@dataclass(frozen=True)
class WeeklyPoint:
    """Open fixable findings of one team and severity at `week_end`."""

    week_end: datetime
    team: str | None
    severity: str
    open_fixable: int


@dataclass(frozen=True)
class TeamDigest:
    """One team's digest (`team` None: findings that belong to no team).

    `severities` has every known severity, critical first, then any unknown ones seen.
    """

    team: str | None
    severities: list[SeverityStats]
    current: PeriodStats
    previous: PeriodStats
    top_offenders: list[Offender] = field(default_factory=list)
    decisions: list[DecisionTaken] = field(default_factory=list)

    def severity(self, name: str) -> SeverityStats | None:
        return next((s for s in self.severities if s.severity == name), None)


@dataclass(frozen=True)
class Digest:
    """The digest of a period [period_start, period_end) for the selected teams.

    `overall` covers all of them together (its medians, p90s and top offenders are computed
    over all, not combined from the teams'); its `team` is None.
    """

    period_start: datetime
    period_end: datetime
    teams: list[TeamDigest]
    weekly: list[WeeklyPoint]
    overall: TeamDigest

    @property
    def days(self) -> int:
        return round((self.period_end - self.period_start) / timedelta(days=1))

    @property
    def previous_start(self) -> datetime:
        return self.period_start - (self.period_end - self.period_start)

    @property
    def week_ends(self) -> list[datetime]:
        """Where `weekly` is counted: the ends of the last 8 weeks, oldest first."""
        return week_ends(self.period_end)

    def team(self, name: str | None) -> TeamDigest | None:
        return next((t for t in self.teams if t.team == name), None)


def week_ends(now: datetime) -> list[datetime]:
    """The ends of the last 8 weeks, oldest first; the last one is `now`."""
    return [now - timedelta(days=7 * k) for k in range(WEEKS - 1, -1, -1)]


# --------------------------------------------------------------------------- SQL helpers

_TF = TrackedFinding.__table__.c
_NO_TEAM = ""  # stands for a NULL team in joins (team names are never empty)


def seconds_between(
    dialect: str, earlier: ColumnElement[Any], later: ColumnElement[Any]
) -> ColumnElement[float]:
    """`later - earlier` in seconds, as a float, on either engine."""
    if dialect == "sqlite":
        return (func.julianday(later, type_=Float) - func.julianday(earlier, type_=Float)) * (
            literal_column("86400.0", Float)
        )
    return cast(extract("epoch", later - earlier), Float)


def _at(value: datetime) -> ColumnElement[datetime]:
    return literal(value, UTCDateTime())


def _open_at(t: datetime) -> ColumnElement[bool]:
    return and_(_TF.fixable_since <= t, or_(_TF.fixed_at.is_(None), _TF.fixed_at > t))


def _count(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(case((cond, literal_column("1"))))


def _team_filter(teams: Sequence[str] | None, column: Any) -> list[ColumnElement[bool]]:
    return [] if teams is None else [column.in_(list(teams))]


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, int | float | Decimal) else 0.0


def _td(value: Any) -> timedelta | None:
    return None if value is None else timedelta(seconds=round(_seconds(value)))


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class _Open:
    open: int = 0
    breaches: int = 0
    buckets: AgeBuckets = AgeBuckets()

    def __add__(self, other: _Open) -> _Open:
        return _Open(
            self.open + other.open, self.breaches + other.breaches, self.buckets + other.buckets
        )


@dataclass(frozen=True)
class _Resolved:
    count: int = 0
    lag: float = 0.0
    breaches: int = 0
    median: timedelta | None = None
    p90: timedelta | None = None


GroupKey = tuple[str | None, str]  # team, severity


@dataclass
class _Results:
    open: dict[tuple[int, str | None, str], _Open] = field(default_factory=dict)
    #: (level, period, team, severity); level "ts", "t" (team), "s" (severity) or "a" (all)
    resolved: dict[tuple[str, int, str | None, str | None], _Resolved] = field(default_factory=dict)
    weekly: list[WeeklyPoint] = field(default_factory=list)
    offenders: dict[tuple[str, str | None], list[Offender]] = field(default_factory=dict)
    decisions: list[DecisionTaken] = field(default_factory=list)


def _sla_table(
    pairs: Iterable[GroupKey], sla_days: SlaDays, ends: tuple[datetime, datetime]
) -> Any:
    """(team, severity, sla seconds, breach cut-off at each period end) as a derived table."""
    rows = []
    for team, severity in pairs:
        days = sla_days(team, severity)
        if days is None:
            continue
        span = timedelta(days=days)
        rows.append(
            select(
                literal(team if team is not None else _NO_TEAM, String()).label("team"),
                literal(severity, String()).label("severity"),
                literal(days * DAY, Integer()).label("sla_s"),
                _at(ends[0] - span).label("cut0"),
                _at(ends[1] - span).label("cut1"),
            )
        )
    if not rows:
        rows.append(
            select(
                literal(_NO_TEAM, String()).label("team"),
                literal("", String()).label("severity"),
                literal(0, Integer()).label("sla_s"),
                _at(ends[0]).label("cut0"),
                _at(ends[1]).label("cut1"),
            ).where(false())
        )
    return (union_all(*rows) if len(rows) > 1 else rows[0]).subquery("sla")


def _team_key() -> ColumnElement[str]:
    """The team, with NULL as "": to join on, and to group by. Grouping by the bare column
    lets SQLite walk ix_tracked_team_status and fetch every row at random, several times
    slower than one scan and a sort."""
    # An inline literal, not a bind: PostgreSQL must see the same expression in GROUP BY.
    return func.coalesce(_TF.team, literal_column("''", String()))


def _team(key: str | None) -> str | None:
    return key or None


def _joined(sla: Any) -> Any:
    tf = TrackedFinding.__table__
    return tf.outerjoin(sla, and_(_team_key() == sla.c.team, _TF.severity == sla.c.severity))


def _open_query(
    sla: Any, teams: Sequence[str] | None, ends: tuple[datetime, datetime], weeks: list[datetime]
) -> Select[Any]:
    """One scan: open fixable, breaches and buckets at both period ends; the weekly counts."""
    columns: list[Any] = [_team_key().label("team"), _TF.severity]
    for p, (t, cut) in enumerate(zip(ends, (sla.c.cut0, sla.c.cut1), strict=True)):
        is_open = _open_at(t)
        columns.append(_count(is_open).label(f"open{p}"))
        columns.append(_count(and_(is_open, _TF.fixable_since < cut)).label(f"breach{p}"))
        for days in BUCKET_DAYS:  # cumulative: open lag under `days`
            younger = _TF.fixable_since > t - timedelta(days=days)
            columns.append(_count(and_(is_open, younger)).label(f"lt{days}_{p}"))
    for k, t in enumerate(weeks):
        columns.append(_count(_open_at(t)).label(f"week{k}"))
    oldest = min(*weeks, ends[1])
    latest = max(*weeks, ends[0])
    return (
        select(*columns)
        .select_from(_joined(sla))
        .where(
            _TF.fixable_since.is_not(None),
            _TF.fixable_since <= latest,
            or_(_TF.fixed_at.is_(None), _TF.fixed_at > oldest),
            *_team_filter(teams, _TF.team),
        )
        .group_by(_team_key(), _TF.severity)
    )


def _nearest_rank(rn: Any, n: Any, lag: Any, p: int) -> ColumnElement[Any]:
    """The lag at rank ceil(p * n / 100): the smallest rn with rn * 100 >= p * n."""
    pct = literal_column(str(p), Integer)
    hundred = literal_column("100", Integer)
    one = literal_column("1", Integer)
    hit = and_(rn * hundred >= n * pct, (rn - one) * hundred < n * pct)
    return func.max(case((hit, lag)))


_LEVELS: dict[str, tuple[str, ...]] = {
    "ts": ("team", "severity"),
    "t": ("team",),
    "s": ("severity",),
    "a": (),
}


def _resolved_query(
    dialect: str,
    sla: Any,
    teams: Sequence[str] | None,
    prev_start: datetime,
    start: datetime,
    end: datetime,
) -> Any:
    """Count, lag sum, breaches, median and p90 of the resolved, at four levels, both periods."""
    lag = seconds_between(dialect, _TF.fixable_since, _TF.fixed_at)
    period = case((_TF.fixed_at >= start, literal_column("0")), else_=literal_column("1"))
    base = (
        select(
            _TF.team.label("team"),
            _TF.severity.label("severity"),
            period.label("period"),
            lag.label("lag"),
            sla.c.sla_s.label("sla_s"),
        )
        .select_from(_joined(sla))
        .where(
            _TF.fixable_since.is_not(None),
            _TF.fixed_at >= prev_start,
            _TF.fixed_at < end,
            *_team_filter(teams, _TF.team),
        )
        .subquery("r")
    )
    windows: list[Any] = []
    for level, cols in _LEVELS.items():
        parts = [base.c.period, *(base.c[c] for c in cols)]
        windows.append(
            func.row_number().over(partition_by=parts, order_by=base.c.lag).label(f"rn_{level}")
        )
        windows.append(func.count().over(partition_by=parts).label(f"n_{level}"))
    w = select(base, *windows).cte("w")
    selects = []
    for level, cols in _LEVELS.items():
        rn, n = w.c[f"rn_{level}"], w.c[f"n_{level}"]
        team = w.c.team if "team" in cols else null()
        severity = w.c.severity if "severity" in cols else null()
        selects.append(
            select(
                literal(level, String()).label("level"),
                w.c.period,
                cast(team, String()).label("team"),
                cast(severity, String()).label("severity"),
                func.count().label("n"),
                func.sum(w.c.lag).label("lag_sum"),
                _count(w.c.lag > w.c.sla_s).label("breaches"),
                _nearest_rank(rn, n, w.c.lag, 50).label("median"),
                _nearest_rank(rn, n, w.c.lag, 90).label("p90"),
            ).group_by(w.c.period, *(w.c[c] for c in cols))
        )
    return union_all(*selects)


def _severity_rank_sql() -> ColumnElement[int]:
    return case(
        *((_TF.severity == s.value, literal_column(str(s.rank))) for s in Severity),
        else_=literal_column("-1"),
    )


def _offenders_query(dialect: str, teams: Sequence[str] | None, end: datetime) -> Any:
    """The top repositories by total open lag at `end`, per team and over all selected teams."""
    per = (
        select(
            _team_key().label("team"),
            _TF.registry_name.label("registry"),
            _TF.repository.label("repository"),
            func.count().label("n"),
            func.sum(seconds_between(dialect, _TF.fixable_since, _at(end))).label("lag"),
            func.min(_TF.fixable_since).label("oldest"),
            func.max(_severity_rank_sql()).label("worst"),
        )
        .where(_TF.fixable_since.is_not(None), _open_at(end), *_team_filter(teams, _TF.team))
        .group_by(_team_key(), _TF.registry_name, _TF.repository)
        .cte("per")
    )
    ranked = select(
        per,
        func.row_number()
        .over(
            partition_by=per.c.team,
            order_by=(per.c.lag.desc(), per.c.registry, per.c.repository),
        )
        .label("rn"),
    ).subquery("ranked")
    total = (
        select(
            per.c.registry,
            per.c.repository,
            func.sum(per.c.n).label("n"),
            func.sum(per.c.lag).label("lag"),
            func.min(per.c.oldest).label("oldest"),
            func.max(per.c.worst).label("worst"),
        )
        .group_by(per.c.registry, per.c.repository)
        .subquery("total")
    )
    ranked_total = select(
        total,
        func.row_number()
        .over(order_by=(total.c.lag.desc(), total.c.registry, total.c.repository))
        .label("rn"),
    ).subquery("ranked_total")
    by_team = select(
        literal("t", String()).label("level"),
        ranked.c.team,
        ranked.c.registry,
        ranked.c.repository,
        ranked.c.n,
        ranked.c.lag,
        ranked.c.oldest,
        ranked.c.worst,
        ranked.c.rn,
    ).where(ranked.c.rn <= TOP_OFFENDERS)
    overall = select(
        literal("a", String()).label("level"),
        cast(null(), String()).label("team"),
        ranked_total.c.registry,
        ranked_total.c.repository,
        cast(ranked_total.c.n, Integer()).label("n"),
        ranked_total.c.lag,
        ranked_total.c.oldest,
        ranked_total.c.worst,
        ranked_total.c.rn,
    ).where(ranked_total.c.rn <= TOP_OFFENDERS)
    return union_all(by_team, overall)


def _decisions_query(
    teams: Sequence[str] | None, start: datetime, end: datetime
) -> Select[tuple[Suppression]]:
    return (
        select(Suppression)
        .where(
            Suppression.created_at >= start,
            Suppression.created_at < end,
            *_team_filter(teams, Suppression.team),
        )
        .order_by(Suppression.created_at, Suppression.id)
    )


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def _teams_present(session: AsyncSession) -> list[str | None]:
    rows = await session.execute(select(_TF.team).distinct())
    return [r[0] for r in rows]


async def _fetch(
    session: AsyncSession,
    *,
    teams: Sequence[str] | None,
    sla_days: SlaDays,
    prev_start: datetime,
    start: datetime,
    end: datetime,
) -> _Results:
    dialect = _dialect(session)
    weeks = week_ends(end)
    team_names: list[str | None] = (
        list(teams) if teams is not None else await _teams_present(session)
    )
    pairs = [(t, s) for t in team_names for s in SEVERITY_ORDER]
    sla = _sla_table(pairs, sla_days, (end, start))
    out = _Results()

    for row in (await session.execute(_open_query(sla, teams, (end, start), weeks))).mappings():
        team, severity = _team(row["team"]), row["severity"]
        for p in (0, 1):
            lt7, lt30, lt90 = (row[f"lt{d}_{p}"] for d in BUCKET_DAYS)
            total = row[f"open{p}"]
            out.open[(p, team, severity)] = _Open(
                total,
                row[f"breach{p}"],
                AgeBuckets(lt7, lt30 - lt7, lt90 - lt30, total - lt90),
            )
        out.weekly.extend(
            WeeklyPoint(t, team, severity, row[f"week{k}"]) for k, t in enumerate(weeks)
        )

    resolved = _resolved_query(dialect, sla, teams, prev_start, start, end)
    for row in (await session.execute(resolved)).mappings():
        key = (row["level"], int(row["period"]), row["team"], row["severity"])
        out.resolved[key] = _Resolved(
            int(row["n"]),
            _seconds(row["lag_sum"]),
            int(row["breaches"]),
            _td(row["median"]),
            _td(row["p90"]),
        )

    for row in (await session.execute(_offenders_query(dialect, teams, end))).mappings():
        oldest = row["oldest"]
        worst = int(row["worst"])
        out.offenders.setdefault((row["level"], _team(row["team"])), []).append(
            Offender(
                registry=row["registry"],
                repository=row["repository"],
                open_fixable=int(row["n"]),
                total_open_lag=_td(row["lag"]) or timedelta(0),
                oldest_lag=end - oldest,
                worst_severity=next((s.value for s in Severity if s.rank == worst), "unknown"),
            )
        )

    for sup in (await session.execute(_decisions_query(teams, start, end))).scalars():
        out.decisions.append(
            DecisionTaken(
                id=sup.id,
                kind=sup.kind,
                scope=sup.scope,
                team=sup.team,
                registry=sup.registry_name,
                repository=sup.repository,
                check_id=sup.check_id,
                package=sup.package,
                decided_by=sup.decided_by,
                reason=sup.reason,
                created_at=sup.created_at,
                until=sup.until,
                until_fixed=sup.until_fixed,
                expired_at=sup.expired_at,
            )
        )
    return out


# --------------------------------------------------------------------------- assembly


def _period(o: _Open, r: _Resolved | None) -> PeriodStats:
    r = r or _Resolved()
    return PeriodStats(
        open_fixable=o.open,
        open_breaches=o.breaches,
        buckets=o.buckets,
        resolved=r.count,
        resolved_breaches=r.breaches,
        resolved_lag=timedelta(seconds=round(r.lag)),
        median_lag=r.median,
        p90_lag=r.p90,
    )


def _sum_open(found: Iterable[_Open]) -> _Open:
    total = _Open()
    for o in found:
        total += o
    return total


def _build(
    res: _Results,
    team: str | None,
    opened: dict[tuple[int, str], _Open],
    *,
    overall: bool,
    severities: list[str],
    slas: dict[str, int | None],
) -> TeamDigest:
    """One TeamDigest from the query results; `opened` has its (period, severity) groups."""

    def resolved(p: int, severity: str | None) -> _Resolved | None:
        if overall:
            return res.resolved.get(("s" if severity else "a", p, None, severity))
        return res.resolved.get(("ts" if severity else "t", p, team, severity))

    def period(p: int, severity: str | None) -> PeriodStats:
        if severity is None:
            o = _sum_open(v for (pp, _), v in opened.items() if pp == p)
        else:
            o = opened.get((p, severity), _Open())
        return _period(o, resolved(p, severity))

    return TeamDigest(
        team=None if overall else team,
        severities=[SeverityStats(s, slas.get(s), period(0, s), period(1, s)) for s in severities],
        current=period(0, None),
        previous=period(1, None),
        top_offenders=res.offenders.get(("a", None) if overall else ("t", team), []),
        decisions=[d for d in res.decisions if overall or d.team == team],
    )


def _team_order(team: str | None) -> tuple[bool, str]:
    return (team is None, team or "")


async def compute(
    session: AsyncSession,
    *,
    now: datetime,
    days: int = 7,
    teams: Sequence[str] | None = None,
    sla_days: SlaDays,
) -> Digest:
    """The digest of [now - days, now) for `teams` (None: every team, and findings of none).

    With `teams` given there is a TeamDigest for each, in that order, even an empty one; with
    None, one for each team that has something to show, by name, the team-less last.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if days < 1:
        raise ValueError("days must be at least 1")
    end = now
    start = end - timedelta(days=days)
    prev_start = start - timedelta(days=days)
    res = await _fetch(
        session, teams=teams, sla_days=sla_days, prev_start=prev_start, start=start, end=end
    )

    seen_severities = {s for (_, _, s) in res.open} | {
        s for (_, _, _, s) in res.resolved if s is not None
    }
    severities = sorted(set(SEVERITY_ORDER) | seen_severities, key=severity_sort_key)

    if teams is not None:
        names: list[str | None] = list(dict.fromkeys(teams))
    else:
        active = {t for (p, t, _), o in res.open.items() if o.open}
        active |= {t for (lvl, _, t, _) in res.resolved if lvl == "t"}
        active |= {p.team for p in res.weekly if p.open_fixable}
        active |= {d.team for d in res.decisions}
        names = sorted(active, key=_team_order)
    by_team: dict[str | None, dict[tuple[int, str], _Open]] = {}
    overall: dict[tuple[int, str], _Open] = {}
    for (p, t, s), o in res.open.items():
        by_team.setdefault(t, {})[(p, s)] = o
        overall[(p, s)] = overall.get((p, s), _Open()) + o

    def slas(team_names: list[str | None]) -> dict[str, int | None]:
        """Each severity's SLA, when every one of these teams has the same (else None)."""
        out: dict[str, int | None] = {}
        for s in severities:
            found = {sla_days(t, s) for t in team_names}
            out[s] = found.pop() if len(found) == 1 else None
        return out

    return Digest(
        period_start=start,
        period_end=end,
        teams=[
            _build(res, t, by_team.get(t, {}), overall=False, severities=severities, slas=slas([t]))
            for t in names
        ],
        weekly=sorted(
            res.weekly,
            key=lambda p: (p.week_end, _team_order(p.team), severity_sort_key(p.severity)),
        ),
        overall=_build(res, None, overall, overall=True, severities=severities, slas=slas(names)),
    )
