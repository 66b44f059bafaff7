"""Waiting in tests: one poll loop (`eventually`) and one "the bot has settled" (`settle`).

`settle` is for an in-process bot (a `Runtime` built by the test). A `crowsnest serve`
subprocess on SQLite is waited for by `tests.support.drain.drained`, which reads the file.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import func, select

from bot.store import outbox
from bot.store.db import Database
from bot.store.models import InboxEvent, SlackMessage

T = TypeVar("T")

#: Inbox events still to be handled, Slack messages still owed.
_BUSY_EVENTS = ("pending", "processing")
_OWED_MESSAGES = (outbox.PENDING, outbox.SENDING, outbox.UNSURE)


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    timeout: float = 5.0,
    what: str = "the condition",
    every: float = 0.02,
) -> T:
    """Call `check` (plain or async) every `every` s until it returns something truthy, and
    return that; AssertionError naming `what` once `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


async def settled(db: Database, now: datetime | None = None) -> bool:
    """No inbox event pending or processing, and no Slack message owed (with `now`: none owed
    that is available by `now`, so that messages held back for later do not count)."""
    async with db.transaction() as s:
        busy = await s.scalar(
            select(func.count()).select_from(InboxEvent).where(InboxEvent.status.in_(_BUSY_EVENTS))
        )
        owed = select(func.count()).select_from(SlackMessage)
        owed = owed.where(SlackMessage.status.in_(_OWED_MESSAGES))
        if now is not None:
            owed = owed.where(SlackMessage.available_at <= now)
        return not busy and not await s.scalar(owed)


async def settle(
    db: Database,
    *,
    now: Callable[[], datetime] | None = None,
    deliver: Callable[[], Awaitable[object]] | None = None,
    timeout: float = 6.0,
) -> None:
    """Wait until the bot has settled (`settled`): every event handled, every message that is
    due delivered. `now` is the bot's clock, for tests that move it. `deliver` (a delivery
    pass, `runtime.delivery.run_once`) is run by each poll that finds work owed, rather than
    waiting for the delivery loop's next poll; the outbox lets two senders run at once."""

    async def check() -> bool:
        if await settled(db, now() if now else None):
            return True
        if deliver is not None:
            await deliver()
        return False

    await eventually(check, timeout, "the bot to settle")


__all__ = ["eventually", "settle", "settled"]
