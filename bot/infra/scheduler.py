"""Periodic jobs inside `crowsnest serve`, on APScheduler's asyncio scheduler.

Each job is safe to run on several replicas at once: the rows it acts on are claimed with
`FOR UPDATE SKIP LOCKED` in the transaction that changes them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[int]]


def scheduler(jobs: dict[str, tuple[Job, float]]) -> AsyncIOScheduler:
    """A scheduler running each named job every `seconds`, never two runs of one job at once."""
    sched = AsyncIOScheduler(timezone="UTC")
    for name, (job, seconds) in jobs.items():
        sched.add_job(
            _logged(name, job),
            IntervalTrigger(seconds=seconds),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(int(seconds), 1),
        )
    return sched


def _logged(name: str, job: Job) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        try:
            done = await job()
        except Exception:
            log.exception("scheduled job %s failed", name)
            return
        if done:
            log.info("scheduled job %s acted on %d items", name, done)

    return run
