"""The shapes the core expects of its edges."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from bot.app import Core


class Edge(Protocol):
    """An edge (a handlers/ module) adds its routes or Slack listeners to the application."""

    def mount(self, app: web.Application, core: Core) -> None: ...
