"""The database: one engine and one session factory, owned by the runtime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, busy_timeout_ms: int = 10_000) -> None:
    """WAL lets readers run beside the one writer; busy_timeout waits instead of failing."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_pragmas_no_wait(dbapi_conn: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_conn, record, busy_timeout_ms=0)


class Database:
    """Engine plus session factory; `transaction()` is one unit of work."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        kwargs: dict[str, Any] = {}
        if not settings.is_sqlite:
            # A PostgreSQL restart must not leave dead pooled connections behind.
            kwargs |= {"pool_size": settings.pool_size, "max_overflow": 5, "pool_pre_ping": True}
        self.engine: AsyncEngine = create_async_engine(settings.url, **kwargs)
        #: The intake's writes: on SQLite a connection that is told at once when another
        #: holds the write lock, rather than sleeping in SQLite's busy handler in steps of up
        #: to 100 ms however soon the lock frees (`inbox.add_committed` retries every 2 ms).
        #: Webhook senders wait on these writes; workers and delivery can wait longer.
        self.intake_engine = self.engine
        if settings.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self.intake_engine = create_async_engine(settings.url, pool_size=1, max_overflow=1)
            event.listen(self.intake_engine.sync_engine, "connect", _sqlite_pragmas_no_wait)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside a transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            row = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return row.scalar_one_or_none()

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.intake_engine is not self.engine:
            await self.intake_engine.dispose()


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
