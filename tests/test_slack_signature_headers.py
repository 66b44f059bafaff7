"""`/slack/events` headers shaped unlike Slack's are an unsigned request: 401, never a 500.

slack_sdk's `SignatureVerifier` raises on a timestamp `int()` cannot read (`abc`, `1e3`, 5,000
digits) and on a non-ASCII signature (`hmac.compare_digest` of text); either was a 500 with a
logged traceback for anyone who sent it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import handlers
from bot.app import build, web_app
from tests.conftest import SIGNING_SECRET, make_settings, slack_section
from tests.support.slack_standin import SlackStandIn, signed_headers, slash_command_body


@pytest.fixture
async def slack_app(aiohttp_client: Callable[..., Any], sqlite_url: str) -> AsyncIterator[Any]:
    standin = SlackStandIn(epoch=time.time())
    await standin.start()
    settings = make_settings(sqlite_url, slack=slack_section(standin), worker={"concurrency": 0})
    yield await aiohttp_client(web_app(build(settings, handlers.EDGES)))
    await standin.stop()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Slack-Request-Timestamp": "abc"}, id="letters"),
        pytest.param({"X-Slack-Request-Timestamp": "1e3"}, id="exponent"),
        pytest.param({"X-Slack-Request-Timestamp": "9" * 5000}, id="5000-digits"),
        pytest.param({"X-Slack-Request-Timestamp": "-1"}, id="negative"),
        pytest.param({"X-Slack-Request-Timestamp": ""}, id="empty"),
        pytest.param({"X-Slack-Signature": "v0=" + "é" * 64}, id="non-ascii-signature"),
        pytest.param({"X-Slack-Signature": "v0=" + "0" * 5000}, id="long-signature"),
    ],
)
async def test_malformed_slack_signature_headers_are_401_without_a_traceback(
    slack_app: Any, caplog: pytest.LogCaptureFixture, headers: dict[str, str]
) -> None:
    body = slash_command_body(command="/crowsnest", text="help", user_id="UOTHER1", channel_id="C1")
    sent = {**signed_headers(body, SIGNING_SECRET), **headers}
    with caplog.at_level(logging.WARNING):
        resp = await slack_app.post("/slack/events", data=body, headers=sent)
    assert resp.status == 401, await resp.text()
    assert "error" in await resp.json()
    assert not [r for r in caplog.records if r.exc_info], caplog.text


async def test_a_well_signed_slack_request_is_still_heard(slack_app: Any) -> None:
    body = slash_command_body(command="/crowsnest", text="help", user_id="UOTHER1", channel_id="C1")
    resp = await slack_app.post(
        "/slack/events", data=body, headers=signed_headers(body, SIGNING_SECRET)
    )
    assert resp.status == 200
