"""Repository-level findings, suppressions (Approve / Ignore), alerts and the audit log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import Alert, DecisionRow, SlackMessage, Suppression, TrackedFinding


class FindingStatus(StrEnum):
    OPEN = "open"
    FIXED = "fixed"


OPEN, FIXED = FindingStatus


async def tracked_for(
    session: AsyncSession, registry: str, repository: str, *, lock: bool = False
) -> list[TrackedFinding]:
    stmt = select(TrackedFinding).where(
        TrackedFinding.registry_name == registry, TrackedFinding.repository == repository
    )
    if lock:
        stmt = stmt.with_for_update()
    return list((await session.execute(stmt.order_by(TrackedFinding.id))).scalars())


async def _lock_row(session: AsyncSession, table: Any, row_id: int) -> None:
    """Take the row for this transaction before reading it, on both engines.

    A no-op UPDATE as the first statement locks the row on PostgreSQL and takes SQLite's write
    lock, so a concurrent decision on the same row waits and then reads what this one wrote
    (SELECT … FOR UPDATE alone does nothing on SQLite).
    """
    await session.execute(
        update(table)
        .where(table.id == row_id)
        .values(id=table.id)
        .execution_options(synchronize_session=False)
    )


async def lock_subject(session: AsyncSession, subject: str) -> None:
    """Serialise the transactions that read and rewrite one subject's messages.

    PostgreSQL: a transaction-scoped advisory lock on the subject. SQLite: rewrite one row
    (the migration marker) so this transaction holds the database's single write lock first.
    """
    if session.bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:s, 0))"), {"s": subject}
        )
    else:
        await session.execute(text("UPDATE alembic_version SET version_num = version_num"))


async def tracked(
    session: AsyncSession, finding_id: int, *, lock: bool = False
) -> TrackedFinding | None:
    if lock:
        await _lock_row(session, TrackedFinding, finding_id)
    stmt = select(TrackedFinding).where(TrackedFinding.id == finding_id)
    stmt = stmt.execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def on_message(session: AsyncSession, message_id: int) -> list[TrackedFinding]:
    rows = await session.execute(
        select(TrackedFinding)
        .where(TrackedFinding.message_id == message_id)
        .order_by(TrackedFinding.id)
    )
    return list(rows.scalars())


async def open_for_team(
    session: AsyncSession, team: str | None, limit: int = 50
) -> list[TrackedFinding]:
    stmt = select(TrackedFinding).where(TrackedFinding.status == OPEN)
    if team is not None:
        stmt = stmt.where(TrackedFinding.team == team)
    rows = await session.execute(stmt.order_by(TrackedFinding.first_seen_at).limit(limit))
    return list(rows.scalars())


def active(s: Suppression, now: datetime, finding: TrackedFinding | None = None) -> bool:
    """Whether a suppression still covers findings: not expired, not outlived by a fix."""
    if s.expired_at is not None:
        return False
    if s.until is not None and s.until <= now:
        return False
    return not (s.until_fixed and finding is not None and finding.fixed_version)


async def suppressions_for(
    session: AsyncSession, *, team: str | None, registry: str, repository: str
) -> list[Suppression]:
    """Every unexpired suppression that could cover findings of this repository."""
    same_team = Suppression.team.is_(None) if team is None else Suppression.team == team
    rows = await session.execute(
        select(Suppression).where(
            Suppression.expired_at.is_(None),
            or_(
                (Suppression.registry_name == registry) & (Suppression.repository == repository),
                (Suppression.scope == "vulnerability") & same_team,
            ),
        )
    )
    return list(rows.scalars())


def covers(s: Suppression, *, check_id: str, package: str, digest: str) -> bool:
    if s.check_id != check_id or (s.package is not None and s.package != package):
        return False
    return s.scope != "image" or s.digest == digest


async def suppressions_of(session: AsyncSession, finding_ids: Sequence[int]) -> list[Suppression]:
    if not finding_ids:
        return []
    rows = await session.execute(
        select(Suppression).where(Suppression.finding_id.in_(finding_ids)).order_by(Suppression.id)
    )
    return list(rows.scalars())


async def active_ignores(
    session: AsyncSession, now: datetime, team: str | None = None
) -> list[Suppression]:
    stmt = select(Suppression).where(
        Suppression.expired_at.is_(None),
        or_(Suppression.until.is_(None), Suppression.until > now),
    )
    if team is not None:
        stmt = stmt.where(Suppression.team == team)
    return list((await session.execute(stmt.order_by(Suppression.id))).scalars())


async def due_expiries(session: AsyncSession, now: datetime) -> list[Suppression]:
    rows = await session.execute(
        select(Suppression)
        .where(Suppression.expired_at.is_(None), Suppression.until <= now)
        .order_by(Suppression.id)
        .with_for_update(skip_locked=True)
    )
    return list(rows.scalars())


async def record_decision(
    session: AsyncSession,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    finding_id: int | None = None,
    reason: str | None = None,
    expires_at: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> DecisionRow:
    row = DecisionRow(
        at=at,
        actor=actor,
        action=action,
        finding_id=finding_id,
        subject=subject[:512],
        reason=reason,
        expires_at=expires_at,
        details=json.dumps(details, sort_keys=True) if details else None,
    )
    session.add(row)
    await session.flush()
    return row


async def decisions_of(session: AsyncSession, finding_ids: Sequence[int]) -> list[DecisionRow]:
    """The decisions taken on these findings, for their messages: refused attempts stay in the
    audit log only, so clicking a button one may not use never writes into the message."""
    if not finding_ids:
        return []
    rows = await session.execute(
        select(DecisionRow)
        .where(DecisionRow.finding_id.in_(finding_ids), DecisionRow.action != "refused")
        .order_by(DecisionRow.id)
    )
    return list(rows.scalars())


async def decisions(session: AsyncSession, finding_id: int | None = None) -> list[DecisionRow]:
    stmt = select(DecisionRow).order_by(DecisionRow.id)
    if finding_id is not None:
        stmt = stmt.where(DecisionRow.finding_id == finding_id)
    return list((await session.execute(stmt)).scalars())


async def alert_for_message(session: AsyncSession, message_id: int) -> Alert | None:
    row = await session.execute(select(Alert).where(Alert.message_id == message_id))
    return row.scalar_one_or_none()


async def alert(session: AsyncSession, alert_id: int, *, lock: bool = False) -> Alert | None:
    if lock:
        await _lock_row(session, Alert, alert_id)
    stmt = select(Alert).where(Alert.id == alert_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def due_alerts(session: AsyncSession, now: datetime) -> list[Alert]:
    rows = await session.execute(
        select(Alert)
        .where(Alert.acked_at.is_(None), Alert.next_escalation_at <= now)
        .order_by(Alert.id)
        .with_for_update(skip_locked=True)
    )
    return list(rows.scalars())


async def message(session: AsyncSession, message_id: int) -> SlackMessage | None:
    # populate_existing: content is rewritten with UPDATEs, so never trust the identity map.
    stmt = select(SlackMessage).where(SlackMessage.id == message_id)
    stmt = stmt.execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def message_by_ts(session: AsyncSession, channel_id: str, ts: str) -> SlackMessage | None:
    row = await session.execute(
        select(SlackMessage).where(SlackMessage.channel_id == channel_id, SlackMessage.ts == ts)
    )
    return row.scalar_one_or_none()


async def pending_post(session: AsyncSession, subject: str, since: datetime) -> SlackMessage | None:
    """A push message of this repository still waiting out its coalescing window."""
    row = await session.execute(
        select(SlackMessage)
        .where(
            SlackMessage.kind == "post",
            SlackMessage.subject == subject,
            SlackMessage.status == "pending",
            SlackMessage.created_at >= since,
        )
        .order_by(SlackMessage.id.desc())
        .limit(1)
    )
    return row.scalar_one_or_none()


async def recent_post(session: AsyncSession, subject: str, since: datetime) -> SlackMessage | None:
    """The newest message about `subject` created since then, posted or not."""
    row = await session.execute(
        select(SlackMessage)
        .where(
            SlackMessage.kind == "post",
            SlackMessage.subject == subject,
            SlackMessage.created_at >= since,
        )
        .order_by(SlackMessage.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    return row.scalar_one_or_none()


async def pending_reply(
    session: AsyncSession, parent_id: int, key_prefix: str, since: datetime
) -> SlackMessage | None:
    """A reply to `parent_id` not sent yet and still inside its coalescing window."""
    row = await session.execute(
        select(SlackMessage)
        .where(
            SlackMessage.kind == "reply",
            SlackMessage.parent_id == parent_id,
            SlackMessage.status == "pending",
            SlackMessage.key.startswith(key_prefix),
            SlackMessage.created_at >= since,
        )
        .order_by(SlackMessage.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    return row.scalar_one_or_none()


async def set_message_content(
    session: AsyncSession,
    message_id: int,
    *,
    text: str,
    blocks: list[dict[str, Any]],
    context: dict[str, Any] | None = None,
    only_if_pending: bool = False,
) -> bool:
    """Rewrite a message row; with `only_if_pending`, False if delivery already took it."""
    values: dict[str, Any] = {"text": text, "blocks": json.dumps(blocks, separators=(",", ":"))}
    if context is not None:
        values["context"] = json.dumps(context, sort_keys=True)
    stmt = update(SlackMessage).where(SlackMessage.id == message_id)
    if only_if_pending:
        stmt = stmt.where(SlackMessage.status == "pending")
    result = await session.execute(
        stmt.values(**values).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
