"""The cluster inventory: which image runs in which container of which workload, since when."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store._upsert import insert
from bot.store.models import Image, RunningContainer


async def observe(
    session: AsyncSession,
    *,
    cluster: str,
    namespace: str,
    kind: str,
    name: str,
    uid: str,
    containers: Sequence[tuple[str, str | None, str | None, str | None, str | None]],
    now: datetime,
) -> None:
    """Record (container, image, registry, repository, digest) as running now."""
    for container, image, registry, repository, digest in containers:
        stmt = insert(session, RunningContainer).values(
            cluster=cluster,
            namespace=namespace,
            kind=kind,
            name=name,
            uid=uid,
            container=container,
            image=image,
            registry_name=registry,
            repository=repository,
            digest=digest,
            first_seen_at=now,
            last_seen_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["cluster", "uid", "container"],
            set_={
                "image": stmt.excluded.image,
                "registry_name": stmt.excluded.registry_name,
                "repository": stmt.excluded.repository,
                "digest": stmt.excluded.digest,
                "last_seen_at": now,
                "stopped_at": None,
            },
        )
        await session.execute(stmt)


async def stopped(session: AsyncSession, cluster: str, uid: str, now: datetime) -> None:
    await session.execute(
        update(RunningContainer)
        .where(
            RunningContainer.cluster == cluster,
            RunningContainer.uid == uid,
            RunningContainer.stopped_at.is_(None),
        )
        .values(stopped_at=now)
        .execution_options(synchronize_session=False)
    )


async def running(session: AsyncSession, cluster: str | None = None) -> list[RunningContainer]:
    stmt = select(RunningContainer).where(RunningContainer.stopped_at.is_(None))
    if cluster is not None:
        stmt = stmt.where(RunningContainer.cluster == cluster)
    return list((await session.execute(stmt.order_by(RunningContainer.id))).scalars())


async def known_image(session: AsyncSession, registry: str, repository: str, digest: str) -> bool:
    row = await session.execute(
        select(Image.id)
        .where(
            Image.registry_name == registry,
            Image.repository == repository,
            Image.digest == digest,
            Image.checked_at.is_not(None),  # not one whose push is still being processed
        )
        .limit(1)
    )
    return row.scalar_one_or_none() is not None
