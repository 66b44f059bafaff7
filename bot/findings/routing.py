"""Who owns what: a team by repository glob, else the fallback channel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from bot.config import Settings, Team


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


def route_namespace(teams: Sequence[Team], namespace: str | None, fallback_channel: str) -> Route:
    """The first team listing the namespace (globs allowed) owns what runs in it."""
    for team in teams:
        if namespace and any(fnmatchcase(namespace, pattern) for pattern in team.namespaces):
            return Route(team.name, team.channel)
    return Route(None, fallback_channel)


def route_workload(settings: Settings, namespace: str, labels: Mapping[str, str]) -> Route:
    """A workload's `team` label (key configurable) names its team; else its namespace does."""
    named = labels.get(settings.slack.team_label)
    team = settings.team(named) if named else None
    if team is not None:
        return Route(team.name, team.channel)
    return route_namespace(settings.teams, namespace, settings.slack.fallback_channel)
