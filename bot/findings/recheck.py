"""After new advisories arrive: match every known image's packages again, and tell the teams
about vulnerabilities "found after deployment"."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.findings.announce import Announcer, Push
from bot.findings.routing import route_repository
from bot.infra.clock import Clock, SystemClock
from bot.slack import render
from bot.store import images, tracking
from bot.store.db import Database
from bot.vulns.match import Package
from bot.vulns.service import Vulnerabilities


async def recheck_images(settings: Settings, db: Database, clock: Clock | None = None) -> int:
    """Announce new vulnerability findings of the newest image of each repository."""
    clock = clock or SystemClock()
    vulns, announcer, new = Vulnerabilities(db), Announcer(settings), 0
    async with db.transaction() as s:
        latest = await images.latest_per_repository(s)
    for image in latest:
        async with db.transaction() as s:
            rows = await images.packages_of(s, image.id)
        packages = [Package(r.ecosystem, r.name, r.version, r.purl, r.distro) for r in rows]
        findings = await vulns.findings(packages)
        if not findings:
            continue
        registry = settings.registry(image.registry_name)
        route = route_repository(settings.teams, image.repository, settings.slack.fallback_channel)
        team = settings.team(route.team)
        ctx = render.PushContext(
            registry=image.registry_name,
            registry_host=registry.host if registry else image.registry_name,
            repository=image.repository,
            digest=image.digest,
            tags=(image.last_tag,) if image.last_tag else (),
            team=route.team,
            headline=f"Found after deployment: {image.repository}",
        )
        push = Push(ctx, None, route.channel, team.critical_channel if team else None)
        async with db.transaction() as s:
            before = await _open_count(s, image.registry_name, image.repository)
            await images.record_findings(s, image.id, findings, clock.now())
            await announcer.record_push(s, push, findings, clock.now(), complete=False)
            new += await _open_count(s, image.registry_name, image.repository) - before
    return new


async def _open_count(session: AsyncSession, registry: str, repository: str) -> int:
    rows = await tracking.tracked_for(session, registry, repository)
    return sum(1 for r in rows if r.status == tracking.OPEN)
