"""Who owns what: a team by repository glob, else the fallback channel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from bot.config import Team


@dataclass(frozen=True)
class Route:
    team: str | None
    channel: str


def route_repository(teams: Sequence[Team], repository: str, fallback_channel: str) -> Route:
    """The first team (in config order) with a matching pattern owns the repository."""
    for team in teams:
        if any(fnmatchcase(repository, pattern) for pattern in team.repositories):
            return Route(team.name, team.channel)
    return Route(None, fallback_channel)
