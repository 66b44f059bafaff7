"""Durable intake with group commit.

A request's events go on a queue; one writer inserts everything queued in one transaction and
then wakes each waiting request. A request answers 202 only after its batch committed, so the
promise holds across a crash, while hundreds of requests share one commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.clock import Clock
from bot.db import Database
from bot.events import ImageDeleted, ImagePushed, dump_event
from bot.metrics import Metrics
from bot.store import inbox

log = logging.getLogger(__name__)

MAX_BATCH = 500


class IntakeUnavailable(Exception):
    """The events could not be stored now; the sender should retry (HTTP 503)."""


@dataclass(frozen=True)
class Accepted:
    stored: int
    duplicates: int


@dataclass
class _Pending:
    events: list[inbox.NewEvent]
    done: asyncio.Future[set[tuple[str, str]]]


class Intake:
    def __init__(self, db: Database, metrics: Metrics, clock: Clock, timeout: float) -> None:
        self._db = db
        self._metrics = metrics
        self._clock = clock
        self._timeout = timeout
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        #: Set after each commit so idle workers start at once instead of at their next poll.
        self.new_work = asyncio.Event()

    async def accept(self, source: str, events: Sequence[ImagePushed | ImageDeleted]) -> Accepted:
        """Store events durably (dedup by source and delivery id); raise IntakeUnavailable."""
        rows = [inbox.NewEvent(source, e.delivery_id, e.type, dump_event(e)) for e in events]
        if not rows:
            return Accepted(0, 0)
        pending = _Pending(rows, asyncio.get_running_loop().create_future())
        await self._queue.put(pending)
        try:
            inserted = await asyncio.wait_for(asyncio.shield(pending.done), self._timeout)
        except TimeoutError:
            raise IntakeUnavailable("timed out waiting for the database") from None
        stored = sum(1 for r in rows if (r.source, r.dedup_key) in inserted)
        self._metrics.events_received.labels(source).inc(stored)
        self._metrics.events_duplicate.labels(source).inc(len(rows) - stored)
        return Accepted(stored, len(rows) - stored)

    async def run(self) -> None:
        """The single writer: batch whatever is queued, commit, answer everyone in the batch."""
        while True:
            batch = [await self._queue.get()]
            rows = len(batch[0].events)
            while rows < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                rows += len(batch[-1].events)
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.done.cancelled()]
        try:
            # Duplicates inside one batch (a fast redelivery) must not abort the others.
            unique = list({(e.source, e.dedup_key): e for p in live for e in p.events}.values())
            async with self._db.transaction() as session:
                inserted = await inbox.add(session, unique, self._clock.now())
        except Exception as exc:
            log.warning("intake: could not store %d events: %s", len(batch), exc)
            for p in live:
                if not p.done.done():
                    p.done.set_exception(IntakeUnavailable(str(exc)))
                    p.done.exception()  # the request may have timed out; don't warn about it
            return
        for p in live:
            if not p.done.done():
                p.done.set_result(inserted)
        self.new_work.set()

    async def drain(self) -> None:
        """At shutdown: answer whatever is still queued (commit it) before the writer stops."""
        while not self._queue.empty():
            batch: list[_Pending] = []
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            with contextlib.suppress(Exception):
                await self._commit(batch)
