"""Posting to Slack: the Web API poster and the dry-run poster.

Both answer the `Poster` protocol the outbox delivery (`bot.slack.delivery`) drives: post,
update, upload a file, find a message already posted by its metadata key, and a channel's id.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TextIO

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.infra.metrics import Metrics
from bot.slack.ids import METADATA_EVENT_TYPE
from bot.store import outbox
from bot.store.models import SlackMessage

log = logging.getLogger(__name__)

#: Pages (of 200 messages, or 1,000 channels) read before a lookup gives up (and posts).
FIND_PAGES = 100
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
    """Slack did not take the message, as far as we know. `retry_after` is Slack's own wait,
    when it gave one; `maybe_sent` says the request may have done its work all the same (a
    timeout, a 5xx), so a post is looked up in Slack before it is sent again."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


class Poster(Protocol):
    async def post(self, msg: SlackMessage, channel: str, thread_ts: str | None) -> Posted: ...

    async def update(self, msg: SlackMessage, channel_id: str, ts: str) -> None: ...

    async def upload(self, msg: SlackMessage, channel_id: str, thread_ts: str) -> None: ...

    async def find(
        self, channel_id: str, key: str, since: datetime, thread_ts: str | None
    ) -> Posted | None: ...

    async def channel_id(self, name: str) -> str | None: ...


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
        """The message posted with this key since `since`, looked for page by page: a busy
        thread lists its replies oldest first, so the one wanted may be many pages in."""
        window: dict[str, Any] = {
            "channel": channel_id,
            "oldest": f"{since.timestamp() - 60:.6f}",
            "include_all_metadata": True,
            "limit": 200,
        }
        if thread_ts is None:
            pages = self._pages("conversations.history", self._client.conversations_history, window)
        else:
            window["ts"] = thread_ts
            pages = self._pages("conversations.replies", self._client.conversations_replies, window)
        async for page in pages:
            for m in page.get("messages", []):
                meta = m.get("metadata") or {}
                if meta.get("event_type") == METADATA_EVENT_TYPE and (
                    (meta.get("event_payload") or {}).get("key") == key
                ):
                    return Posted(channel_id, str(m["ts"]))
        return None

    async def channel_id(self, name: str) -> str | None:
        """The id of the channel called `name` (`#name` or `name`), from conversations.list.

        Needed only when a post to a channel may have gone out just before a crash and no
        earlier post recorded the channel's id: history can be searched by id alone.
        """
        wanted = name.strip().removeprefix("#").lower()
        listing = {"types": "public_channel,private_channel", "exclude_archived": True}
        async for page in self._pages(
            "conversations.list", self._client.conversations_list, {**listing, "limit": 1000}
        ):
            for channel in page.get("channels", []):
                if str(channel.get("name", "")).lower() == wanted:
                    return str(channel["id"])
        return None

    async def _pages(
        self,
        method: str,
        request: Callable[..., Awaitable[AsyncSlackResponse]],
        args: dict[str, Any],
    ) -> AsyncIterator[dict[str, Any]]:
        """Each page of a cursor-paginated method, up to FIND_PAGES of them."""
        cursor: str | None = None
        for _ in range(FIND_PAGES):
            page = await self.call(method, request(**args, cursor=cursor))
            yield page
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                return
        log.warning("slack %s: gave up after %d pages", method, FIND_PAGES)

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
                maybe_sent=status >= 500,
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._metrics.slack_calls.labels(method, "connection_error").inc()
            raise DeliveryError(
                f"{method}: {type(exc).__name__}",
                permanent=False,
                # Refused before a byte was sent: Slack cannot have acted on it.
                maybe_sent=not isinstance(exc, aiohttp.ClientConnectorError),
            ) from None
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

    async def channel_id(self, name: str) -> str | None:
        """A dry run's posts record the channel's name as its id (there is no Slack to ask)."""
        return name

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
