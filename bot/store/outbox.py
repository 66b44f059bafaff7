"""The Slack outbox: messages owed to Slack, each with a key so it is posted at most once."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store._upsert import insert
from bot.store.models import SlackChannel, SlackMessage, UTCDateTime


class MessageStatus(StrEnum):
    PENDING = "pending"
    #: Handed to Slack; `UNSURE` when the process died meanwhile (looked up before resending).
    SENDING = "sending"
    UNSURE = "unsure"
    POSTED = "posted"
    FAILED = "failed"


PENDING, SENDING, UNSURE, POSTED, FAILED = MessageStatus


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    channel: str,
    text: str,
    blocks: list[dict[str, Any]],
    now: datetime,
    image_id: int | None = None,
    thread_ts: str | None = None,
) -> bool:
    """Owe Slack a message; False when one with this key is already owed or posted."""
    stmt = (
        insert(session, SlackMessage)
        .values(
            key=key,
            channel=channel,
            thread_ts=thread_ts,
            text=text,
            blocks=json.dumps(blocks, separators=(",", ":")),
            image_id=image_id,
            status=PENDING,
            attempts=0,
            available_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(SlackMessage.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def add_post(
    session: AsyncSession,
    *,
    key: str,
    channel: str,
    subject: str | None,
    context: str | None,
    now: datetime,
    available_at: datetime,
) -> SlackMessage | None:
    """A new top-level message (drawn later by its owner); None when the key exists already."""
    stmt = (
        insert(session, SlackMessage)
        .values(
            key=key,
            kind="post",
            channel=channel,
            subject=subject,
            context=context,
            text="",
            blocks="[]",
            status=PENDING,
            attempts=0,
            available_at=available_at,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(SlackMessage.id)
    )
    new_id = (await session.execute(stmt)).scalar_one_or_none()
    if new_id is None:
        return None
    return await session.get(SlackMessage, new_id)


#: A thread reply, as SQL written once: a worker owes one for nearly every push, and SQLAlchemy
#: compiles its dialect-specific INSERT … ON CONFLICT anew each time (no cache key), which costs
#: more than the insert. The same text serves SQLite and PostgreSQL.
_ADD_REPLY = text(
    'INSERT INTO slack_messages ("key", kind, parent_id, channel, text, blocks, context, status, '
    "attempts, available_at, created_at) VALUES (:key, 'reply', :parent_id, :channel, :text, "
    ":blocks, :context, 'pending', 0, :available_at, :created_at) "
    'ON CONFLICT ("key") DO NOTHING RETURNING id'
).bindparams(
    bindparam("available_at", type_=UTCDateTime()), bindparam("created_at", type_=UTCDateTime())
)


async def add_reply(
    session: AsyncSession,
    parent: SlackMessage,
    *,
    key: str,
    message: Any,
    now: datetime,
    available_at: datetime | None = None,
    context: str | None = None,
) -> bool:
    """A reply in the thread of `parent`, sent after it (same channel, later id)."""
    result = await session.execute(
        _ADD_REPLY,
        {
            "key": key,
            "parent_id": parent.id,
            "channel": parent.channel,
            "text": message.text,
            "blocks": json.dumps(message.blocks, separators=(",", ":")),
            "context": context,
            "available_at": available_at or now,
            "created_at": now,
        },
    )
    return result.scalar_one_or_none() is not None


async def add_update(
    session: AsyncSession,
    parent: SlackMessage,
    text: str,
    blocks: list[dict[str, Any]],
    now: datetime,
) -> None:
    """Owe Slack a chat.update of `parent`; a newer version replaces one not yet sent."""
    blob = json.dumps(blocks, separators=(",", ":"))
    stmt = insert(session, SlackMessage).values(
        key=f"update:{parent.id}",
        kind="update",
        parent_id=parent.id,
        channel=parent.channel,
        text=text,
        blocks=blob,
        status=PENDING,
        attempts=0,
        available_at=now,
        created_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "text": text,
            "blocks": blob,
            "status": PENDING,
            "available_at": now,
            "attempts": 0,
            "last_error": None,
            "sending_since": None,
        },
    )
    await session.execute(stmt)


async def post_by_key(session: AsyncSession, key: str) -> SlackMessage | None:
    """The top-level message stored under `key`, if any."""
    found = await session.execute(
        select(SlackMessage).where(SlackMessage.key == key, SlackMessage.kind == "post")
    )
    return found.scalar_one_or_none()


async def exists(session: AsyncSession, key: str) -> bool:
    row = await session.execute(select(SlackMessage.id).where(SlackMessage.key == key))
    return row.scalar_one_or_none() is not None


async def set_content(
    session: AsyncSession, msg_id: int, text: str, blocks: list[dict[str, Any]]
) -> None:
    await session.execute(
        update(SlackMessage)
        .where(SlackMessage.id == msg_id)
        .values(text=text, blocks=json.dumps(blocks, separators=(",", ":")))
        .execution_options(synchronize_session=False)
    )


async def add_file(
    session: AsyncSession,
    parent: SlackMessage,
    *,
    key: str,
    filename: str,
    title: str,
    data: bytes,
    now: datetime,
) -> None:
    """A file (a digest chart) to upload into the thread of `parent` once it is posted."""
    blob = json.dumps(
        {"filename": filename, "title": title, "data": base64.b64encode(data).decode("ascii")}
    )
    await session.execute(
        insert(session, SlackMessage)
        .values(
            key=key,
            kind="file",
            parent_id=parent.id,
            channel=parent.channel,
            text=title,
            blocks="[]",
            context=blob,
            status=PENDING,
            attempts=0,
            available_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )


def file_of(msg: SlackMessage) -> tuple[str, str, bytes]:
    doc = json.loads(msg.context or "{}")
    return str(doc["filename"]), str(doc["title"]), base64.b64decode(doc["data"])


async def due(
    session: AsyncSession, now: datetime, stale: timedelta, limit: int = 200
) -> list[SlackMessage]:
    """Undelivered messages in id order, in flight ones included: a message that is waiting,
    or being sent by another replica, holds the messages behind it in its channel."""
    rows = await session.execute(
        select(SlackMessage)
        .where(SlackMessage.status.in_((PENDING, UNSURE, SENDING)))
        .order_by(SlackMessage.id)
        .limit(limit)
    )
    return list(rows.scalars())


def in_flight(msg: SlackMessage, now: datetime, stale: timedelta) -> bool:
    """Being sent right now by some replica (not a send that died with its process)."""
    return msg.status == SENDING and (msg.sending_since is None or msg.sending_since >= now - stale)


_MESSAGES = cast(Table, SlackMessage.__table__)
# Delivery's statements for each message, built once (an ORM UPDATE built per call costs
# several times what it does in the database).
_TAKE = (
    update(_MESSAGES)
    .where(
        _MESSAGES.c.id == bindparam("msg_id"),
        _MESSAGES.c.status == bindparam("seen_status"),
        or_(
            _MESSAGES.c.sending_since.is_(None),
            _MESSAGES.c.sending_since == bindparam("seen_since", type_=UTCDateTime()),
        ),
    )
    .values(
        status=SENDING,
        sending_since=bindparam("now", type_=UTCDateTime()),
        attempts=_MESSAGES.c.attempts + 1,
    )
    .returning(_MESSAGES.c.text, _MESSAGES.c.blocks)
)
_POSTED = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("msg_id"), _MESSAGES.c.status == SENDING)
    .values(
        status=POSTED,
        channel_id=bindparam("new_channel_id"),
        ts=bindparam("new_ts"),
        posted_at=bindparam("now", type_=UTCDateTime()),
        last_error=None,
    )
)


async def take(session: AsyncSession, msg: SlackMessage, now: datetime) -> tuple[str, str] | None:
    """Mark the message `sending` for this process and return its text and blocks as they are
    now (a redraw may have changed them since `due()` read the row); None if another replica
    took it first."""
    result = await session.execute(
        _TAKE,
        {
            "msg_id": msg.id,
            "seen_status": msg.status,
            "seen_since": msg.sending_since,
            "now": now,
        },
    )
    row = result.one_or_none()
    return None if row is None else (row.text, row.blocks)


async def release(session: AsyncSession, msg_ids: list[int]) -> None:
    """Give back messages taken but never sent: pending again, the attempt not counted."""
    if not msg_ids:
        return
    await session.execute(
        update(SlackMessage)
        .where(SlackMessage.id.in_(msg_ids), SlackMessage.status == SENDING)
        .values(status=PENDING, sending_since=None, attempts=SlackMessage.attempts - 1)
        .execution_options(synchronize_session=False)
    )


async def posted(
    session: AsyncSession, msg_id: int, channel_id: str, ts: str, now: datetime
) -> None:
    # Guarded by `sending`: an update re-owed while it was in flight stays owed.
    await session.execute(
        _POSTED, {"msg_id": msg_id, "new_channel_id": channel_id, "new_ts": ts, "now": now}
    )


async def retry_later(
    session: AsyncSession, msg_id: int, error: str, at: datetime, *, unsure: bool = False
) -> None:
    """Try again at `at`; `unsure` when the message may be in Slack already."""
    await session.execute(
        update(SlackMessage)
        .where(SlackMessage.id == msg_id)
        .values(
            status=UNSURE if unsure else PENDING,
            available_at=at,
            sending_since=None,
            last_error=error[:2000],
        )
        .execution_options(synchronize_session=False)
    )


async def failed(session: AsyncSession, msg_id: int, error: str) -> None:
    await session.execute(
        update(SlackMessage)
        .where(SlackMessage.id == msg_id)
        .values(status=FAILED, sending_since=None, last_error=error[:2000])
        .execution_options(synchronize_session=False)
    )


async def mark_unsure(session: AsyncSession) -> int:
    """Single-instance start-up: a post in flight when the process died may be in Slack or not."""
    result = await session.execute(
        update(SlackMessage)
        .where(SlackMessage.status == SENDING)
        .values(status=UNSURE, sending_since=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def known_channel_id(session: AsyncSession, channel: str) -> str | None:
    """The id Slack gave for a channel we addressed by name in an earlier post."""
    row = await session.execute(
        select(SlackMessage.channel_id)
        .where(SlackMessage.channel == channel, SlackMessage.channel_id.is_not(None))
        .limit(1)
    )
    return row.scalar_one_or_none()


async def pending_count(session: AsyncSession) -> int:
    row = await session.execute(
        select(func.count()).where(SlackMessage.status.in_((PENDING, SENDING, UNSURE)))
    )
    return int(row.scalar_one())


async def last_post(session: AsyncSession, channel: str) -> datetime | None:
    """When any replica last posted (or updated a message) in this channel."""
    row = await session.execute(
        select(SlackChannel.last_post_at).where(SlackChannel.channel == channel)
    )
    return row.scalar_one_or_none()


async def paced(session: AsyncSession, channel: str, at: datetime) -> None:
    """Record a post to `channel` starting now; the next one waits `channel_interval` from it."""
    stmt = insert(session, SlackChannel).values(channel=channel, last_post_at=at)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["channel"], set_={"last_post_at": at})
    )
