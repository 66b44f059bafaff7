"""Inbox workers: claim an event, do its network work, then commit its effects and `done` together.

Exactly-once: an event's effects and its `done` mark are one transaction, guarded by the lease
token, so a crash before commit means the event runs again and a crash after means it never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock
from bot.config import Worker as WorkerSettings
from bot.db import Database
from bot.events import Event, load_event
from bot.metrics import Metrics
from bot.store import inbox

log = logging.getLogger(__name__)

Apply = Callable[[AsyncSession], Awaitable[None]]


class PermanentError(Exception):
    """Processing this event can never succeed; park it at once instead of retrying."""


class EventHandler(Protocol):
    async def __call__(self, source: str, event: Event) -> Apply:
        """Do the slow part (fetching) and return what to write; must not write itself."""
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
    ) -> None:
        self._db = db
        self._handler = handler
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._wake = wake
        self._permanent = permanent
        self._on_commit = on_commit

    async def run(self) -> None:
        if self._settings.concurrency == 0:
            return
        async with asyncio.TaskGroup() as tg:
            for n in range(self._settings.concurrency):
                tg.create_task(self._loop(n))

    async def _loop(self, n: int) -> None:
        while True:
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
        """Claim and process one event; False when none was due."""
        lease = timedelta(seconds=self._settings.lease_seconds)
        async with self._db.transaction() as session:
            claimed = await inbox.claim(session, self._clock.now(), lease, limit=1)
        if not claimed:
            return False
        await self._process(claimed[0])
        return True

    async def _process(self, claimed: inbox.Claimed) -> None:
        started = time.perf_counter()
        source = claimed.source
        try:
            event = load_event(claimed.payload)
            apply = await self._handler(source, event)
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
            self._metrics.processing_seconds.labels(source).observe(time.perf_counter() - started)
        self._metrics.events_processed.labels(source).inc()
        self._on_commit()
        log.info("processed inbox event %d (%s from %s)", claimed.id, claimed.event_type, source)

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
