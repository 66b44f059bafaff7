"""Durable intake with group commit.

A request's events go on a queue; one writer inserts everything queued in one transaction and
then wakes each waiting request. A request answers 202 only after its batch committed, so the
promise holds across a crash, while hundreds of requests share one commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.infra.clock import Clock
from bot.infra.loops import raise_if_cancelled
from bot.infra.metrics import Metrics
from bot.model.events import Event, dump_event
from bot.store import inbox
from bot.store.db import Database

log = logging.getLogger(__name__)

MAX_BATCH = 500
LINGER_TURNS = 3


class IntakeUnavailable(Exception):
    """The events could not be stored now; the sender should retry (HTTP 503)."""


@dataclass(frozen=True)
class Accepted:
    stored: int
    duplicates: int


@dataclass(slots=True)
class _Pending:
    events: list[inbox.NewEvent]
    done: asyncio.Future[set[tuple[str, str]]]
    deadline: float  # loop time after which the request gives up with a 503


class Intake:
    def __init__(self, db: Database, metrics: Metrics, clock: Clock, timeout: float) -> None:
        self._db = db
        self._metrics = metrics
        self._clock = clock
        self._timeout = timeout
        self._waiting: list[_Pending] = []
        self._has_waiting = asyncio.Event()
        #: Every request not yet answered, oldest first (so deadlines ascend): one timer for
        #: all of them instead of one per request on this hot path.
        self._unanswered: deque[_Pending] = deque()
        self._expiry: asyncio.TimerHandle | None = None
        self._received: dict[str, Any] = {}  # metric children by source
        #: Set after each commit so idle workers start at once instead of at their next poll.
        self.new_work = asyncio.Event()

    async def accept(self, source: str, events: Sequence[Event]) -> Accepted:
        """Store events durably (dedup by source and delivery id); raise IntakeUnavailable."""
        rows = [inbox.NewEvent(source, e.delivery_id, e.type, dump_event(e)) for e in events]
        if not rows:
            return Accepted(0, 0)
        loop = asyncio.get_running_loop()
        pending = _Pending(rows, loop.create_future(), loop.time() + self._timeout)
        self._waiting.append(pending)
        self._unanswered.append(pending)
        self._has_waiting.set()
        if self._expiry is None:
            self._expiry = loop.call_at(pending.deadline, self._expire_overdue)
        inserted = await pending.done
        stored = sum(1 for r in rows if (r.source, r.dedup_key) in inserted)
        received = self._received.get(source)
        if received is None:
            received = self._received[source] = self._metrics.events_received.labels(source)
        received.inc(stored)
        if stored < len(rows):
            self._metrics.events_duplicate.labels(source).inc(len(rows) - stored)
        return Accepted(stored, len(rows) - stored)

    async def run(self) -> None:
        """The single writer: batch whatever is waiting, commit, answer everyone in the batch."""
        while True:
            raise_if_cancelled()
            await self._has_waiting.wait()
            # Let the requests that are already being read join this batch: one commit for
            # many of them is what makes persist-first fast.
            for _ in range(LINGER_TURNS):
                await asyncio.sleep(0)
            await self._commit(self._take())

    def _take(self) -> list[_Pending]:
        """The oldest waiting requests, up to MAX_BATCH rows (always at least one request)."""
        count, rows = 0, 0
        for pending in self._waiting:
            if count and rows + len(pending.events) > MAX_BATCH:
                break
            count, rows = count + 1, rows + len(pending.events)
        batch, self._waiting = self._waiting[:count], self._waiting[count:]
        if not self._waiting:
            self._has_waiting.clear()
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.done.done()]
        if not live:
            return
        try:
            # Duplicates inside one batch (a fast redelivery) must not abort the others.
            unique = list({(e.source, e.dedup_key): e for p in live for e in p.events}.values())
            inserted = await inbox.add_committed(
                self._db.intake_engine, unique, self._clock.now(), patience=self._timeout
            )
        except Exception as exc:
            log.warning("intake: could not store %d events: %s", len(unique), exc)
            for p in live:
                if not p.done.done():
                    p.done.set_exception(IntakeUnavailable(str(exc)))
            return
        for p in live:
            if not p.done.done():
                p.done.set_result(inserted)
        while self._unanswered and self._unanswered[0].done.done():
            self._unanswered.popleft()  # answered: no deadline to watch any more
        if inserted:  # redeliveries give workers nothing to do: don't wake them
            self.new_work.set()

    def _expire_overdue(self) -> None:
        """Answer 503 to requests whose batch did not commit in time (the sender retries;
        dedup covers a commit that lands after all), then wait for the next deadline."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._unanswered and (
            self._unanswered[0].done.done() or self._unanswered[0].deadline <= now
        ):
            done = self._unanswered.popleft().done
            if not done.done():
                done.set_exception(IntakeUnavailable("timed out waiting for the database"))
        first = self._unanswered[0] if self._unanswered else None
        self._expiry = loop.call_at(first.deadline, self._expire_overdue) if first else None

    async def drain(self) -> None:
        """At shutdown: commit whatever is still waiting before the writer stops."""
        while self._waiting:
            with contextlib.suppress(Exception):
                await self._commit(self._take())
