"""Time `bot.digest.compute.compute()` over 1,000,000 tracked findings of 50 teams.

Goals: under 3 s on SQLite and under 2 s on PostgreSQL for the whole digest (every team). The
history is generated with a fixed seed: two years of findings, most of them fixable, most of
those fixed after a lag that depends on the severity, the rest still open. SQLite gets a
temporary file (executemany in batches); PostgreSQL is a throwaway cluster started here
(tests.support.services) unless `--postgres URL` names an empty database to use instead, and
is loaded with COPY. Both are ANALYZEd after loading, as a live database would be.

    .venv/bin/python bench/digest.py [--rows N] [--postgres URL | --no-postgres] [--with-index]

`--with-index` first adds the partial covering index suggested for a migration (INDEX_SQL).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import Database as DatabaseSettings  # noqa: E402
from bot.config import Digest as DigestSettings  # noqa: E402
from bot.digest.compute import Digest, compute  # noqa: E402
from bot.store.db import Database, migrate  # noqa: E402

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEAMS = 50
REPOS_PER_TEAM = 40
BATCH = 50_000
RUNS = 3
GOALS = {"sqlite": 3.0, "postgresql": 2.0}
SEVERITIES = (("critical", 0.05, 5), ("high", 0.20, 15), ("medium", 0.35, 40), ("low", 0.3, 80))
SEVERITIES += (("info", 0.10, 120),)  # (name, share, mean days to fix)
COLUMNS = (
    "registry_name",
    "repository",
    "check_id",
    "package",
    "severity",
    "title",
    "detail",
    "remediation",
    "fixed_version",
    "team",
    "status",
    "first_seen_at",
    "last_seen_at",
    "last_seen_digest",
    "fixed_at",
    "fixable_since",
)
SLA = DigestSettings().sla_days
#: Not in the migrations (yet): every digest query can read it instead of the table.
INDEX_SQL = (
    "CREATE INDEX ix_tracked_fixable ON tracked_findings "
    "(fixed_at, fixable_since, team, severity, registry_name, repository) "
    "WHERE fixable_since IS NOT NULL"
)


def sla_days(team: str | None, severity: str) -> int | None:
    if team is not None and team.endswith("7") and severity == "high":
        return 14  # a few teams with their own SLA
    return SLA.get(severity)


def generate(rows: int, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """Rows in COLUMNS order; datetimes as aware datetimes (None where unset)."""
    rnd = random.Random(seed)
    names = [s[0] for s in SEVERITIES]
    weights = [s[1] for s in SEVERITIES]
    mean_fix = {s[0]: s[2] for s in SEVERITIES}
    span = 730 * 86400
    digest = "sha256:" + "ab" * 32
    for i in range(rows):
        team = i % TEAMS
        repo = f"team-{team:02d}/svc-{rnd.randrange(REPOS_PER_TEAM):02d}"
        severity = rnd.choices(names, weights)[0]
        first = NOW - timedelta(seconds=rnd.random() * span)
        fixable: datetime | None = None
        fixed: datetime | None = None
        if rnd.random() < 0.7:
            fixable = min(first + timedelta(days=rnd.random() * 30), NOW)
            if rnd.random() < 0.9:
                lag = timedelta(days=rnd.expovariate(1 / mean_fix[severity]))
                fixed = fixable + lag if fixable + lag < NOW else None
        elif rnd.random() < 0.5:
            fixed = first + timedelta(days=rnd.random() * 60)
            fixed = fixed if fixed < NOW else None
        yield (
            "local",
            repo,
            f"CVE-2026-{i:07d}",
            "openssl",
            severity,
            "openssl: a vulnerability",
            "",
            "",
            "3.0.99" if fixable else None,
            f"team-{team:02d}",
            "fixed" if fixed else "open",
            first,
            fixed or NOW,
            digest,
            fixed,
            fixable,
        )


def decisions(count: int = 500, seed: int = 8) -> Iterator[tuple[Any, ...]]:
    rnd = random.Random(seed)
    for i in range(count):
        created = NOW - timedelta(days=rnd.random() * 14)
        team = f"team-{rnd.randrange(TEAMS):02d}"
        until = created + timedelta(days=30) if i % 3 else None
        yield (
            "approve" if i % 2 else "ignore",
            "repository",
            team,
            "local",
            f"{team}/svc-{rnd.randrange(REPOS_PER_TEAM):02d}",
            f"CVE-2026-{i:07d}",
            "openssl",
            until,
            until is None,
            "bench decision",
            "U0BENCH",
            created,
        )


SUP_COLUMNS = (
    "kind",
    "scope",
    "team",
    "registry_name",
    "repository",
    "check_id",
    "package",
    "until",
    "until_fixed",
    "reason",
    "decided_by",
    "created_at",
)


def _sqlite_value(v: Any) -> Any:
    # SQLAlchemy's SQLite storage for the UTCDateTime columns: naive UTC, microseconds.
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return v


def load_sqlite(path: Path, rows: int, index: bool) -> float:
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA journal_mode=MEMORY")
    conn.execute("PRAGMA cache_size=-2000000")  # 2 GB: the index b-trees stay in memory
    insert = (
        f"INSERT INTO tracked_findings ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(COLUMNS))})"
    )
    batch: list[tuple[Any, ...]] = []
    with conn:
        for row in generate(rows):
            batch.append(tuple(_sqlite_value(v) for v in row))
            if len(batch) == BATCH:
                conn.executemany(insert, batch)
                batch.clear()
        conn.executemany(insert, batch)
        conn.executemany(
            f"INSERT INTO suppressions ({', '.join(SUP_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(SUP_COLUMNS))})",
            [tuple(_sqlite_value(v) for v in r) for r in decisions()],
        )
    if index:
        conn.execute(INDEX_SQL)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")  # as the bot runs it
    conn.close()
    return time.perf_counter() - started


async def load_postgres(dsn: str, rows: int, index: bool) -> float:
    import asyncpg

    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT count(*) FROM tracked_findings"):
            raise SystemExit("--postgres: tracked_findings is not empty; give an empty database")
        records = generate(rows)
        while True:
            chunk = [r for _, r in zip(range(BATCH * 4), records, strict=False)]
            if not chunk:
                break
            await conn.copy_records_to_table("tracked_findings", records=chunk, columns=COLUMNS)
        await conn.copy_records_to_table(
            "suppressions", records=list(decisions()), columns=SUP_COLUMNS
        )
        if index:
            await conn.execute(INDEX_SQL)
        await conn.execute("VACUUM ANALYZE tracked_findings")
        await conn.execute("ANALYZE suppressions")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def time_compute(url: str) -> tuple[list[float], Digest, int]:
    db = Database(DatabaseSettings(url=url))
    took: list[float] = []
    try:
        async with db.transaction() as s:
            from sqlalchemy import func, select

            from bot.store.models import TrackedFinding

            count = (await s.execute(select(func.count()).select_from(TrackedFinding))).scalar()
        for _ in range(RUNS):
            async with db.transaction() as s:
                started = time.perf_counter()
                digest = await compute(s, now=NOW, days=7, teams=None, sla_days=sla_days)
                took.append(time.perf_counter() - started)
    finally:
        await db.dispose()
    return took, digest, int(count or 0)


def report(
    engine: str, rows: int, load: float, took: list[float], digest: Digest, index: bool
) -> bool:
    goal = GOALS[engine]
    best, first = min(took), took[0]
    ok = best < goal
    o = digest.overall.current
    print(
        f"{engine:<10} rows={rows:,}{' +index' if index else ''}  load={load:.1f}s  "
        f"compute: first={first:.2f}s "
        f"best of {len(took)}={best:.2f}s  goal <{goal:g}s  {'OK' if ok else 'MISSED'}"
    )
    print(
        f"{'':<10} teams={len(digest.teams)}  open fixable={o.open_fixable:,}  "
        f"breaches={o.breaches:,}  resolved in period={o.resolved:,}  "
        f"median={o.median_lag}  p90={o.p90_lag}  mttr={o.mttr}  "
        f"decisions={len(digest.overall.decisions)}"
    )
    return ok


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="URL", help="an empty, migrated-or-not database")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--with-index", action="store_true", help="add ix_tracked_fixable")
    args = parser.parse_args()

    ok = True
    with tempfile.TemporaryDirectory(prefix="crowsnest-bench-digest-") as tmp:
        path = Path(tmp) / "digest.db"
        url = f"sqlite+aiosqlite:///{path}"
        await asyncio.to_thread(migrate, url)
        load = await asyncio.to_thread(load_sqlite, path, args.rows, args.with_index)
        took, digest, count = await time_compute(url)
        ok &= report("sqlite", count, load, took, digest, args.with_index)

        if args.no_postgres:
            return 0 if ok else 1
        pg = None
        pg_url = args.postgres
        if pg_url is None:
            from tests.support.services import have_services, start_postgres

            missing = have_services(("initdb", "pg_ctl", "psql"))
            if missing:
                print(f"postgresql skipped: {missing} (or pass --postgres URL)")
                return 0 if ok else 1
            pg = start_postgres(Path(tmp) / "pgwork")
            pg_url = pg.url("crowsnest")
        try:
            await asyncio.to_thread(migrate, pg_url)
            dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://", 1)
            load = await load_postgres(dsn, args.rows, args.with_index)
            took, digest, count = await time_compute(pg_url)
            ok &= report("postgresql", count, load, took, digest, args.with_index)
        finally:
            if pg is not None:
                pg.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
