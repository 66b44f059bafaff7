"""Posting to Slack: the Web API poster, the dry-run poster, and the outbox delivery loop.

Delivery is at most once per outbox key: a message is marked `sending` before the call and
`posted` after. If the process dies in between, the message is `unsure`; before posting it again
the bot looks for it in the channel's history by the metadata key it was posted with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TextIO

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.clock import Clock
from bot.config import Slack as SlackSettings
from bot.db import Database
from bot.metrics import Metrics
from bot.models import SlackMessage
from bot.slack.ids import METADATA_EVENT_TYPE
from bot.store import outbox

log = logging.getLogger(__name__)

STALE_SENDING = timedelta(minutes=2)
#: Slack errors that will not go away by retrying: the message is parked and logged.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "msg_too_long",
        "no_text",
        "missing_scope",
    }
)


@dataclass(frozen=True)
class Posted:
    channel_id: str
    ts: str


class DeliveryError(Exception):
    """Slack did not take the message. `retry_after` is Slack's own wait, when it gave one."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Poster(Protocol):
    async def post(self, msg: SlackMessage, channel: str, thread_ts: str | None) -> Posted: ...

    async def update(self, msg: SlackMessage, channel_id: str, ts: str) -> None: ...

    async def upload(self, msg: SlackMessage, channel_id: str, thread_ts: str) -> None: ...

    async def find(
        self, channel_id: str, key: str, since: datetime, thread_ts: str | None
    ) -> Posted | None: ...


class WebApiPoster:
    """Posts through Slack's Web API (or a stand-in at `slack.api_url`)."""

    def __init__(self, client: AsyncWebClient, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    async def post(self, msg: SlackMessage, channel: str, thread_ts: str | None) -> Posted:
        resp = await self.call(
            "chat.postMessage",
            self._client.chat_postMessage(
                channel=channel,
                text=msg.text,
                blocks=json.loads(msg.blocks),
                thread_ts=thread_ts,
                metadata={"event_type": METADATA_EVENT_TYPE, "event_payload": {"key": msg.key}},
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        return Posted(str(resp["channel"]), str(resp["ts"]))

    async def update(self, msg: SlackMessage, channel_id: str, ts: str) -> None:
        await self.call(
            "chat.update",
            self._client.chat_update(
                channel=channel_id, ts=ts, text=msg.text, blocks=json.loads(msg.blocks)
            ),
        )

    async def upload(self, msg: SlackMessage, channel_id: str, thread_ts: str) -> None:
        filename, title, data = outbox.file_of(msg)
        await self.call(
            "files.upload_v2",
            self._client.files_upload_v2(
                channel=channel_id,
                thread_ts=thread_ts,
                content=data,
                filename=filename,
                title=title,
            ),
        )

    async def find(
        self, channel_id: str, key: str, since: datetime, thread_ts: str | None
    ) -> Posted | None:
        oldest = f"{since.timestamp() - 60:.6f}"
        if thread_ts is None:
            request = self._client.conversations_history(
                channel=channel_id, oldest=oldest, include_all_metadata=True, limit=200
            )
            resp = await self.call("conversations.history", request)
        else:
            request = self._client.conversations_replies(
                channel=channel_id,
                ts=thread_ts,
                oldest=oldest,
                include_all_metadata=True,
                limit=200,
            )
            resp = await self.call("conversations.replies", request)
        for m in resp.get("messages", []):
            meta = m.get("metadata") or {}
            if meta.get("event_type") == METADATA_EVENT_TYPE and (
                (meta.get("event_payload") or {}).get("key") == key
            ):
                return Posted(channel_id, str(m["ts"]))
        return None

    async def call(self, method: str, request: Awaitable[AsyncSlackResponse]) -> dict[str, Any]:
        """Await one Web API call, counted by method and outcome; errors become DeliveryError."""
        try:
            resp = await request
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error", "")) if exc.response.data else ""
            self._metrics.slack_calls.labels(method, str(status) if status != 200 else error).inc()
            headers = {k.lower(): v for k, v in (exc.response.headers or {}).items()}
            retry_after = headers.get("retry-after")
            raise DeliveryError(
                f"{method}: HTTP {status} {error}".strip(),
                permanent=status == 200 and error in PERMANENT_ERRORS,
                retry_after=_seconds(retry_after),
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._metrics.slack_calls.labels(method, "connection_error").inc()
            raise DeliveryError(f"{method}: {type(exc).__name__}", permanent=False) from None
        self._metrics.slack_calls.labels(method, str(resp.status_code)).inc()
        return dict(resp.data) if isinstance(resp.data, dict) else {}


def _seconds(value: Any) -> float | None:
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except (TypeError, ValueError):
        return None


class DryRunPoster:
    """No bot token: print each message instead of posting it."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out
        self._n = 0

    async def post(self, msg: SlackMessage, channel: str, thread_ts: str | None) -> Posted:
        self._emit("post", channel, msg, thread_ts=thread_ts)
        return Posted(channel, f"dry-run.{msg.id:06d}")

    async def update(self, msg: SlackMessage, channel_id: str, ts: str) -> None:
        self._emit("update", channel_id, msg, ts=ts)

    async def upload(self, msg: SlackMessage, channel_id: str, thread_ts: str) -> None:
        filename, _, data = outbox.file_of(msg)
        self._out.write(
            json.dumps(
                {
                    "dry_run": True,
                    "action": "upload",
                    "channel": channel_id,
                    "filename": filename,
                    "bytes": len(data),
                }
            )
            + "\n"
        )
        self._out.flush()

    async def find(
        self, channel_id: str, key: str, since: datetime, thread_ts: str | None
    ) -> Posted | None:
        return None

    def _emit(self, action: str, channel: str, msg: SlackMessage, **extra: Any) -> None:
        record = {
            "dry_run": True,
            "action": action,
            "channel": channel,
            "text": msg.text,
            "blocks": json.loads(msg.blocks),
            **{k: v for k, v in extra.items() if v},
        }
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()


class Delivery:
    """Delivers the outbox: in id order per channel, paced per channel, channels in parallel."""

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
        self._last_post: dict[str, float] = {}

    async def run(self, poll_interval: float = 1.0) -> None:
        while True:
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("slack delivery: outbox unavailable")
                busy = False
            if not busy:
                self._wake.clear()
                # asyncio.timeout, not wait_for: see bot/worker.py.
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
        for msg in msgs:
            if outbox.in_flight(msg, self._clock.now(), STALE_SENDING):
                return
            if msg.available_at > self._clock.now() or not await self._deliver(msg):
                return  # later messages of this channel wait behind this one

    async def _deliver(self, msg: SlackMessage) -> bool:
        async with self._db.transaction() as session:
            parent = await session.get(SlackMessage, msg.parent_id) if msg.parent_id else None
            if msg.kind != "post" and (parent is None or parent.status != outbox.POSTED):
                if parent is None or parent.status == outbox.FAILED:
                    await outbox.failed(session, msg.id, "the message it belongs to was not posted")
                return False  # wait for the parent, which is ahead of it in this channel
            if not await outbox.start_sending(session, msg, self._clock.now()):
                return False
            # Send what the row says now: a redraw may have changed it since `due()` read it.
            fresh = await outbox.get(session, msg.id)
            msg.text, msg.blocks = fresh.text, fresh.blocks
            channel_id = msg.channel_id or await _channel_id(session, msg.channel)
        try:
            found = await self._send(msg, parent, channel_id)
        except DeliveryError as exc:
            await self._not_delivered(msg, exc)
            return False
        async with self._db.transaction() as session:
            await outbox.posted(session, msg.id, found.channel_id, found.ts, self._clock.now())
        log.info(
            "delivered slack %s %s to %s (ts %s)", msg.kind, msg.key, found.channel_id, found.ts
        )
        return True

    async def _send(
        self, msg: SlackMessage, parent: SlackMessage | None, channel_id: str | None
    ) -> Posted:
        if msg.kind == "update":
            assert parent is not None and parent.channel_id and parent.ts
            await self._pace(msg.channel)
            await self._poster.update(msg, parent.channel_id, parent.ts)
            return Posted(parent.channel_id, parent.ts)
        if msg.kind == "file":
            assert parent is not None and parent.channel_id and parent.ts
            await self._poster.upload(msg, parent.channel_id, parent.ts)
            return Posted(parent.channel_id, parent.ts)
        thread_ts = parent.ts if parent is not None else None
        channel = parent.channel_id if parent is not None and parent.channel_id else msg.channel
        if msg.status != outbox.PENDING and (channel_id or parent is not None):
            # This message may have reached Slack just before a crash: look before posting.
            found = await self._poster.find(
                channel_id or channel, msg.key, msg.created_at, thread_ts
            )
            if found is not None:
                return found
        await self._pace(msg.channel)
        return await self._poster.post(msg, channel, thread_ts)

    async def _not_delivered(self, msg: SlackMessage, exc: DeliveryError) -> None:
        async with self._db.transaction() as session:
            if exc.permanent:
                await outbox.failed(session, msg.id, str(exc))
                log.error("slack message %s cannot be delivered: %s", msg.key, exc)
                return
            delay = exc.retry_after or min(
                self._settings.retry_backoff * 2 ** min(msg.attempts, 16),
                self._settings.max_retry_backoff,
            )
            at = self._clock.now() + timedelta(seconds=delay)
            await outbox.retry_later(session, msg.id, str(exc), at)
        log.warning("slack message %s not delivered (%s); retrying in %.1fs", msg.key, exc, delay)

    async def _pace(self, channel: str) -> None:
        wait = (
            self._last_post.get(channel, 0.0) + self._settings.channel_interval - time.monotonic()
        )
        if wait > 0:
            await self._sleep(wait)
        self._last_post[channel] = time.monotonic()


async def _channel_id(session: Any, channel: str) -> str | None:
    if channel[:1] in ("C", "G", "D") and channel.isalnum():
        return channel
    return await outbox.known_channel_id(session, channel)
