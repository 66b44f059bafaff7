"""Who may do what, per team.

* **Patch** and a narrow **Ignore** (this image or this repository, for 7/30/90 days): the team's
  `members` (user or user-group ids), or, when it lists none, whoever is in the team's channel
  as Slack reports it. Patch fires a hook and Ignore silences a finding, so a workspace
  stranger may do neither.
* **Acknowledge**: the team's `oncall` group and its approvers; an Acknowledge stops the
  escalation, so it belongs to the people who are paged.
* **Approve**, and an Ignore **team-wide** or **until a fix exists**: the team's approvers, at
  every severity. These outlive the finding at hand (and Approve lets a workload through
  `enforce`), so they are never a channel member's call.
* A team's approvers may also do everything its members and on-call may.
* **No owning team** (posted to the fallback channel): Patch, narrow Ignore and Acknowledge by
  the members of `slack.fallback_channel`; Approve and the wide Ignores by nobody, since no
  approver was ever named: give the repository or namespace a team first.

Group and channel membership are read from Slack and cached for `ttl` seconds, so a click
usually costs no API call and someone removed loses the right within the TTL. When Slack cannot
be asked the answer is "not a member" (and is not cached): a Slack outage must not let anyone
in, and user ids listed in the config keep working without Slack.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bot.config import Settings, Team
from bot.model.findings import Expiry, Scope
from bot.slack import render
from bot.slack.escape import mrkdwn, truncate

log = logging.getLogger(__name__)

#: A modal shows at most this much of an error.
MODAL_ERROR_LIMIT = 150
#: People named in a refusal before "and N more".
NAMED = 8
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,20}$")


class Action(StrEnum):
    APPROVE = "approve"
    PATCH = "patch"
    #: Ignore this image or this repository, with an expiry.
    IGNORE = "ignore"
    #: Ignore team-wide, or until a fix exists.
    IGNORE_WIDE = "ignore-wide"
    ACK = "ack"


#: What the action is, said of a team ("may … ") and of one unowned finding or alert.
_OF_TEAM = {
    Action.APPROVE: "accept the risk of its findings",
    Action.PATCH: "request patches for its findings",
    Action.IGNORE: "ignore its findings",
    Action.IGNORE_WIDE: "ignore its findings team-wide or until a fix exists",
    Action.ACK: "acknowledge its alerts",
}
_OF_ONE = {
    Action.APPROVE: "accept its risk",
    Action.PATCH: "request a patch for it",
    Action.IGNORE: "ignore it",
    Action.IGNORE_WIDE: "ignore it team-wide or until a fix exists",
    Action.ACK: "acknowledge it",
}
APPROVERS_ONLY = frozenset({Action.APPROVE, Action.IGNORE_WIDE})


def ignore_action(scope: str, expiry: str) -> Action:
    """An Ignore beyond this image or repository, or without an end date, is the wide kind."""
    wide = scope == Scope.VULNERABILITY or expiry == Expiry.UNTIL_FIX
    return Action.IGNORE_WIDE if wide else Action.IGNORE


@dataclass(frozen=True)
class Refusal:
    """Why not: `text` (mrkdwn, names who may) for an ephemeral message, `short` for a modal."""

    text: str
    short: str


class Directory(Protocol):
    """Slack's answer to who is in a user group or a channel; may raise when Slack cannot say."""

    async def group_members(self, group_id: str) -> frozenset[str]: ...

    async def channel_members(self, channel: str) -> frozenset[str]: ...


class NoDirectory:
    """Dry-run: without a Slack client no group or channel can be read: only listed users count."""

    async def group_members(self, group_id: str) -> frozenset[str]:
        return frozenset()

    async def channel_members(self, channel: str) -> frozenset[str]:
        return frozenset()


class Permissions:
    def __init__(self, settings: Settings, directory: Directory, ttl: float = 300.0) -> None:
        self._settings = settings
        self._directory = directory
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}

    async def refusal(
        self, action: Action, team: str | None, user_id: str, *, what: str = "finding"
    ) -> Refusal | None:
        """None when `user_id` may take `action` on something of `team`, else why not.

        `what` ("finding" or "alert") only words the refusal of something no team owns.
        """
        config = self._settings.team(team)
        if config is None:
            return await self._unowned(action, user_id, what)
        if await self.is_listed(config.approvers, user_id):
            return None
        if action in (Action.PATCH, Action.IGNORE):
            if config.members:
                if await self.is_listed(config.members, user_id):
                    return None
                return _refuse(
                    f"Only members of team {mrkdwn(config.name)} ({_names(config.members)}) "
                    f"or its approvers may {_OF_TEAM[action]}.",
                    f"Only members of team {config.name} or its approvers may {_OF_TEAM[action]}.",
                )
            if await self._in_channel(config.channel, user_id):
                return None
            return _refuse(
                f"Only members of team {mrkdwn(config.name)}'s channel "
                f"{_channel(config.channel)} or its approvers may {_OF_TEAM[action]}.",
                f"Only members of team {config.name}'s channel or its approvers may "
                f"{_OF_TEAM[action]}.",
            )
        if action is Action.ACK:
            if config.oncall and await self.is_listed((config.oncall,), user_id):
                return None
            return _ack_refusal(config)
        if not config.approvers:
            return _refuse(
                f"Team {mrkdwn(config.name)} has no approvers configured, so nobody may "
                f"{_OF_TEAM[action]}.",
                f"Team {config.name} has no approvers, so nobody may {_OF_TEAM[action]}.",
            )
        return _refuse(
            f"Only the approvers of team {mrkdwn(config.name)} ({_names(config.approvers)}) "
            f"may {_OF_TEAM[action]}.",
            f"Only the approvers of team {config.name} may {_OF_TEAM[action]}.",
        )

    async def may(self, action: Action, team: str | None, user_id: str) -> bool:
        return await self.refusal(action, team, user_id) is None

    async def is_listed(self, people: Iterable[str], user_id: str) -> bool:
        """Whether `user_id` is one of `people` (user ids) or in one of its user groups."""
        people = tuple(people)
        if user_id in people:
            return True
        for group_id in (p for p in people if p.startswith("S")):
            if user_id in await self._members("group", group_id):
                return True
        return False

    async def _unowned(self, action: Action, user_id: str, what: str) -> Refusal | None:
        if action in APPROVERS_ONLY:
            return _refuse(
                f"This {what} belongs to no team, so nobody may {_OF_ONE[action]}: give its "
                "repository or namespace an owner in `[[teams]]` first.",
                f"This {what} belongs to no team, so nobody may {_OF_ONE[action]}.",
            )
        fallback = self._settings.slack.fallback_channel
        if await self._in_channel(fallback, user_id):
            return None
        return _refuse(
            f"This {what} belongs to no team: only members of {_channel(fallback)} may "
            f"{_OF_ONE[action]}.",
            f"This {what} belongs to no team: only members of {fallback} may {_OF_ONE[action]}.",
        )

    async def _in_channel(self, channel: str, user_id: str) -> bool:
        return user_id in await self._members("channel", channel)

    async def _members(self, kind: str, key: str) -> frozenset[str]:
        cached = self._cache.get((kind, key))
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            if kind == "group":
                members = await self._directory.group_members(key)
            else:
                members = await self._directory.channel_members(key)
        except Exception as exc:  # Slack down or refusing: deny rather than guess; don't cache
            log.warning("cannot read the members of %s %s: %s", kind, key, exc)
            return frozenset()
        self._cache[(kind, key)] = (time.monotonic() + self._ttl, members)
        return members


def _ack_refusal(config: Team) -> Refusal:
    team, what = mrkdwn(config.name), _OF_TEAM[Action.ACK]
    short = f"Only team {config.name}'s on-call group or its approvers may {what}."
    if config.oncall and config.approvers:
        text = (
            f"Only team {team}'s on-call group ({render.group(config.oncall)}) or its approvers "
            f"({_names(config.approvers)}) may {what}."
        )
    elif config.oncall:
        text = f"Only team {team}'s on-call group ({render.group(config.oncall)}) may {what}."
    elif config.approvers:
        text = (
            f"Only the approvers of team {team} ({_names(config.approvers)}) may {what}; "
            "it has no on-call group."
        )
    else:
        text = f"Team {team} has no on-call group or approvers configured, so nobody may {what}."
        short = f"Team {config.name} has no on-call group or approvers, so nobody may {what}."
    return _refuse(text, short)


def _refuse(text: str, short: str) -> Refusal:
    return Refusal(text, truncate(short, MODAL_ERROR_LIMIT))


def _names(people: tuple[str, ...]) -> str:
    """Mention-safe: a well-formed id becomes <@U…> or <!subteam^S…>, anything else text."""
    named = [render.group(p) if p.startswith("S") else render.user(p) for p in people[:NAMED]]
    more = f" and {len(people) - NAMED} more" if len(people) > NAMED else ""
    return ", ".join(named) + more


def _channel(channel: str) -> str:
    channel = channel.strip()
    if _CHANNEL_ID.match(channel):
        return f"<#{channel}>"
    return mrkdwn("#" + channel.removeprefix("#"))
