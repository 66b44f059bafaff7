"""Digest scheduling: local 09:00 across DST, a missed digest runs once, replicas post once,
the chart goes into the digest's thread, and the command line prints or posts it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import Database as DatabaseSettings
from bot.digest.jobs import DigestJobs, last_fire
from bot.slack.delivery import Delivery
from bot.slack.posters import WebApiPoster
from bot.store.db import Database
from bot.store.models import SlackMessage, TrackedFinding
from handlers.cli import main
from tests.conftest import BOT_TOKEN, make_settings, slack_section
from tests.support.slack_standin import SlackStandIn

BERLIN_CRON = "0 9 * * 1"


@dataclass
class Clock:
    t: datetime

    def now(self) -> datetime:
        return self.t


def test_local_nine_oclock_moves_in_utc_across_the_dst_change() -> None:
    before = last_fire(
        BERLIN_CRON, "Europe/Berlin", datetime(2026, 3, 23, 12, tzinfo=UTC), timedelta(days=8)
    )
    after = last_fire(
        BERLIN_CRON, "Europe/Berlin", datetime(2026, 3, 30, 12, tzinfo=UTC), timedelta(days=8)
    )
    assert before == datetime(2026, 3, 23, 8, tzinfo=UTC)  # CET, UTC+1
    assert after == datetime(2026, 3, 30, 7, tzinfo=UTC)  # CEST, UTC+2
    assert last_fire(
        BERLIN_CRON, "America/New_York", datetime(2026, 11, 2, 15, tzinfo=UTC), timedelta(days=8)
    ) == datetime(2026, 11, 2, 14, tzinfo=UTC)  # EST again


def test_last_fire_reads_day_of_week_as_cron_does() -> None:
    tuesday_noon = datetime(2026, 4, 7, 12, tzinfo=UTC)
    two_days = timedelta(days=2)
    # Mon, Wed, Fri: Tuesday is not a fire day (every weekday fired, before).
    assert last_fire("0 9 * * 1-5/2", "UTC", tuesday_noon, two_days) == datetime(
        2026, 4, 6, 9, tzinfo=UTC
    )
    # Sun, Tue, Thu, Sat (refused, before).
    assert last_fire("0 9 * * */2", "UTC", tuesday_noon, two_days) == datetime(
        2026, 4, 7, 9, tzinfo=UTC
    )
    # Exactly at the fire time it is owed; outside the horizon it is not.
    at_nine = datetime(2026, 4, 7, 9, tzinfo=UTC)
    assert last_fire("0 9 * * 2", "UTC", at_nine, timedelta(0)) == at_nine
    assert last_fire("0 9 * * 1", "UTC", tuesday_noon, timedelta(hours=24)) is None


async def _seed(db: Database, now: datetime) -> None:
    async with db.transaction() as s:
        for i, sev in enumerate(["critical", "high", "high"]):
            s.add(
                TrackedFinding(
                    registry_name="local",
                    repository=f"team-a/app{i}",
                    check_id=f"CVE-2026-{i}",
                    package="openssl 3.0.1",
                    severity=sev,
                    title="t",
                    detail="",
                    remediation="",
                    fixed_version="3.0.2",
                    team="team-a",
                    status="open",
                    first_seen_at=now - timedelta(days=40),
                    last_seen_at=now,
                    last_seen_digest="sha256:" + "a" * 64,
                    fixable_since=now - timedelta(days=40),
                )
            )


async def _keys(db: Database) -> list[str]:
    from sqlalchemy import select

    async with db.transaction() as s:
        rows = await s.execute(select(SlackMessage.key).where(SlackMessage.kind == "post"))
        return sorted(rows.scalars())


async def test_missed_digest_runs_once_after_downtime(db: Database) -> None:
    settings = make_settings(
        db.settings.url,
        teams=[{"name": "team-a", "channel": "#team-a", "timezone": "Europe/Berlin"}],
    )
    # Monday 1 Dec 2026, 09:00 Berlin was missed; the bot is back at 13:30 Berlin.
    clock = Clock(datetime(2026, 11, 30, 12, 30, tzinfo=UTC))
    await _seed(db, clock.t)
    jobs = DigestJobs(settings, db, clock)
    assert await jobs.run_due() == 1
    assert await jobs.run_due() == 0
    clock.t += timedelta(days=2)  # Wednesday: nothing new is due
    assert await jobs.run_due() == 0
    assert await _keys(db) == ["digest:team-a:2026-11-30T09:00:00+01:00"]


async def test_two_replicas_post_each_digest_once(database_url: str) -> None:
    settings = make_settings(
        database_url, teams=[{"name": "team-a", "channel": "#team-a", "timezone": "UTC"}]
    )
    one, two = (
        Database(DatabaseSettings(url=database_url)),
        Database(DatabaseSettings(url=database_url)),
    )
    clock = Clock(datetime(2026, 11, 30, 9, 5, tzinfo=UTC))
    await _seed(one, clock.t)
    results = await asyncio.gather(
        DigestJobs(settings, one, clock).run_due(), DigestJobs(settings, two, clock).run_due()
    )
    assert sorted(results) == [0, 1]
    assert await _keys(one) == ["digest:team-a:2026-11-30T09:00:00+00:00"]
    await one.dispose()
    await two.dispose()


async def test_digest_is_posted_with_its_chart_in_the_thread(
    sqlite_url: str, slack: SlackStandIn
) -> None:
    settings = make_settings(
        sqlite_url, slack=slack_section(slack), teams=[{"name": "team-a", "channel": "#team-a"}]
    )
    db = Database(settings.database)
    clock = Clock(datetime(2026, 11, 30, 9, 1, tzinfo=UTC))
    await _seed(db, clock.t)
    assert await DigestJobs(settings, db, clock).run_due() == 1
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.infra.metrics import Metrics

    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    delivery = Delivery(
        db, WebApiPoster(client, Metrics()), settings.slack, Metrics(), clock, asyncio.Event()
    )
    for _ in range(5):
        await delivery.run_once()
    [post] = slack.calls_to("chat.postMessage")
    assert post.args["channel"] == "#team-a"
    [upload] = slack.uploads
    assert upload["thread_ts"] == post.response["ts"]
    [data] = slack.files.values()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    await db.dispose()


async def test_digest_command_dry_run_prints_and_writes_the_chart(
    sqlite_url: str, tmp_path: Path, capsys: object
) -> None:
    db = Database(DatabaseSettings(url=sqlite_url))
    await _seed(db, datetime.now(UTC))
    await db.dispose()
    config = tmp_path / "c.toml"
    config.write_text(
        f'[database]\nurl = "{sqlite_url}"\n[[teams]]\nname = "team-a"\nchannel = "#team-a"\n'
    )
    chart = tmp_path / "chart.png"
    code = await asyncio.to_thread(
        main,
        ["digest", "--dry-run", "--team", "team-a", "--chart", str(chart), "--config", str(config)],
    )
    assert code == 0
    assert chart.read_bytes().startswith(b"\x89PNG")
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "team-a" in out and "critical" in out.lower()
