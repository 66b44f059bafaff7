"""Slack buttons and modals → decisions. No rules here: the core re-reads and checks everything.

Button values only point at a finding or message; `bot.findings.decisions` re-reads it, checks the
clicker, and decides. A refusal is an ephemeral message to the clicker (or an error in the
modal), and nothing changes. Who may is checked twice for Approve and Ignore: at the click
(before a modal opens) and again at the submission, which names its finding only through
`private_metadata` and its scope through the submitted values, both of which a signed but
crafted submission can set to anything.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Core
from bot.findings.authz import Action
from bot.findings.decisions import Outcome
from bot.slack import render
from bot.slack.ids import INPUT_VALUE, ActionId, CallbackId, InputId

log = logging.getLogger(__name__)


def register(app: AsyncApp, core: Core) -> None:
    async def approve(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await _open_decision_modal(Action.APPROVE, body, client, core)

    async def ignore(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await _open_decision_modal(Action.IGNORE, body, client, core)

    async def patch(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        finding_id = _int(_action(body).get("value"))
        user = _user(body)
        outcome = (
            await core.decisions.patch(finding_id, user)
            if finding_id is not None and user
            else Outcome(False, "This button is not valid any more.")
        )
        await _tell(client, body, outcome.message)

    async def acknowledge(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        message_id = _int(_action(body).get("value"))
        user = _user(body)
        outcome = (
            await core.decisions.ack(message_id, user)
            if message_id is not None and user
            else Outcome(False, "This button is not valid any more.")
        )
        await _tell(client, body, outcome.message)

    async def show_all(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        message_id = _int(_action(body).get("value"))
        view = await core.decisions.all_findings(message_id) if message_id is not None else None
        if view is None:
            await _tell(client, body, "These findings are not available any more.")
            return
        await _call(client.views_open(trigger_id=body["trigger_id"], view=view))

    async def submit_approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        values, meta, user = _submission(body)
        outcome = await core.decisions.approve(
            meta.get("finding", -1),
            user,
            _text(values, InputId.REASON),
            _choice(values, InputId.EXPIRY),
        )
        await _answer_modal(ack, outcome)

    async def submit_ignore(ack: AsyncAck, body: dict[str, Any]) -> None:
        values, meta, user = _submission(body)
        outcome = await core.decisions.ignore(
            meta.get("finding", -1),
            user,
            _text(values, InputId.REASON),
            _choice(values, InputId.EXPIRY) or "",
            _choice(values, InputId.SCOPE) or "",
        )
        await _answer_modal(ack, outcome)

    app.action(ActionId.APPROVE)(approve)
    app.action(ActionId.IGNORE)(ignore)
    app.action(ActionId.PATCH)(patch)
    app.action(ActionId.ACK)(acknowledge)
    app.action(ActionId.SHOW_ALL)(show_all)
    app.view(CallbackId.APPROVE)(submit_approve)
    app.view(CallbackId.IGNORE)(submit_ignore)


async def _open_decision_modal(
    action: Action, body: dict[str, Any], client: AsyncWebClient, core: Core
) -> None:
    """Open the modal for someone who may take `action` (for Ignore: at least the narrow one;
    the team-wide and until-fixed choices are offered to those who may take them)."""
    finding_id = _int(_action(body).get("value"))
    user = _user(body)
    if finding_id is None or not user:
        await _tell(client, body, "This button is not valid any more.")
        return
    allowed = await core.decisions.may_decide(finding_id, user, action)
    finding = await core.decisions.finding(finding_id) if allowed.ok else None
    if finding is None:
        await _tell(client, body, allowed.message or "This finding no longer exists.")
        return
    wide = action is Action.APPROVE or await core.decisions.may(
        finding_id, user, Action.IGNORE_WIDE
    )
    meta = render.metadata(finding=finding_id)
    kind = "approve" if action is Action.APPROVE else "ignore"
    view = render.decision_modal(kind, finding, meta, wide=wide)
    await _call(client.views_open(trigger_id=body["trigger_id"], view=view))


async def _answer_modal(ack: AsyncAck, outcome: Outcome) -> None:
    if outcome.ok:
        await ack()
    else:
        await ack(response_action="errors", errors={InputId.REASON: outcome.modal_error[:150]})


async def _tell(client: AsyncWebClient, body: dict[str, Any], text: str) -> None:
    """An ephemeral answer to whoever clicked, in the channel of the message."""
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    if channel and text:
        await _call(client.chat_postEphemeral(channel=channel, user=_user(body), text=text))


async def _call(request: Any) -> None:
    try:
        await request
    except SlackApiError as exc:
        log.warning("slack answered %s to an interaction reply", exc.response.get("error"))


def _action(body: dict[str, Any]) -> dict[str, Any]:
    actions = body.get("actions") or [{}]
    return actions[0] if isinstance(actions[0], dict) else {}


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")


def _int(value: Any) -> int | None:
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if 0 < number < 2**62 else None


def _submission(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int], str]:
    view = body.get("view") or {}
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        meta = {}
    finding = _int(meta.get("finding")) if isinstance(meta, dict) else None
    values = (view.get("state") or {}).get("values") or {}
    return values, {"finding": finding or -1}, _user(body)


def _text(values: dict[str, Any], block: str) -> str:
    return str(((values.get(block) or {}).get(INPUT_VALUE) or {}).get("value") or "")


def _choice(values: dict[str, Any], block: str) -> str | None:
    element = (values.get(block) or {}).get(INPUT_VALUE) or {}
    selected = element.get("selected_option") or {}
    value = selected.get("value")
    return str(value) if value else None
