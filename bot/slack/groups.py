"""Who is in a user group or a channel, as Slack reports it, for the permission checks.

Errors are not caught here: `bot.findings.authz` decides what an unanswerable question means (no).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

log = logging.getLogger(__name__)

#: Pages read of one listing before giving up: 100 pages of 1,000 channels or members.
MAX_PAGES = 100
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,20}$")


class SlackDirectory:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        #: Channel ids never change, so a name once found is not looked up again.
        self._channel_ids: dict[str, str] = {}

    async def group_members(self, group_id: str) -> frozenset[str]:
        resp = await self._client.usergroups_users_list(usergroup=group_id)
        return frozenset(str(u) for u in resp.get("users") or [])

    async def channel_members(self, channel: str) -> frozenset[str]:
        """The members of `channel` (an id, or `#name` as the config names it); nobody if no
        channel has that name. Only a cut-short listing (over MAX_PAGES) can miss someone."""
        channel_id = await self._channel_id(channel)
        if channel_id is None:
            log.warning("no Slack channel named %s: nobody counts as its member", channel)
            return frozenset()
        members: set[str] = set()
        async for page in self._pages(
            self._client.conversations_members, {"channel": channel_id, "limit": 1000}
        ):
            members.update(str(u) for u in page.get("members") or [])
        return frozenset(members)

    async def _channel_id(self, channel: str) -> str | None:
        channel = channel.strip()
        if _CHANNEL_ID.match(channel):
            return channel
        wanted = channel.removeprefix("#").lower()
        if wanted in self._channel_ids:
            return self._channel_ids[wanted]
        listing = {
            "types": "public_channel,private_channel",
            "exclude_archived": True,
            "limit": 1000,
        }
        async for page in self._pages(self._client.conversations_list, listing):
            for found in page.get("channels") or []:
                if str(found.get("name", "")).lower() == wanted:
                    self._channel_ids[wanted] = str(found["id"])
                    return self._channel_ids[wanted]
        return None

    @staticmethod
    async def _pages(
        request: Callable[..., Awaitable[AsyncSlackResponse]], args: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            resp = await request(**args, cursor=cursor)
            page = resp.data if isinstance(resp.data, dict) else {}
            yield page
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                return
        log.warning("slack listing cut short after %d pages", MAX_PAGES)
