"""Images and their findings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.model.findings import Finding
from bot.store._upsert import insert
from bot.store.db import Database
from bot.store.models import FindingRow, Image, ImagePackage

#: The setting that caps an image's inventory, `[checks] max_packages_per_image`: what a
#: `scan-limit` finding names when `Inventory.capped`.
PACKAGES_CAP = "max_packages_per_image"
#: Package rows written per transaction by `record_inventory`. On SQLite the transaction
#: holds the database's one write lock; a thousand rows hold it for milliseconds, so intake
#: and the other workers get their turn between batches however large the image.
PACKAGE_BATCH = 1_000


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


class PackageRow(Protocol):
    """What an inventory row is made of (`bot.vulns.match.Package`)."""

    @property
    def ecosystem(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def purl(self) -> str | None: ...
    @property
    def distro(self) -> str | None: ...


P = TypeVar("P", bound=PackageRow)


@dataclass(frozen=True)
class Inventory:
    """What `record_inventory` stored of an image's packages."""

    image_id: int
    #: Distinct packages stored (written now or already there): at most the cap.
    recorded: int
    #: Distinct packages the image lists.
    listed: int

    @property
    def capped(self) -> bool:
        """Packages past the cap were not recorded: the image needs a `scan-limit` finding."""
        return self.listed > self.recorded


def _row_key(p: PackageRow) -> tuple[str, str, str]:
    """The columns of the table's unique key, as truncated to fit them."""
    return p.ecosystem[:64], p.name[:255], p.version[:128]


def cap_packages(packages: Sequence[P], limit: int) -> tuple[list[P], int]:
    """The first `limit` distinct packages (as the table tells them apart), and how many
    distinct ones there are in all.

    Distinct first, so that `limit` rows are stored exactly and duplicates (one package read
    from two platforms' layers) do not use up the cap.
    """
    kept: list[P] = []
    seen: set[tuple[str, str, str]] = set()
    for p in packages:
        key = _row_key(p)
        if key in seen:
            continue
        seen.add(key)
        if len(kept) < limit:
            kept.append(p)
    return kept, len(seen)


async def reserve_image(
    session: AsyncSession,
    *,
    registry: str,
    repository: str,
    digest: str,
    media_type: str | None,
    now: datetime,
) -> int:
    """The image's row id, inserting it not yet checked (`checked_at` unset) if it is new.

    An unchecked row is invisible to what reads images as known (`latest_per_repository`,
    `cluster.known_image`, `Queries.latest_image`) until `record_push` commits, with the
    push's findings, and marks it checked. An existing row is left as it is.
    """
    stmt = (
        insert(session, Image)
        .values(
            registry_name=registry,
            repository=repository,
            digest=digest,
            media_type=media_type,
            first_seen_at=now,
            last_pushed_at=now,
            checked_at=None,
        )
        .on_conflict_do_nothing(index_elements=["registry_name", "repository", "digest"])
    )
    await session.execute(stmt)
    found = await session.execute(
        select(Image.id).where(
            Image.registry_name == registry,
            Image.repository == repository,
            Image.digest == digest,
        )
    )
    return int(found.scalar_one())


async def record_inventory(
    db: Database,
    *,
    registry: str,
    repository: str,
    digest: str,
    media_type: str | None,
    packages: Sequence[PackageRow],
    limit: int,
    now: datetime,
    batch: int = PACKAGE_BATCH,
) -> Inventory:
    """Store an image's packages, up to `limit` of them, `batch` rows per transaction.

    Before the push's own transaction, not in it: one transaction for a whole inventory held
    SQLite's write lock for minutes (250,000 packages: 3.5 minutes, the other workers failing
    on `database is locked`) and grew PostgreSQL's as far as the image wanted. Each batch is
    committed on its own; the rows are idempotent (the same image, package and version are
    stored once), so an event that fails or dies half-way writes the rest when it runs again,
    and readers see an image's packages only once `record_push` has marked the image checked.
    """
    kept, listed = cap_packages(packages, limit)
    async with db.transaction() as session:
        image_id = await reserve_image(
            session,
            registry=registry,
            repository=repository,
            digest=digest,
            media_type=media_type,
            now=now,
        )
    for start in range(0, len(kept), batch):
        async with db.transaction() as session:
            await _insert_packages(session, image_id, kept[start : start + batch])
    return Inventory(image_id=image_id, recorded=len(kept), listed=listed)


async def _insert_packages(
    session: AsyncSession, image_id: int, packages: Sequence[PackageRow]
) -> None:
    """One executemany of a statement compiled once, not a VALUES list compiled per call."""
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
    if rows:
        await session.execute(
            insert(session, ImagePackage).on_conflict_do_nothing(
                index_elements=["image_id", "ecosystem", "name", "version"]
            ),
            rows,
        )


async def packages_of(session: AsyncSession, image_id: int) -> list[ImagePackage]:
    rows = await session.execute(
        select(ImagePackage).where(ImagePackage.image_id == image_id).order_by(ImagePackage.id)
    )
    return list(rows.scalars())


async def latest_per_repository(session: AsyncSession) -> list[Image]:
    """The newest live, checked image of every repository: what advisories are matched
    against again (one whose push is still being processed is that push's to report)."""
    newest = (
        select(Image.registry_name, Image.repository, func.max(Image.last_pushed_at).label("at"))
        .where(Image.deleted_at.is_(None), Image.checked_at.is_not(None))
        .group_by(Image.registry_name, Image.repository)
        .subquery()
    )
    rows = await session.execute(
        select(Image)
        .join(
            newest,
            (Image.registry_name == newest.c.registry_name)
            & (Image.repository == newest.c.repository)
            & (Image.last_pushed_at == newest.c.at),
        )
        .where(Image.deleted_at.is_(None), Image.checked_at.is_not(None))
    )
    return list(rows.scalars())
