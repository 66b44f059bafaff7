"""The outbox delivery loop: every owed Slack message posted once, in order, paced.

Delivery is at most once per outbox key: a message is marked `sending` before the call and
`posted` after. If the process dies in between, the message is `unsure`; before posting it again
the bot looks for it in the channel's history by the metadata key it was posted with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Slack as SlackSettings
from bot.infra.clock import Clock
from bot.infra.loops import raise_if_cancelled
from bot.infra.metrics import Metrics
from bot.slack.posters import DeliveryError, Posted, Poster
from bot.store import outbox
from bot.store.db import Database
from bot.store.models import SlackMessage

log = logging.getLogger(__name__)

STALE_SENDING = timedelta(minutes=2)
#: Messages of one channel taken (marked `sending`) in one transaction when it is not paced.
RUN = 16
#: A run still unsent after this many seconds is given back (well inside STALE_SENDING).
RUN_SECONDS = STALE_SENDING.total_seconds() / 4


class Delivery:
    """Delivers the outbox: in id order per channel, paced per channel, channels in parallel.

    Pacing holds across replicas: a post records its time in the channel's row, and the next
    post to that channel, from whichever replica, waits `slack.channel_interval` from it. Only
    one replica posts to a channel at a time (the message it is sending holds the channel), so
    reading the row and then recording the post needs no lock of its own.
    """

    def __init__(
        self,
        db: Database,
        poster: Poster,
        settings: SlackSettings,
        metrics: Metrics,
        clock: Clock,
        wake: asyncio.Event,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self._poster = poster
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._wake = wake
        self._sleep = sleep

    async def run(self, poll_interval: float = 1.0) -> None:
        while True:
            raise_if_cancelled()
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("slack delivery: outbox unavailable")
                busy = False
            if not busy:
                self._wake.clear()
                # asyncio.timeout, not wait_for: see bot/intake/worker.py.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_interval):
                        await self._wake.wait()

    async def run_once(self) -> bool:
        """Deliver what is due; True when something was attempted."""
        now = self._clock.now()
        async with self._db.transaction() as session:
            rows = await outbox.due(session, now, STALE_SENDING)
        self._metrics.slack_pending.set(len(rows))
        by_channel: dict[str, list[SlackMessage]] = {}
        for row in rows:
            by_channel.setdefault(row.channel, []).append(row)
        ready = {
            ch: msgs
            for ch, msgs in by_channel.items()
            if msgs[0].available_at <= now and not outbox.in_flight(msgs[0], now, STALE_SENDING)
        }
        if not ready:
            return False
        await asyncio.gather(*(self._deliver_channel(msgs) for msgs in ready.values()))
        return True

    async def _deliver_channel(self, msgs: list[SlackMessage]) -> None:
        # Posted but not recorded yet: recorded in the transaction that takes the channel's next
        # messages, or when the channel is done. Should the process die in between, the post is
        # `unsure` and is looked up in Slack before it is sent again.
        unrecorded: list[tuple[int, Posted]] = []
        parents: dict[int, SlackMessage] = {}  # posted ones: their ts does not change
        queue = list(msgs)
        try:
            while queue:
                now = self._clock.now()
                if outbox.in_flight(queue[0], now, STALE_SENDING) or queue[0].available_at > now:
                    return  # later messages of this channel wait behind this one
                run = self._run(queue, now)
                async with self._db.transaction() as session:
                    await self._record(session, unrecorded)
                    taken = []
                    for msg in run:
                        one = await self._take(session, msg, parents)
                        if one is None:
                            break
                        taken.append((msg, *one))
                unrecorded.clear()
                if not await self._send_run(taken, unrecorded):
                    return
                del queue[: len(taken)]
                if len(taken) < len(run):
                    return  # the rest waits: for a parent, or for the replica that took it
        finally:
            if unrecorded:
                async with self._db.transaction() as session:
                    await self._record(session, unrecorded)

    def _run(self, queue: list[SlackMessage], now: datetime) -> list[SlackMessage]:
        """The messages at the head of a channel's queue to take in one transaction.

        Unpaced, a channel's first-time messages are taken (marked `sending`) a run at a time,
        so a burst costs a commit per run rather than per message. Paced, the interval is the
        limit, not commits, so messages go one at a time; as do retries, which may have to be
        looked up in Slack first, and files.
        """
        head = queue[0]
        if self._settings.channel_interval > 0 or head.status != outbox.PENDING:
            return [head]
        run = []
        for msg in queue[:RUN]:
            if msg.status != outbox.PENDING or msg.kind == "file" or msg.available_at > now:
                break
            run.append(msg)
        return run or [head]

    async def _send_run(
        self,
        taken: list[tuple[SlackMessage, SlackMessage | None, str | None, float]],
        unrecorded: list[tuple[int, Posted]],
    ) -> bool:
        """Send what was taken, in order; False when one was not delivered (the ones after it
        are released, untried, to wait behind it)."""
        started = time.monotonic()
        for k, (msg, parent, channel_id, wait) in enumerate(taken):
            if k and time.monotonic() - started > RUN_SECONDS:
                # Slack is slow: give the rest back long before another replica could think
                # them abandoned (STALE_SENDING) and send them too.
                await self._release([m for m, *_ in taken[k:]])
                return False
            try:
                found = await self._send(msg, parent, channel_id, wait)
            except DeliveryError as exc:
                await self._not_delivered(msg, exc, release=[m for m, *_ in taken[k + 1 :]])
                return False
            except BaseException:
                # `msg` may have reached Slack (it stays `sending`); the ones after it did not.
                with contextlib.suppress(Exception):
                    await self._release([m for m, *_ in taken[k + 1 :]])
                raise
            unrecorded.append((msg.id, found))
            log.info(
                "delivered slack %s %s to %s (ts %s)", msg.kind, msg.key, found.channel_id, found.ts
            )
        return bool(taken)

    async def _release(self, msgs: list[SlackMessage]) -> None:
        if msgs:
            async with self._db.transaction() as session:
                await outbox.release(session, [m.id for m in msgs])

    async def _take(
        self, session: AsyncSession, msg: SlackMessage, parents: dict[int, SlackMessage]
    ) -> tuple[SlackMessage | None, str | None, float] | None:
        """Mark the message `sending`; its parent, known channel id and pacing wait, or None
        when it must wait (for its parent, or because another replica took it)."""
        parent = await self._parent(session, msg, parents)
        if msg.kind != "post" and (parent is None or parent.status != outbox.POSTED):
            if parent is None or parent.status == outbox.FAILED:
                await outbox.failed(session, msg.id, "the message it belongs to was not posted")
            return None  # wait for the parent, which is ahead of it in this channel
        now = self._clock.now()
        content = await outbox.take(session, msg, now)
        if content is None:
            return None
        # Send what the row says now: a redraw may have changed it since `due()` read it.
        msg.text, msg.blocks = content
        channel_id = None
        if msg.status != outbox.PENDING:  # tried before: it may have to be looked up
            channel_id = msg.channel_id or await _channel_id(session, msg.channel)
        wait = 0.0
        interval = self._settings.channel_interval
        if msg.kind != "file" and interval > 0:
            last, at = await outbox.last_post(session, msg.channel), _wall_clock()
            # At most one interval: a replica whose clock runs ahead must not stall the channel.
            wait = min((last - at).total_seconds() + interval, interval) if last else 0.0
            if wait <= 0:
                await outbox.paced(session, msg.channel, at)
        return parent, channel_id, wait

    async def _parent(
        self, session: AsyncSession, msg: SlackMessage, parents: dict[int, SlackMessage]
    ) -> SlackMessage | None:
        if msg.parent_id is None:
            return None
        parent = parents.get(msg.parent_id) or await session.get(SlackMessage, msg.parent_id)
        if parent is not None and parent.status == outbox.POSTED:
            parents[msg.parent_id] = parent
        return parent

    async def _record(self, session: AsyncSession, posted: list[tuple[int, Posted]]) -> None:
        for msg_id, found in posted:
            await outbox.posted(session, msg_id, found.channel_id, found.ts, self._clock.now())

    async def _send(
        self, msg: SlackMessage, parent: SlackMessage | None, channel_id: str | None, wait: float
    ) -> Posted:
        if msg.kind == "update":
            assert parent is not None and parent.channel_id and parent.ts
            await self._pace(msg.channel, wait)
            await self._poster.update(msg, parent.channel_id, parent.ts)
            return Posted(parent.channel_id, parent.ts)
        if msg.kind == "file":
            assert parent is not None and parent.channel_id and parent.ts
            await self._poster.upload(msg, parent.channel_id, parent.ts)
            return Posted(parent.channel_id, parent.ts)
        thread_ts = parent.ts if parent is not None else None
        channel = parent.channel_id if parent is not None and parent.channel_id else msg.channel
        if msg.status != outbox.PENDING:
            # This message may have reached Slack just before a crash: look before posting.
            if channel_id is None and parent is None:
                channel_id = await self._lookup_channel(msg.channel)
            if channel_id or parent is not None:
                found = await self._poster.find(
                    channel_id or channel, msg.key, msg.created_at, thread_ts
                )
                if found is not None:
                    return found
        await self._pace(msg.channel, wait)
        return await self._poster.post(msg, channel, thread_ts)

    async def _lookup_channel(self, channel: str) -> str | None:
        """The channel's id for a post that may have gone out before a crash, when nothing
        recorded it: without it the post could not be looked up and would go out twice."""
        try:
            found = await self._poster.channel_id(channel)
        except DeliveryError as exc:
            if not exc.permanent:
                raise  # retried later, still `unsure`
            log.warning("slack channel %s: cannot look up its id (%s)", channel, exc)
            return None
        if found is None:
            log.warning("slack channel %s: not in conversations.list", channel)
        return found

    async def _not_delivered(
        self, msg: SlackMessage, exc: DeliveryError, release: list[SlackMessage]
    ) -> None:
        async with self._db.transaction() as session:
            await outbox.release(session, [m.id for m in release])
            if exc.permanent:
                await outbox.failed(session, msg.id, str(exc))
                log.error("slack message %s cannot be delivered: %s", msg.key, exc)
                return
            delay = exc.retry_after or min(
                self._settings.retry_backoff * 2 ** min(msg.attempts, 16),
                self._settings.max_retry_backoff,
            )
            at = self._clock.now() + timedelta(seconds=delay)
            # A post that may be in Slack (tried before, or this try may have reached it)
            # stays `unsure`, so the next try looks for it first.
            unsure = msg.kind == "post" and (msg.status != outbox.PENDING or exc.maybe_sent)
            await outbox.retry_later(session, msg.id, str(exc), at, unsure=unsure)
        log.warning("slack message %s not delivered (%s); retrying in %.1fs", msg.key, exc, delay)

    async def _pace(self, channel: str, wait: float) -> None:
        """Wait out the channel's interval, then record this post's time for the next one (a
        post that had no wait was recorded when it was taken)."""
        if wait <= 0:
            return
        await self._sleep(wait)
        async with self._db.transaction() as session:
            await outbox.paced(session, channel, _wall_clock())


def _wall_clock() -> datetime:
    """Pacing is about Slack's rate limit, so real time, shared by replicas (not `Clock`, which
    tests move by hand)."""
    return datetime.now(UTC)


async def _channel_id(session: AsyncSession, channel: str) -> str | None:
    if channel[:1] in ("C", "G", "D") and channel.isalnum():
        return channel
    return await outbox.known_channel_id(session, channel)
