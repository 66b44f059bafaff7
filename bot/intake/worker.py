"""Inbox workers: claim events, do their network work, commit their effects and `done` together.

Exactly-once: an event's effects and its `done` mark are one transaction, guarded by the lease
token, so a crash before commit means the event runs again and a crash after means it never does.
"Runs again" is bounded: the attempt is counted when the event is claimed, so an event that
kills the process every time it is processed is parked after `max_attempts` of them (see
`inbox.claim_or_park`) instead of crash-looping the bot.

On SQLite a worker claims and commits several events at a time. SQLite has a single writer, so
each transaction costs a turn at the database's one write lock (and, when another connection
holds it, a sleep in SQLite's busy handler); a burst is worked through in batches, each batch's
effects and `done` marks in one transaction. PostgreSQL commits in parallel and keeps one event
per transaction: a transaction spanning several events could deadlock with another replica's,
taking the same subjects in another order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Worker as WorkerSettings
from bot.infra.clock import Clock
from bot.infra.loops import raise_if_cancelled
from bot.infra.metrics import Metrics
from bot.model.events import Event, load_event
from bot.store import inbox
from bot.store.db import Database

log = logging.getLogger(__name__)

Apply = Callable[[AsyncSession], Awaitable[None]]

#: Events a worker claims, and commits in one transaction, at a time on SQLite.
SQLITE_BATCH = 16
#: Events of one batch whose network work (registry fetches) runs at the same time.
BATCH_FETCHES = 4


class PermanentError(Exception):
    """Processing this event can never succeed; park it at once instead of retrying."""


class EventHandler(Protocol):
    async def __call__(self, source: str, event: Event) -> Apply:
        """Do the slow part (fetching) and return what to write.

        It runs again whenever the event is retried and its writes are not rolled back with
        the event's, so it writes only what is idempotent and invisible until the returned
        write commits: an image's package inventory, `images.record_inventory`, committed a
        batch at a time so that one large image does not hold the database.
        """
        ...


class Workers:
    def __init__(
        self,
        db: Database,
        handler: EventHandler,
        settings: WorkerSettings,
        metrics: Metrics,
        clock: Clock,
        wake: asyncio.Event,
        permanent: tuple[type[BaseException], ...] = (PermanentError,),
        on_commit: Callable[[], None] = lambda: None,
        batch: int | None = None,
    ) -> None:
        self._db = db
        self._handler = handler
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._wake = wake
        self._permanent = permanent
        self._on_commit = on_commit
        self._batch = batch if batch is not None else SQLITE_BATCH if db.dialect == "sqlite" else 1

    async def run(self) -> None:
        if self._settings.concurrency == 0:
            return
        async with asyncio.TaskGroup() as tg:
            for n in range(self._settings.concurrency):
                tg.create_task(self._loop(n))

    async def _loop(self, n: int) -> None:
        while True:
            raise_if_cancelled()
            try:
                worked = await self.run_once()
            except Exception:
                log.exception("worker %d: inbox unavailable", n)
                worked = False
                await asyncio.sleep(self._settings.poll_interval)
            if not worked:
                self._wake.clear()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
                # lands as the event is set, and shutdown then waits on this loop forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.poll_interval):
                        await self._wake.wait()

    async def run_once(self) -> bool:
        """Claim and process what is due, up to one batch; False when nothing was."""
        lease = timedelta(seconds=self._settings.lease_seconds)
        async with self._db.transaction() as session:
            claims = await inbox.claim_or_park(
                session,
                self._clock.now(),
                lease,
                limit=self._batch,
                max_attempts=self._settings.max_attempts,
            )
        for parked in claims.parked:
            self._metrics.events_failed.labels(parked.source).inc()
            log.error(
                "inbox event %d (%s from %s) parked as failed after %d attempts: %s",
                parked.id,
                parked.event_type,
                parked.source,
                parked.attempts,
                parked.error,
            )
        claimed = claims.claimed
        if not claimed:
            return bool(claims.parked)
        started = time.perf_counter()
        if len(claimed) == 1:
            await self._process(claimed[0], started)
        else:
            await self._process_batch(claimed, started)
        return True

    async def _prepare(self, claimed: inbox.Claimed) -> Apply:
        return await self._handler(claimed.source, load_event(claimed.payload))

    async def _process(self, claimed: inbox.Claimed, started: float) -> None:
        try:
            apply = await self._prepare(claimed)
        except Exception as exc:
            self._observe([claimed], started)
            await self._failed(claimed, exc)
            return
        await self._commit_one(claimed, apply, started)

    async def _commit_one(self, claimed: inbox.Claimed, apply: Apply, started: float) -> None:
        try:
            async with self._db.transaction() as session:
                await apply(session)
                await inbox.finish(session, claimed, self._clock.now())
        except inbox.LeaseLost:
            log.warning(
                "inbox event %d: lease lost to another worker; dropping our result", claimed.id
            )
            return
        except Exception as exc:
            await self._failed(claimed, exc)
            return
        finally:
            self._observe([claimed], started)
        self._processed([claimed])

    async def _process_batch(self, batch: Sequence[inbox.Claimed], started: float) -> None:
        fetches = asyncio.Semaphore(BATCH_FETCHES)

        async def prepare(claimed: inbox.Claimed) -> Apply:
            async with fetches:
                return await self._prepare(claimed)

        prepared = await asyncio.gather(*(prepare(c) for c in batch), return_exceptions=True)
        ready: list[tuple[inbox.Claimed, Apply]] = []
        for claimed, result in zip(batch, prepared, strict=True):
            if isinstance(result, Exception):
                self._observe([claimed], started)
                await self._failed(claimed, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                ready.append((claimed, result))
        if not ready:
            return
        try:
            async with self._db.transaction() as session:
                for _, apply in ready:  # in id order, as claimed
                    await apply(session)
                await inbox.finish_all(session, [c for c, _ in ready], self._clock.now())
        except Exception as exc:
            # One event failed or a lease ran out: the whole batch rolled back. Commit each on
            # its own now, so one event can neither fail nor hold back the others.
            log.info("inbox batch of %d rolled back (%s); one at a time", len(ready), exc)
            for claimed, apply in ready:
                await self._commit_one(claimed, apply, started)
            return
        done = [c for c, _ in ready]
        self._observe(done, started)
        self._processed(done)

    def _observe(self, claimed: Sequence[inbox.Claimed], started: float) -> None:
        elapsed = time.perf_counter() - started
        for c in claimed:
            self._metrics.processing_seconds.labels(c.source).observe(elapsed)

    def _processed(self, claimed: Sequence[inbox.Claimed]) -> None:
        for c in claimed:
            self._metrics.events_processed.labels(c.source).inc()
            log.info("processed inbox event %d (%s from %s)", c.id, c.event_type, c.source)
        self._on_commit()

    async def _failed(self, claimed: inbox.Claimed, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        now = self._clock.now()
        permanent = isinstance(exc, self._permanent)
        async with self._db.transaction() as session:
            if permanent or claimed.attempts >= self._settings.max_attempts:
                await inbox.park(session, claimed, error, now)
                self._metrics.events_failed.labels(claimed.source).inc()
                log.error(
                    "inbox event %d parked as failed after %d attempts: %s",
                    claimed.id,
                    claimed.attempts,
                    error,
                )
            else:
                delay = min(
                    self._settings.retry_backoff * 2 ** (claimed.attempts - 1),
                    self._settings.max_retry_backoff,
                )
                await inbox.retry_later(session, claimed, error, now + timedelta(seconds=delay))
                self._metrics.events_retried.labels(claimed.source).inc()
                log.warning(
                    "inbox event %d attempt %d failed, retrying in %.1fs: %s",
                    claimed.id,
                    claimed.attempts,
                    delay,
                    error,
                )
