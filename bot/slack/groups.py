"""User-group membership from Slack, for approver checks."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient


class SlackGroups:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def members(self, group_id: str) -> frozenset[str]:
        resp = await self._client.usergroups_users_list(usergroup=group_id)
        return frozenset(str(u) for u in resp.get("users") or [])
