"""Inbox queries: insert with dedup, claim with a lease, finish, retry or park."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.store.models import InboxEvent, UTCDateTime


class InboxStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    #: Parked: retrying cannot help, or `max_attempts` are spent (see `crowsnest events`).
    FAILED = "failed"


PENDING, PROCESSING, DONE, FAILED = InboxStatus


@dataclass(frozen=True)
class NewEvent:
    source: str
    dedup_key: str
    event_type: str
    payload: str
    #: Not to be claimed before this (a retry scheduled by the pipeline); None: at once.
    available_at: datetime | None = None


@dataclass(frozen=True)
class Claimed:
    id: int
    source: str
    event_type: str
    payload: str
    attempts: int
    lease_token: str


class LeaseLost(Exception):
    """Another worker took the event over (our lease ran out); our work must be rolled back."""


_INSERT_COLUMNS = (
    "source", "dedup_key", "event_type", "payload", "received_at", "available_at", "status",
    "attempts",
)  # fmt: skip


@lru_cache(maxsize=128)
def _insert_sql(dialect: str, rows: int) -> str:
    """INSERT … ON CONFLICT DO NOTHING RETURNING for `rows` rows, rendered once per size.

    This is the intake's hot path. SQLAlchemy cannot cache its dialect-specific ON CONFLICT
    inserts (their cache key is off in 2.0), so it would compile one per batch; the SQL is the
    same on both engines but for the placeholder style.
    """
    width = len(_INSERT_COLUMNS)
    if dialect == "sqlite":
        groups = ["(" + ",".join("?" * width) + ")"] * rows
    else:
        groups = [
            "(" + ",".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(rows)
        ]
    return (
        f"INSERT INTO inbox_events ({', '.join(_INSERT_COLUMNS)}) VALUES {', '.join(groups)} "  # noqa: S608 (constants only)
        "ON CONFLICT (source, dedup_key) DO NOTHING RETURNING source, dedup_key"
    )


def _insert_params(dialect: Dialect, events: Sequence[NewEvent], now: datetime) -> tuple[Any, ...]:
    def bind(at: datetime) -> Any:
        stamp: Any = UTCDateTime().process_bind_param(at, dialect)
        if dialect.name == "sqlite":
            stamp = stamp.isoformat(sep=" ", timespec="microseconds")  # SQLAlchemy's own format
        return stamp

    received = bind(now)
    params: list[Any] = []
    for e in events:
        available = received if e.available_at is None else bind(e.available_at)
        params += (e.source, e.dedup_key, e.event_type, e.payload, received, available, PENDING, 0)
    return tuple(params)


async def add(
    session: AsyncSession, events: Sequence[NewEvent], now: datetime
) -> set[tuple[str, str]]:
    """Insert events, skipping those already stored; return the (source, key) pairs inserted."""
    if not events:
        return set()
    dialect = session.bind.dialect
    conn = await session.connection()
    sql = _insert_sql(dialect.name, len(events))
    result = await conn.exec_driver_sql(sql, _insert_params(dialect, events, now))
    return {(s, k) for s, k in result.all()}


async def add_committed(
    engine: AsyncEngine, events: Sequence[NewEvent], now: datetime, patience: float = 10.0
) -> set[tuple[str, str]]:
    """`add` in a transaction of its own, committed when this returns: the intake's write.

    Every webhook request waits on this, so it runs on the driver's own connection: one
    statement and a commit (SQLite) or one statement that commits itself (PostgreSQL),
    instead of a session's begin, execute, fetch, commit and result machinery, each a hop to
    aiosqlite's thread. bench/intake.py measured it: about a fifth more events a second.
    On SQLite, while another connection holds the write lock it tries again every
    LOCKED_RETRY seconds, for up to `patience` (see `Database.intake_engine`).
    """
    if not events:
        return set()
    sql = _insert_sql(engine.dialect.name, len(events))
    params = _insert_params(engine.dialect, events, now)
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        if engine.dialect.name == "sqlite":
            rows = await _sqlite_insert(driver, sql, params, patience)
        else:
            rows = await driver.fetch(sql, *params)
    return {(s, k) for s, k in rows}


LOCKED_RETRY = 0.002


async def _sqlite_insert(driver: Any, sql: str, params: Any, patience: float) -> Any:
    give_up = time.monotonic() + patience
    while True:
        try:
            rows = await driver.execute_fetchall(sql, params)
            await driver.commit()
            return rows
        except BaseException as exc:
            await driver.rollback()
            code = getattr(exc, "sqlite_errorcode", None)  # extended: the low byte is the code
            busy = code is not None and code & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= give_up:
                raise
        await asyncio.sleep(LOCKED_RETRY)


#: Why an event whose attempts are spent was parked when it came due again: its last attempt
#: never finished. A restart found it claimed (the process died: killed, crashed or out of
#: memory, perhaps because of this very event), or another replica found its lease run out.
PROCESS_DIED = "the process died while processing it (killed, crashed or out of memory)"
LEASE_RAN_OUT = "its worker died or stalled while processing it (the lease ran out)"
#: Events parked at a time by one claim, should many be spent at once (max_attempts lowered).
PARK_AT_ONCE = 100


@dataclass(frozen=True)
class Parked:
    """An event parked by a claim because it had used all its attempts."""

    id: int
    source: str
    event_type: str
    attempts: int
    error: str


@dataclass(frozen=True)
class Claims:
    claimed: list[Claimed]
    parked: list[Parked]


def _due(now: datetime) -> ColumnElement[bool]:
    """Pending and due, or claimed by a worker whose lease ran out."""
    return or_(
        (InboxEvent.status == PENDING) & (InboxEvent.available_at <= now),
        (InboxEvent.status == PROCESSING) & (InboxEvent.lease_until < now),
    )


async def claim(
    session: AsyncSession, now: datetime, lease: timedelta, limit: int = 1, *, max_attempts: int
) -> list[Claimed]:
    """`claim_or_park`'s claimed events: what the worker is to process now."""
    return (await claim_or_park(session, now, lease, limit, max_attempts=max_attempts)).claimed


async def claim_or_park(
    session: AsyncSession, now: datetime, lease: timedelta, limit: int = 1, *, max_attempts: int
) -> Claims:
    """Take up to `limit` due events (or ones whose lease ran out), oldest first, counting the
    attempt now; park the due events that have already used `max_attempts`.

    The attempt is counted in the claim's own transaction, before any work, because an event
    can kill the process working on it (a decompression bomb, an out-of-memory kill): counted
    only when the work failed, such an event would be claimed again after every restart and
    crash-loop the bot. Counted here, it is parked after `max_attempts` deaths; a failure
    that the worker sees does not count again (`retry_later` and `park` keep `attempts`).

    An event that has been tried before is claimed alone, never in a batch: if it is what
    kills the process, the events batched with it would spend their attempts too, and be
    parked with it. A batch is the fresh events before the oldest retried one.
    """
    parked = await _park_spent(session, now, max_attempts)
    token = secrets.token_hex(8)
    due = (
        select(InboxEvent.id, InboxEvent.attempts)
        .where(_due(now), InboxEvent.attempts < max_attempts)
        .order_by(InboxEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    oldest = select(func.min(due.c.id)).scalar_subquery()
    oldest_retried = select(func.min(due.c.id)).where(due.c.attempts > 0).scalar_subquery()
    take = select(due.c.id).where(
        or_(
            due.c.id == oldest,
            (due.c.attempts == 0) & or_(oldest_retried.is_(None), due.c.id < oldest_retried),
        )
    )
    stmt = (
        update(InboxEvent)
        .where(InboxEvent.id.in_(take))
        .values(
            status=PROCESSING,
            lease_token=token,
            lease_until=now + lease,
            attempts=InboxEvent.attempts + 1,
        )
        .returning(
            InboxEvent.id,
            InboxEvent.source,
            InboxEvent.event_type,
            InboxEvent.payload,
            InboxEvent.attempts,
        )
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(stmt)).all()
    claimed = sorted(
        (Claimed(r.id, r.source, r.event_type, r.payload, r.attempts, token) for r in rows),
        key=lambda c: c.id,
    )
    return Claims(claimed, parked)


async def _park_spent(session: AsyncSession, now: datetime, max_attempts: int) -> list[Parked]:
    """Park due events whose attempts are spent: their last attempt never came back.

    A claimed one's lease ran out; a pending one was released by a restart, which left
    PROCESS_DIED as its error (or failed normally before `max_attempts` was lowered, and keeps
    that error).
    """
    spent = (
        select(InboxEvent.id)
        .where(_due(now), InboxEvent.attempts >= max_attempts)
        .order_by(InboxEvent.id)
        .limit(PARK_AT_ONCE)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    error = case(
        (InboxEvent.status == PROCESSING, LEASE_RAN_OUT),
        else_=func.coalesce(InboxEvent.last_error, PROCESS_DIED),
    )
    stmt = (
        update(InboxEvent)
        .where(InboxEvent.id.in_(spent))
        .values(
            status=FAILED, processed_at=now, lease_token=None, lease_until=None, last_error=error
        )
        .returning(
            InboxEvent.id,
            InboxEvent.source,
            InboxEvent.event_type,
            InboxEvent.attempts,
            InboxEvent.last_error,
        )
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(stmt)).all()
    return sorted(
        (Parked(r.id, r.source, r.event_type, r.attempts, r.last_error or "") for r in rows),
        key=lambda p: p.id,
    )


async def finish(session: AsyncSession, claimed: Claimed, now: datetime) -> None:
    """Mark done, in the same transaction as the event's effects; fails if the lease was lost."""
    await finish_all(session, [claimed], now)


async def finish_all(session: AsyncSession, claimed: Sequence[Claimed], now: datetime) -> None:
    """`finish` for events claimed together (one claim, one lease token): all, or LeaseLost."""
    result = await session.execute(
        update(InboxEvent)
        .where(
            InboxEvent.id.in_([c.id for c in claimed]),
            InboxEvent.lease_token == claimed[0].lease_token,
        )
        .values(status=DONE, processed_at=now, lease_token=None, lease_until=None, last_error=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != len(claimed):  # type: ignore[attr-defined]
        raise LeaseLost(f"inbox events {[c.id for c in claimed]}")


async def retry_later(
    session: AsyncSession, claimed: Claimed, error: str, available_at: datetime
) -> None:
    await session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == claimed.id, InboxEvent.lease_token == claimed.lease_token)
        .values(
            status=PENDING,
            available_at=available_at,
            lease_token=None,
            lease_until=None,
            last_error=error[:4000],
        )
        .execution_options(synchronize_session=False)
    )


async def park(session: AsyncSession, claimed: Claimed, error: str, now: datetime) -> None:
    await session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == claimed.id, InboxEvent.lease_token == claimed.lease_token)
        .values(
            status=FAILED,
            processed_at=now,
            lease_token=None,
            lease_until=None,
            last_error=error[:4000],
        )
        .execution_options(synchronize_session=False)
    )


async def release_all_leases(session: AsyncSession) -> int:
    """Single-instance start-up: whatever a dead process had claimed is due again now.

    Its error says why the attempt it spent came to nothing, for `crowsnest events --failed`
    should that attempt have been its last (see `claim_or_park`).
    """
    result = await session.execute(
        update(InboxEvent)
        .where(InboxEvent.status == PROCESSING)
        .values(status=PENDING, lease_token=None, lease_until=None, last_error=PROCESS_DIED)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
    )
    return {status: n for status, n in rows.all()}


async def failed(session: AsyncSession, limit: int = 100) -> list[InboxEvent]:
    rows = await session.execute(
        select(InboxEvent)
        .where(InboxEvent.status == FAILED)
        .order_by(InboxEvent.id.desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def requeue_failed(session: AsyncSession, now: datetime, ids: Sequence[int] = ()) -> int:
    """Give parked events another round (operators do this after fixing the cause)."""
    stmt = update(InboxEvent).where(InboxEvent.status == FAILED)
    if ids:
        stmt = stmt.where(InboxEvent.id.in_(ids))
    result = await session.execute(
        stmt.values(status=PENDING, attempts=0, available_at=now).execution_options(
            synchronize_session=False
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
