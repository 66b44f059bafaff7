"""SQLite transactions take turns in the process: the intake first, nobody waiting on itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.config import Database as DatabaseSettings
from bot.db import Database, WriteTurns, migrate
from bot.store import inbox
from tests.test_storage import NOW, _events


async def test_an_urgent_turn_goes_before_those_already_waiting() -> None:
    turns, order = WriteTurns(), []
    await turns.acquire(urgent=False)

    async def take(name: str, urgent: bool) -> None:
        await turns.acquire(urgent)
        order.append(name)
        turns.release()

    waiting = [asyncio.create_task(take("worker", False))]
    await asyncio.sleep(0)
    waiting.append(asyncio.create_task(take("intake", True)))
    await asyncio.sleep(0)
    turns.release()
    await asyncio.gather(*waiting)
    assert order == ["intake", "worker"]


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    turns = WriteTurns()
    await turns.acquire(urgent=False)
    gone = asyncio.create_task(turns.acquire(urgent=True))
    after = asyncio.create_task(turns.acquire(urgent=False))
    await asyncio.sleep(0)
    turns.release()  # handed to `gone`, which is cancelled before it runs
    gone.cancel()
    await asyncio.wait_for(after, 1)  # the turn reached the next one instead of being lost


async def test_transactions_nested_or_in_started_tasks_never_wait_on_their_own_turn(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}"
    await asyncio.to_thread(migrate, url)
    db = Database(DatabaseSettings(url=url))
    try:
        async with db.transaction() as outer:
            await inbox.add(outer, _events("a"), NOW)
            async with db.transaction() as inner:  # the same task: straight through
                assert await inbox.counts(inner) == {}  # not committed yet
            child = asyncio.create_task(asyncio.wait_for(_count(db), 5))
            assert await child == {}
        assert await _count(db) == {"pending": 1}

        # Meanwhile others queue, and each gets its turn when the holder's transaction ends.
        async def add(key: str) -> None:
            async with db.transaction() as s:
                await inbox.add(s, _events(key), NOW)

        await asyncio.wait_for(asyncio.gather(*(add(f"k{i}") for i in range(20))), 10)
        assert await _count(db) == {"pending": 21}
    finally:
        await db.dispose()


async def _count(db: Database) -> dict[str, int]:
    async with db.transaction() as s:
        return await inbox.counts(s)
