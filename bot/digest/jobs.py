"""Scheduled patch-lag digests: per team at its local time, and one for managers.

Each team's digest fires on `digest.cron` in the team's own time zone (so 09:00 stays 09:00
across a DST change). A minute-by-minute check posts the latest fire time that has no digest
yet, within `digest.grace_hours`: a digest missed while the bot was down is posted once when it
comes back, older misses are coalesced into it. The outbox key names the team and the fire
time, so with several replicas on one database each digest is posted once, whoever computes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config import Settings
from bot.digest.chart import chart_png
from bot.digest.compute import Digest, compute
from bot.digest.cron import prev_fire
from bot.digest.render import digest_message
from bot.infra.clock import Clock
from bot.store import outbox
from bot.store.db import Database

log = logging.getLogger(__name__)

ORG = "*"  # the organisation-wide digest, for the managers' channel


@dataclass(frozen=True)
class Due:
    team: str  # a team name, or ORG
    fire_time: datetime
    channel: str
    timezone: str


def last_fire(cron: str, timezone: str, now: datetime, horizon: timedelta) -> datetime | None:
    """The latest time `cron` fired in `timezone` at or before `now`, within `horizon`."""
    fire = prev_fire(cron, timezone, now)
    return fire if fire is not None and fire >= now - horizon else None


class DigestJobs:
    def __init__(self, settings: Settings, db: Database, clock: Clock) -> None:
        self._settings = settings
        self._db = db
        self._clock = clock

    def due(self, now: datetime) -> list[Due]:
        d = self._settings.digest
        horizon = timedelta(hours=d.grace_hours)
        targets = [(t.name, t.channel, t.timezone) for t in self._settings.teams]
        if d.managers_channel:
            targets.append((ORG, d.managers_channel, d.managers_timezone))
        found = []
        for team, channel, tz in targets:
            fire = last_fire(d.cron, tz, now, horizon)
            if fire is not None:
                found.append(Due(team, fire, channel, tz))
        return found

    async def run_due(self) -> int:
        """Post every digest whose latest fire time has none yet; the count posted."""
        now = self._clock.now()
        posted = 0
        for due in self.due(now):
            key = f"digest:{due.team}:{due.fire_time.isoformat()}"
            async with self._db.transaction() as s:
                if await outbox.exists(s, key):
                    continue
            digest = await self.build(None if due.team == ORG else (due.team,), now)
            posted += await self.post(due, key, digest, now)
        return posted

    async def build(self, teams: Sequence[str] | None, now: datetime) -> Digest:
        async with self._db.transaction() as s:
            return await compute(
                s,
                now=now,
                days=self._settings.digest.days,
                teams=teams,
                sla_days=self._settings.sla_days,
            )

    async def post(self, due: Due, key: str, digest: Digest, now: datetime) -> int:
        team = None if due.team == ORG else due.team
        message = digest_message(digest, team)
        png = chart_png(digest, team)
        async with self._db.transaction() as s:
            parent = await outbox.add_post(
                s,
                key=key,
                channel=due.channel,
                subject=f"digest:{due.team}",
                context=None,
                now=now,
                available_at=now,
            )
            if parent is None:
                return 0  # another replica was first
            await outbox.set_content(s, parent.id, message.text, message.blocks)
            await outbox.add_file(
                s,
                parent,
                key=f"{key}:chart",
                filename=f"patch-lag-{due.team}.png",
                title="Open fixable findings and patch lag",
                data=png,
                now=now,
            )
        log.info("digest for %s (%s) owed to %s", due.team, due.fire_time, due.channel)
        return 1
