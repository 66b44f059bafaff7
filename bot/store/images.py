"""Images and their findings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.findings import Finding
from bot.models import FindingRow, Image, ImagePackage
from bot.store._upsert import insert


async def record_push(
    session: AsyncSession,
    *,
    registry: str,
    repository: str,
    digest: str,
    media_type: str | None,
    tag: str | None,
    actor: str | None,
    now: datetime,
) -> int:
    """Insert or refresh the image row; return its id."""
    stmt = insert(session, Image).values(
        registry_name=registry,
        repository=repository,
        digest=digest,
        media_type=media_type,
        last_tag=tag,
        pushed_by=actor,
        first_seen_at=now,
        last_pushed_at=now,
        checked_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["registry_name", "repository", "digest"],
        set_={
            "last_tag": stmt.excluded.last_tag,
            "pushed_by": stmt.excluded.pushed_by,
            "last_pushed_at": stmt.excluded.last_pushed_at,
            "checked_at": stmt.excluded.checked_at,
            "deleted_at": None,
        },
    ).returning(Image.id)
    return int((await session.execute(stmt)).scalar_one())


async def record_findings(
    session: AsyncSession, image_id: int, findings: Sequence[Finding], now: datetime
) -> None:
    if not findings:
        return
    rows = [
        {
            "image_id": image_id,
            "check_id": f.check_id,
            "package": f.package or "",
            "severity": f.severity.value,
            "title": f.title,
            "detail": f.detail,
            "remediation": f.remediation,
            "fixed_version": f.fixed_version,
            "status": "open",
            "first_seen_at": now,
        }
        for f in findings
    ]
    await session.execute(
        insert(session, FindingRow)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["image_id", "check_id", "package"])
    )


async def mark_deleted(
    session: AsyncSession, *, registry: str, repository: str, digest: str | None, now: datetime
) -> int:
    """A manifest delete marks that image; a tag delete names no digest and changes nothing."""
    if digest is None:
        return 0
    result = await session.execute(
        update(Image)
        .where(
            Image.registry_name == registry, Image.repository == repository, Image.digest == digest
        )
        .values(deleted_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def get(session: AsyncSession, registry: str, repository: str, digest: str) -> Image | None:
    return (
        await session.execute(
            select(Image).where(
                Image.registry_name == registry,
                Image.repository == repository,
                Image.digest == digest,
            )
        )
    ).scalar_one_or_none()


async def findings_of(session: AsyncSession, image_id: int) -> list[FindingRow]:
    rows = await session.execute(
        select(FindingRow).where(FindingRow.image_id == image_id).order_by(FindingRow.id)
    )
    return list(rows.scalars())


async def record_packages(session: AsyncSession, image_id: int, packages: Sequence[Any]) -> None:
    """The image's package inventory (ecosystem, name, version, purl, distro), stored once."""
    rows = [
        {
            "image_id": image_id,
            "ecosystem": p.ecosystem[:64],
            "name": p.name[:255],
            "version": p.version[:128],
            "purl": (p.purl or None) and p.purl[:512],
            "distro": p.distro,
        }
        for p in packages
    ]
    for start in range(0, len(rows), 500):
        await session.execute(
            insert(session, ImagePackage)
            .values(rows[start : start + 500])
            .on_conflict_do_nothing(index_elements=["image_id", "ecosystem", "name", "version"])
        )


async def packages_of(session: AsyncSession, image_id: int) -> list[ImagePackage]:
    rows = await session.execute(
        select(ImagePackage).where(ImagePackage.image_id == image_id).order_by(ImagePackage.id)
    )
    return list(rows.scalars())


async def latest_per_repository(session: AsyncSession) -> list[Image]:
    """The newest live image of every repository: what advisories are matched against again."""
    newest = (
        select(Image.registry_name, Image.repository, func.max(Image.last_pushed_at).label("at"))
        .where(Image.deleted_at.is_(None))
        .group_by(Image.registry_name, Image.repository)
        .subquery()
    )
    rows = await session.execute(
        select(Image).join(
            newest,
            (Image.registry_name == newest.c.registry_name)
            & (Image.repository == newest.c.repository)
            & (Image.last_pushed_at == newest.c.at),
        )
    )
    return list(rows.scalars())
