"""Slack: the signed HTTP endpoint for Bolt, and the listeners registered on it."""

from __future__ import annotations

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

from bot.app import Core
from bot.web import json_error
from handlers.slack import actions, commands


def mount(app: web.Application, core: Core) -> None:
    bolt = core.bolt
    if bolt is not None:
        commands.register(bolt, core)
        actions.register(bolt, core)

    async def events(request: web.Request) -> web.Response:
        if bolt is None:
            return json_error(503, "Slack requests are not accepted: no signing secret configured")
        bolt_request = await to_bolt_request(request)
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    app.router.add_post("/slack/events", events)
