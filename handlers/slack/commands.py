"""`/crowsnest help | status IMAGE | findings [TEAM] | ignores | digest [TEAM]`, and App Home.

Every answer is ephemeral: only the person who asked sees it.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Core
from bot.digest.jobs import DigestJobs
from bot.digest.render import digest_text
from bot.findings.queries import OpenFinding
from bot.images.reference import InvalidReference, parse_reference, split_domain
from bot.slack import render
from bot.slack.escape import code, mrkdwn, truncate

HELP = (
    "*Crow's Nest* watches your registries and posts what its checks find.\n"
    "• `/crowsnest status IMAGE`: open findings of a repository (`team-a/app:1.2`)\n"
    "• `/crowsnest findings [TEAM]`: open findings, worst first\n"
    "• `/crowsnest ignores`: active Ignore and Approve decisions, with their expiries\n"
    "• `/crowsnest digest [TEAM]`: open findings by severity and SLA breaches\n"
    "• `/crowsnest help`: this text"
)
LIMIT = 20
log = logging.getLogger(__name__)


def register(app: AsyncApp, core: Core) -> None:
    async def crowsnest(ack: AsyncAck, command: dict[str, Any]) -> None:
        words = (command.get("text") or "").split()
        sub, args = (words[0].lower(), words[1:]) if words else ("help", [])
        handler = SUBCOMMANDS.get(sub)
        text = await handler(core, args) if handler else f"Unknown sub-command.\n{HELP}"
        await ack(text=truncate(text, 3000), response_type="ephemeral")

    async def home(event: dict[str, Any], client: AsyncWebClient) -> None:
        user = str(event.get("user") or "")
        if not user:
            return
        try:
            await client.views_publish(user_id=user, view=await home_view(core, user))
        except SlackApiError as exc:  # Slack would retry the event: answer it anyway
            log.warning("views.publish failed: %s", exc.response.get("error"))

    app.command("/crowsnest")(crowsnest)
    app.event("app_home_opened")(home)


async def _help(core: Core, args: list[str]) -> str:
    return HELP


async def _status(core: Core, args: list[str]) -> str:
    if not args:
        return "Usage: `/crowsnest status team-a/app[:tag]`"
    try:
        ref = parse_reference(args[0])
    except InvalidReference:
        return f"Nothing is known about {code(args[0])}."
    _, repository = split_domain(ref.name)  # repositories are stored without host
    tag = ref.tag
    image = await core.queries.latest_image(repository, tag)
    found = await core.queries.open_findings(repository=repository, limit=LIMIT)
    if image is None and not found:
        return f"Nothing is known about {code(args[0])}."
    head = f"*{mrkdwn(repository)}*"
    if image is not None:
        head += (
            f" · last push {code(image.last_tag or '')} {code(image.digest[7:19])} "
            f"{render.when(image.last_pushed_at)}"
        )
    return head + "\n" + _lines(found, with_repo=False)


async def _findings(core: Core, args: list[str]) -> str:
    team = args[0] if args else None
    if team is not None and core.settings.team(team) is None:
        return f"No team named {code(team)}."
    found = await core.queries.open_findings(team=team, limit=LIMIT)
    title = f"Open findings of {mrkdwn(team)}" if team else "Open findings"
    return f"*{title}*\n" + _lines(found, with_repo=True)


async def _ignores(core: Core, args: list[str]) -> str:
    now = core.clock.now()
    active = await core.queries.suppressions(now)
    if not active:
        return "No active Ignore or Approve decisions."
    lines = []
    for s in active[:LIMIT]:
        where = mrkdwn(s.repository or f"team {s.team or '-'}")
        until = (
            render.when(s.until)
            if s.until
            else ("until a fix exists" if s.until_fixed else "no expiry")
        )
        verb = "approved" if s.kind == "approve" else "ignored"
        lines.append(
            f"• {code(s.check_id)} in {where}: {verb} by {render.user(s.decided_by)}, "
            f"{until}: “{mrkdwn(truncate(s.reason, 200))}”"
        )
    return "*Active decisions*\n" + "\n".join(lines)


async def _digest(core: Core, args: list[str]) -> str:
    team = args[0] if args else None
    if team is not None and core.settings.team(team) is None:
        return f"No team named {code(team)}."
    jobs = DigestJobs(core.settings, core.db, core.clock)
    digest = await jobs.build((team,) if team else None, core.clock.now())
    return "```" + mrkdwn(digest_text(digest)).replace("```", "\u2018" * 3) + "```"


def _lines(found: list[OpenFinding], *, with_repo: bool) -> str:
    if not found:
        return "No open findings."
    lines = []
    for f in found:
        where = f" in {code(f.repository)}" if with_repo else ""
        package = f" {code(f.package)}" if f.package else ""
        due = f" · due {render.when(f.due_at)}" if f.due_at else ""
        lines.append(
            f"{render.SEVERITY_ICON[f.severity]} {code(f.check_id)}{package}{where}: "
            f"{mrkdwn(f.title)}{due}"
        )
    return "\n".join(lines)


async def home_view(core: Core, user: str) -> dict[str, Any]:
    """The App Home tab: open findings of the teams the viewer approves or is on call for."""
    teams: tuple[str, ...] = ()
    for t in core.settings.teams:
        people = (*t.approvers, *((t.oncall,) if t.oncall else ()))
        if await core.permissions.is_listed(people, user):
            teams += (t.name,)
    found = await core.queries.open_findings(teams=teams or None, limit=40)
    title = ("Your teams: " + ", ".join(teams)) if teams else "All teams"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(title, 150)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(_lines(found, with_repo=True), 3000)},
        },
    ]
    return {"type": "home", "blocks": blocks}


SUBCOMMANDS = {
    "help": _help,
    "status": _status,
    "findings": _findings,
    "ignores": _ignores,
    "digest": _digest,
}
