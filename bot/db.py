"""The database: one engine and one session factory, owned by the runtime."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.config import Database as DatabaseSettings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run beside the one writer; busy_timeout waits instead of failing."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


#: Whether this task (or the task that created it) holds the process's turn at SQLite's lock.
_IN_TURN: ContextVar[bool] = ContextVar("in_sqlite_turn", default=False)


class WriteTurns:
    """SQLite's single write lock, queued for in this process rather than in SQLite.

    A connection that finds the database locked sleeps in SQLite's busy handler, in steps of
    up to 100 ms, however soon the lock comes free; with workers, delivery and intake all
    writing, the intake's commits (and the 202s waiting on them) spent most of their time
    there. Here transactions take turns on the event loop, handed over the moment the last
    one ends, and the intake's go first. SQLite means one process, so this is every writer.
    A transaction opened inside one that holds the turn (the same task, or a task it started)
    goes straight through, as before: nesting must never wait on itself.
    """

    def __init__(self) -> None:
        self._held = False
        self._queues: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    async def acquire(self, urgent: bool) -> None:
        if not self._held:
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues[0 if urgent else 1].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed the turn just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        for queue in self._queues:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._held = False


class Database:
    """Engine plus session factory; `transaction()` is one unit of work."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        kwargs: dict[str, Any] = {}
        if not settings.is_sqlite:
            # A PostgreSQL restart must not leave dead pooled connections behind.
            kwargs |= {"pool_size": settings.pool_size, "max_overflow": 5, "pool_pre_ping": True}
        self.engine: AsyncEngine = create_async_engine(settings.url, **kwargs)
        if settings.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._turns = WriteTurns() if settings.is_sqlite else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """A session inside a transaction: committed on success, rolled back on error."""
        async with self.turn(urgent=urgent), self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def turn(self, *, urgent: bool = False) -> AsyncIterator[None]:
        """This process's turn at the database (SQLite; PostgreSQL needs none): see WriteTurns.

        `urgent` goes ahead of the others: for the intake, which senders wait on."""
        if self._turns is None or _IN_TURN.get():
            yield
            return
        await self._turns.acquire(urgent)
        token = _IN_TURN.set(True)
        try:
            yield
        finally:
            _IN_TURN.reset(token)
            self._turns.release()

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            row = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return row.scalar_one_or_none()

    async def dispose(self) -> None:
        await self.engine.dispose()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def migrate(url: str) -> None:
    """`alembic upgrade head`. Blocking, and env.py runs its own loop: call it off the loop."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def migrate_async(url: str) -> None:
    await asyncio.to_thread(migrate, url)
