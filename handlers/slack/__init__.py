"""Slack: the signed HTTP endpoint for Bolt, and the listeners registered on it.

The signature is checked on the raw bytes before anything parses them, so an unsigned body
can never reach a parser; a signed body Slack would never send is a 400, not a 500.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from urllib.parse import parse_qs

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

from bot.config import SlackMode
from bot.core import Core
from bot.infra.web import json_error
from handlers.slack import actions, commands

log = logging.getLogger(__name__)


def mount(app: web.Application, core: Core) -> None:
    bolt = core.bolt
    if bolt is not None:
        commands.register(bolt, core)
        actions.register(bolt, core)
    secret = core.settings.slack.signing_secret
    verifier = SignatureVerifier(secret.get_secret_value()) if secret else None
    verify = core.slack_mode is SlackMode.HTTP

    async def events(request: web.Request) -> web.Response:
        if bolt is None or (verify and verifier is None):
            return json_error(503, "Slack requests are not accepted: no signing secret configured")
        body = await request.read()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return json_error(400, "not UTF-8")
        if verify and verifier is not None and not signed(verifier, text, request.headers):
            return json_error(401, "invalid or stale Slack signature")
        if problem := shape_problem(text, request.content_type):
            return json_error(400, problem)
        return await _dispatch(bolt, request)

    app.router.add_post("/slack/events", events)


#: What Slack sends: a Unix time in seconds, and `v0=` with a hex HMAC-SHA256.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


def signed(verifier: SignatureVerifier, text: str, headers: Mapping[str, str]) -> bool:
    """Whether Slack signed this request, recently. Headers shaped unlike Slack's are simply
    unsigned: slack_sdk's verifier raises on them (`int("abc")`, `int()` of 5,000 digits,
    `hmac.compare_digest` of non-ASCII text), which would be a 500 and a logged traceback."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not (_TIMESTAMP.fullmatch(timestamp) and _SIGNATURE.fullmatch(signature)):
        return False
    try:
        return verifier.is_valid(text, timestamp, signature)
    except (ValueError, TypeError):
        return False


_NEEDS = {
    "block_actions": ("actions", list),
    "view_submission": ("view", dict),
    "view_closed": ("view", dict),
    "event_callback": ("event", dict),
}


def shape_problem(text: str, content_type: str) -> str | None:
    """What makes a (signed) body one Slack never sends, or None. Bolt assumes these shapes."""
    try:
        if content_type == "application/json":
            doc = json.loads(text)
        else:
            form = parse_qs(text)
            if "payload" not in form:
                return None  # a slash command: plain form fields
            doc = json.loads(form["payload"][0])
    except (ValueError, RecursionError):
        return "body is not JSON where Slack sends JSON"
    if not isinstance(doc, dict) or not isinstance(doc.get("type", ""), str):
        return "payload is not a Slack object"
    need = _NEEDS.get(doc.get("type", ""))
    if need and not (isinstance(doc.get(need[0]), need[1]) and doc.get(need[0])):
        return f"{doc['type']} without {need[0]}"
    if doc.get("type") == "block_actions" and not all(
        isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in doc["actions"]
    ):
        return "block_actions with malformed actions"  # Slack names each action's action_id
    for key in ("user", "team", "container", "view", "event", "state"):
        if key in doc and not isinstance(doc[key], dict):
            return f"{key} is not an object"
    for key in ("enterprise", "channel", "message"):  # Slack sends these as null at times
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            return f"{key} is not an object"
    if "actions" in doc and not isinstance(doc["actions"], list):
        return "actions is not a list"
    return None


async def _dispatch(bolt: AsyncApp, request: web.Request) -> web.Response:
    try:
        bolt_request = await to_bolt_request(request)
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        log.warning("signed Slack request Bolt could not handle: %s", type(exc).__name__)
        return json_error(400, "not a Slack payload this app understands")
