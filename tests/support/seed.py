"""Rows a processed push leaves behind, written directly for tests that need them up front."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import FindingRow, Image, TrackedFinding

DIGEST = "sha256:" + "ab" * 32


async def seed_push(
    session: AsyncSession,
    *,
    repository: str,
    team: str | None,
    findings: list[tuple[str, str]],
    at: datetime,
    registry: str = "local",
    digest: str = DIGEST,
) -> list[int]:
    """An image with `findings` [(check id, severity)], each also tracked; returns tracked ids.

    As in a real push, each tracked finding comes with an image-level finding row.
    """
    image = Image(
        registry_name=registry,
        repository=repository,
        digest=digest,
        last_tag="1.0",
        first_seen_at=at,
        last_pushed_at=at,
    )
    session.add(image)
    await session.flush()
    ids = []
    for check_id, severity in findings:
        session.add(
            FindingRow(
                image_id=image.id,
                check_id=check_id,
                package="",
                severity=severity,
                title=check_id,
                detail="",
                remediation="",
                status="open",
                first_seen_at=at,
            )
        )
        tracked = TrackedFinding(
            registry_name=registry,
            repository=repository,
            check_id=check_id,
            package="",
            severity=severity,
            title=check_id,
            team=team,
            status="open",
            first_seen_at=at,
            last_seen_at=at,
            last_seen_tag="1.0",
            last_seen_digest=digest,
        )
        session.add(tracked)
        await session.flush()
        ids.append(tracked.id)
    return ids
