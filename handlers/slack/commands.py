"""The /crowsnest slash command."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.app import Core

HELP = (
    "*Crow's Nest* watches your registries and posts what its checks find.\n"
    "• `/crowsnest help`: this text\n"
    "Findings arrive in your team's channel, one message per pushed image."
)


def register(app: AsyncApp, core: Core) -> None:
    async def crowsnest(ack: AsyncAck, command: dict[str, Any]) -> None:
        sub = (command.get("text") or "").strip().split(" ", 1)[0].lower()
        if sub in ("", "help"):
            await ack(text=HELP, response_type="ephemeral")
        else:
            await ack(text=f"Unknown sub-command. {HELP}", response_type="ephemeral")

    app.command("/crowsnest")(crowsnest)
