"""Read-only answers for the slash command and the App Home tab."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bot.model.findings import Severity
from bot.store import tracking
from bot.store.db import Database
from bot.store.models import Image, Suppression, TrackedFinding


@dataclass(frozen=True)
class OpenFinding:
    id: int
    team: str | None
    repository: str
    check_id: str
    package: str
    severity: Severity
    title: str
    first_seen_at: datetime
    due_at: datetime | None
    assignee: str | None


def _open(row: TrackedFinding) -> OpenFinding:
    return OpenFinding(
        row.id,
        row.team,
        row.repository,
        row.check_id,
        row.package,
        Severity(row.severity),
        row.title,
        row.first_seen_at,
        row.due_at,
        row.assignee,
    )


class Queries:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def open_findings(
        self,
        *,
        team: str | None = None,
        teams: tuple[str, ...] | None = None,
        repository: str | None = None,
        limit: int = 50,
    ) -> list[OpenFinding]:
        stmt = select(TrackedFinding).where(TrackedFinding.status == tracking.OPEN)
        if team is not None:
            stmt = stmt.where(TrackedFinding.team == team)
        if teams is not None:
            stmt = stmt.where(TrackedFinding.team.in_(teams))
        if repository is not None:
            stmt = stmt.where(TrackedFinding.repository == repository)
        async with self._db.transaction() as s:
            rows = (
                await s.execute(stmt.order_by(TrackedFinding.first_seen_at).limit(500))
            ).scalars()
            found = [_open(r) for r in rows]
        found.sort(key=lambda f: (-f.severity.rank, f.first_seen_at))
        return found[:limit]

    async def suppressions(self, now: datetime, team: str | None = None) -> list[Suppression]:
        async with self._db.transaction() as s:
            return [
                x for x in await tracking.active_ignores(s, now, team) if tracking.active(x, now)
            ]

    async def latest_image(self, repository: str, tag: str | None) -> Image | None:
        stmt = select(Image).where(Image.repository == repository, Image.checked_at.is_not(None))
        if tag:
            stmt = stmt.where(Image.last_tag == tag)
        async with self._db.transaction() as s:
            return (
                await s.execute(stmt.order_by(Image.last_pushed_at.desc()).limit(1))
            ).scalar_one_or_none()
