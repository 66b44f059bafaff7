"""Who may decide: approvers for high and critical findings, anyone for the rest.

Approvers are Slack user ids or user-group ids; group membership is read through
`usergroups.users.list` and cached for a few minutes, so a click costs no API call most of the
time and a removed approver loses the right within the TTL.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from bot.config import Settings
from bot.findings import Severity

log = logging.getLogger(__name__)

GUARDED = frozenset({Severity.CRITICAL, Severity.HIGH})


class GroupMembers(Protocol):
    async def members(self, group_id: str) -> frozenset[str]: ...


class NoGroups:
    """Dry-run: without a Slack client no group can be resolved, so only listed users count."""

    async def members(self, group_id: str) -> frozenset[str]:
        return frozenset()


class Approvers:
    def __init__(self, settings: Settings, groups: GroupMembers, ttl: float = 300.0) -> None:
        self._settings = settings
        self._groups = groups
        self._ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def refusal(self, team: str | None, severity: Severity, user_id: str) -> str | None:
        """None when `user_id` may approve or ignore this finding, else why not (for the user)."""
        if severity not in GUARDED:
            return None
        config = self._settings.team(team)
        if config is None or not config.approvers:
            owner = f"team {team}" if team else "unowned images"
            return (
                f"Only approvers may accept or ignore {severity.value} findings, and "
                f"{owner} has none configured."
            )
        if await self.is_approver(config.approvers, user_id):
            return None
        return (
            f"Only the approvers of team {config.name} may accept or ignore "
            f"{severity.value} findings."
        )

    async def is_approver(self, approvers: tuple[str, ...], user_id: str) -> bool:
        if user_id in approvers:
            return True
        for group_id in (a for a in approvers if a.startswith("S")):
            if user_id in await self._members(group_id):
                return True
        return False

    async def _members(self, group_id: str) -> frozenset[str]:
        cached = self._cache.get(group_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            members = await self._groups.members(group_id)
        except Exception as exc:  # Slack down: deny rather than guess, and don't cache
            log.warning("cannot read members of user group %s: %s", group_id, exc)
            return cached[1] if cached else frozenset()
        self._cache[group_id] = (time.monotonic() + self._ttl, members)
        return members
