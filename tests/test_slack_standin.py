"""The Slack stand-in, driven by the real slack_sdk AsyncWebClient (and once by bolt)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import AsyncIterator, Sequence
from urllib.parse import parse_qs

import aiohttp
import pytest
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.slack_standin import (
    BOT_USER_ID,
    UPLOAD_METHOD,
    SlackStandIn,
    block_actions_body,
    signed_headers,
    slash_command_body,
    view_submission_body,
)

TOKEN = "xoxb-standin-test"
SIGNING_SECRET = "standin-signing-secret"
METADATA = {"event_type": "finding_posted", "event_payload": {"finding_id": "F-1", "sev": "high"}}
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*CVE-2024-0001* in `web:1.2`"}}]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk reads HTTPS_PROXY/HTTP_PROXY itself and ignores NO_PROXY, so a proxied CI
    # runner would send 127.0.0.1 traffic to the proxy.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def standin() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn(
        bot_token=TOKEN, users={"U0ALICE": "alice"}, usergroups={"S0SECOPS": ["U0ALICE"]}
    ) as server:
        yield server


def client_for(standin: SlackStandIn, **kwargs: object) -> AsyncWebClient:
    kwargs.setdefault("retry_handlers", [])
    return AsyncWebClient(token=TOKEN, base_url=standin.api_url, **kwargs)  # type: ignore[arg-type]


async def test_post_message_then_history_with_metadata(standin: SlackStandIn) -> None:
    client = client_for(standin)
    first = await client.chat_postMessage(
        channel="#alerts", text="finding", blocks=BLOCKS, metadata=METADATA
    )
    channel = first["channel"]
    assert re.fullmatch(r"C[0-9A-F]+", channel) and channel == standin.channel_id("#alerts")
    assert re.fullmatch(r"\d{10}\.\d{6}", first["ts"])
    assert abs(float(first["ts"]) - time.time()) < 60  # wall-clock timestamps by default
    assert first["message"]["metadata"] == METADATA
    second = await client.chat_postMessage(channel=channel, text="second")
    assert float(second["ts"]) > float(first["ts"])
    assert standin.messages["#alerts"] is standin.messages[channel]
    stored = standin.messages[channel][0]
    assert stored["user"] == BOT_USER_ID and stored["bot_id"]
    assert stored["blocks"][0]["block_id"]  # Slack fills in block_ids

    history = await client.conversations_history(
        channel=channel, oldest=f"{time.time() - 60:.6f}", include_all_metadata=True
    )
    assert [m["ts"] for m in history["messages"]] == [second["ts"], first["ts"]]
    assert history["messages"][1]["metadata"] == METADATA
    plain = await client.conversations_history(channel=channel, limit=1)
    assert plain["has_more"] is True and "metadata" not in plain["messages"][0]
    older = await client.conversations_history(
        channel=channel, cursor=plain["response_metadata"]["next_cursor"]
    )
    assert [m["ts"] for m in older["messages"]] == [first["ts"]]
    assert "metadata" not in older["messages"][0]

    post = standin.calls_to("chat.postMessage")[0]
    assert post.token == TOKEN and post.content_type == "application/json"
    assert post.args["metadata"] == METADATA
    history_call = standin.calls_to("conversations.history")[0]
    assert history_call.http_verb == "GET" and history_call.args["include_all_metadata"] == "1"


async def test_fixed_epoch_gives_deterministic_timestamps() -> None:
    async with SlackStandIn(bot_token=TOKEN, epoch=1_700_000_000) as standin:
        client = client_for(standin)
        stamps = [(await client.chat_postMessage(channel="#a", text="x"))["ts"] for _ in "12"]
        assert stamps == ["1700000000.000100", "1700000000.000200"]


async def test_json_body_is_ignored_where_slack_ignores_it(standin: SlackStandIn) -> None:
    client = client_for(standin)
    channel = (await client.chat_postMessage(channel="#alerts", text="x"))["channel"]
    with pytest.raises(SlackApiError) as failed:
        # conversations.history reads form/query arguments only; slack_sdk sends it as a GET.
        await client.api_call("conversations.history", json={"channel": channel})
    assert failed.value.response["error"] == "invalid_arguments"
    call = standin.calls_to("conversations.history", ok_only=False)[0]
    assert call.args == {} and call.ignored_json == {"channel": channel}
    history = await client.api_call("conversations.history", params={"channel": channel})
    assert len(history["messages"]) == 1


async def test_update_threads_and_channel_ids(standin: SlackStandIn) -> None:
    client = client_for(standin)
    parent = await client.chat_postMessage(channel="#alerts", text="scan started")
    channel = parent["channel"]
    await client.chat_postMessage(channel=channel, text="detail", thread_ts=parent["ts"])
    updated = await client.chat_update(channel=channel, ts=parent["ts"], text="scan done")
    assert updated["message"]["edited"]["user"] == BOT_USER_ID
    assert [m["text"] for m in standin.messages[channel]] == ["scan done", "detail"]

    history = await client.conversations_history(channel=channel)
    assert [m["text"] for m in history["messages"]] == ["scan done"]  # replies stay in threads
    assert history["messages"][0]["reply_count"] == 1
    replies = await client.conversations_replies(channel=channel, ts=parent["ts"])
    assert [m["text"] for m in replies["messages"]] == ["scan done", "detail"]

    for call in (
        client.chat_update(channel=channel, ts="1.000001", text="x"),
        client.chat_update(channel="#alerts", ts=parent["ts"], text="x"),
        client.conversations_history(channel="#alerts"),
    ):
        with pytest.raises(SlackApiError) as failed:
            await call
        assert failed.value.response["error"] in {"message_not_found", "channel_not_found"}
        assert failed.value.response.status_code == 200

    await client.reactions_add(channel=channel, timestamp=parent["ts"], name="eyes")
    assert standin.messages[channel][0]["reactions"][0]["name"] == "eyes"
    link = await client.chat_getPermalink(channel=channel, message_ts=parent["ts"])
    assert link["permalink"].endswith(f"/archives/{channel}/p{parent['ts'].replace('.', '')}")


async def test_rate_limited_then_retried(
    standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handler sleeps Retry-After plus random() seconds; pin the jitter to keep this at 1 s.
    monkeypatch.setattr(random, "random", lambda: 0.0)
    standin.fail_next("chat.postMessage", 429, retry_after=1)
    retry = AsyncRateLimitErrorRetryHandler(max_retry_count=1)
    client = client_for(standin, retry_handlers=[retry])
    started = time.monotonic()
    response = await client.chat_postMessage(channel="#alerts", text="hi")
    assert time.monotonic() - started >= 1.0
    assert response["ok"]
    calls = standin.calls_to("chat.postMessage", ok_only=False)
    assert [(c.status, c.ok) for c in calls] == [(429, False), (200, True)]
    assert calls[0].response == {"ok": False, "error": "ratelimited"}
    assert calls[0].args == calls[1].args
    assert len(standin.messages["#alerts"]) == 1


async def test_server_error_then_retried(standin: SlackStandIn) -> None:
    standin.fail_next("auth.test", 500)
    plain = client_for(standin)
    with pytest.raises(SlackApiError) as failed:
        await plain.auth_test()
    assert failed.value.response.status_code == 500
    assert failed.value.response["error"] == "internal_error"

    standin.fail_next("auth.test", 500)
    retrying = client_for(
        standin,
        retry_handlers=[
            AsyncServerErrorRetryHandler(
                max_retry_count=1, interval_calculator=FixedValueRetryIntervalCalculator(0.01)
            )
        ],
    )
    response = await retrying.auth_test()
    assert response["user_id"] == BOT_USER_ID
    assert [c.status for c in standin.calls_to("auth.test", ok_only=False)] == [500, 500, 200]


async def test_fail_next_with_slack_error(standin: SlackStandIn) -> None:
    standin.fail_next("chat.postMessage", 200, error="channel_not_found", times=2)
    client = client_for(standin)
    for _ in range(2):
        with pytest.raises(SlackApiError) as failed:
            await client.chat_postMessage(channel="#gone", text="x")
        assert failed.value.response["error"] == "channel_not_found"
    await client.chat_postMessage(channel="#gone", text="x")
    assert len(standin.calls_to("chat.postMessage")) == 1
    assert len(standin.calls_to("chat.postMessage", ok_only=False)) == 3


async def test_go_down_and_come_back(standin: SlackStandIn) -> None:
    connection_retry = AsyncConnectionErrorRetryHandler(
        max_retry_count=1, interval_calculator=FixedValueRetryIntervalCalculator(0.01)
    )
    async with aiohttp.ClientSession() as session:
        # A shared session keeps a pooled keep-alive connection, as a long-running bot does.
        pooled = client_for(standin, session=session, retry_handlers=[connection_retry])
        fresh = client_for(standin)
        await pooled.auth_test()

        standin.go_down()
        for client in (pooled, fresh):
            with pytest.raises(aiohttp.ClientConnectionError):
                await client.auth_test()
        assert len(standin.calls_to("auth.test", ok_only=False)) == 1  # nothing got through

        standin.come_back()
        assert (await fresh.auth_test())["ok"]
        assert (await pooled.auth_test())["ok"]
    assert len(standin.calls_to("auth.test")) == 3


async def test_auth_and_unknown_method(standin: SlackStandIn) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=standin.api_url, retry_handlers=[])
    with pytest.raises(SlackApiError) as failed:
        await wrong.chat_postMessage(channel="#alerts", text="x")
    assert failed.value.response.status_code == 200
    assert failed.value.response["error"] == "invalid_auth"
    assert failed.value.response.headers["Content-Type"] == "application/json; charset=utf-8"

    with pytest.raises(SlackApiError) as failed:
        await client_for(standin).api_call("admin.apps.approve")
    assert failed.value.response["error"] == "unknown_method"
    assert not standin.messages["#alerts"]


async def test_form_encoded_call_with_token_in_body(standin: SlackStandIn) -> None:
    tokenless = AsyncWebClient(base_url=standin.api_url, retry_handlers=[])
    response = await tokenless.api_call(
        "chat.postMessage",
        data={
            "token": TOKEN,
            "channel": "#alerts",
            "text": "[ALERT] form",
            "blocks": json.dumps(BLOCKS),
            "metadata": json.dumps(METADATA),
        },
    )
    call = standin.calls_to("chat.postMessage")[0]
    assert call.content_type == "application/x-www-form-urlencoded" and call.token == TOKEN
    assert call.args["blocks"] == BLOCKS and call.args["metadata"] == METADATA
    assert call.args["text"] == "[ALERT] form"
    assert standin.messages[response["channel"]][0]["metadata"] == METADATA


async def test_conversations_members_pages_with_a_cursor_as_slack_does() -> None:
    people = [f"U{i:04d}X" for i in range(250)]
    async with SlackStandIn(bot_token=TOKEN, channel_members={"#payments": people}) as standin:
        client = client_for(standin)
        channel = standin.channel_id("#payments")
        first = await client.conversations_members(channel=channel, limit=200)
        cursor = first["response_metadata"]["next_cursor"]
        assert first["members"] == people[:200] and cursor
        rest = await client.conversations_members(channel=channel, limit=200, cursor=cursor)
        assert rest["members"] == people[200:] and rest["response_metadata"]["next_cursor"] == ""
        listed = await client.conversations_list(types="public_channel,private_channel")
        assert [c["name"] for c in listed["channels"]] == ["payments"]
        for wrong, error in (("#payments", "channel_not_found"), ("C0NOPE", "channel_not_found")):
            with pytest.raises(SlackApiError) as failed:
                await client.conversations_members(channel=wrong)
            assert failed.value.response["error"] == error
        with pytest.raises(SlackApiError) as failed:
            await client.conversations_members(channel=channel, cursor="bm9wZQ==")
        assert failed.value.response["error"] == "invalid_cursor"


async def test_users_groups_views_and_ephemeral(standin: SlackStandIn) -> None:
    client = client_for(standin)
    assert (await client.users_info(user="U0ALICE"))["user"]["name"] == "alice"
    assert (await client.usergroups_users_list(usergroup="S0SECOPS"))["users"] == ["U0ALICE"]
    with pytest.raises(SlackApiError) as failed:
        await client.usergroups_users_list(usergroup="S0NOPE")
    assert failed.value.response["error"] == "no_such_subteam"

    modal = {
        "type": "modal",
        "callback_id": "triage",
        "private_metadata": "F-1",
        "title": {"type": "plain_text", "text": "Triage"},
        "blocks": BLOCKS,
    }
    opened = await client.views_open(trigger_id="123.456", view=modal)
    view_id = opened["view"]["id"]
    assert view_id.startswith("V") and opened["view"]["private_metadata"] == "F-1"
    updated = await client.views_update(
        view_id=view_id, hash=opened["view"]["hash"], view={**modal, "private_metadata": "F-2"}
    )
    assert updated["view"]["id"] == view_id and standin.views[view_id]["private_metadata"] == "F-2"
    pushed = await client.views_push(trigger_id="123.457", view=modal)
    assert pushed["view"]["root_view_id"] == view_id
    with pytest.raises(SlackApiError) as failed:
        await client.views_open(
            trigger_id="1.2",
            view={**modal, "title": {"type": "plain_text", "text": "A title that is far too long"}},
        )
    assert failed.value.response["error"] == "invalid_arguments"

    ephemeral = await client.chat_postEphemeral(channel="#alerts", user="U0ALICE", text="psst")
    assert ephemeral["message_ts"]
    assert not standin.messages["#alerts"]


async def test_files_upload_v2_round_trip(standin: SlackStandIn) -> None:
    client = client_for(standin)
    parent = await client.chat_postMessage(channel="#alerts", text="report follows")
    payload = b'{"findings": []}\n' * 100
    response = await client.files_upload_v2(
        channel=parent["channel"],
        thread_ts=parent["ts"],
        content=payload,
        filename="report.json",
        title="Scan report",
        initial_comment="full report",
    )
    file_id = response["file"]["id"]
    assert standin.files[file_id] == payload
    assert response["file"]["size"] == len(payload) and response["file"]["title"] == "Scan report"
    assert standin.uploads == [
        {
            "files": [file_id],
            "channel_id": parent["channel"],
            "channels": None,
            "thread_ts": parent["ts"],
            "initial_comment": "full report",
        }
    ]
    upload = standin.calls_to(UPLOAD_METHOD)[0]
    assert upload.token is None and upload.args == {"file_id": file_id, "length": len(payload)}
    assert [c.method for c in standin.calls] == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        UPLOAD_METHOD,
        "files.completeUploadExternal",
    ]


async def test_wait_for_background_calls(standin: SlackStandIn) -> None:
    client = client_for(standin)

    async def later() -> None:
        await asyncio.sleep(0.05)
        await client.chat_postMessage(channel="#alerts", text="one")
        await client.chat_postMessage(channel="#alerts", text="two")

    task = asyncio.create_task(later())
    calls = await standin.wait_for("chat.postMessage", count=2, timeout=2)
    assert [c.args["text"] for c in calls] == ["one", "two"]
    await task
    with pytest.raises(TimeoutError, match=r"views\.open"):
        await standin.wait_for("views.open", timeout=0.05)


def test_signed_headers_verify() -> None:
    body = slash_command_body(command="/crow", text="status", user_id="U0ALICE", channel_id="C1")
    headers = signed_headers(body, SIGNING_SECRET)
    verifier = SignatureVerifier(SIGNING_SECRET)
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"&x=1", headers)
    assert not SignatureVerifier("other-secret").is_valid_request(body, headers)
    stale = signed_headers(body, SIGNING_SECRET, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, stale)
    assert parse_qs(body.decode())["command"] == ["/crow"]


async def test_bolt_accepts_the_request_helpers(standin: SlackStandIn) -> None:
    client = client_for(standin)
    posted = await client.chat_postMessage(channel="#alerts", text="finding", blocks=BLOCKS)
    message = standin.messages[posted["channel"]][0]
    app = AsyncApp(client=client, signing_secret=SIGNING_SECRET)
    seen: list[str] = []

    @app.action("ack_finding")
    async def on_ack(ack, body, client) -> None:  # type: ignore[no-untyped-def]
        await ack()
        seen.append(body["actions"][0]["value"])
        await client.chat_update(
            channel=body["container"]["channel_id"],
            ts=body["container"]["message_ts"],
            text="acknowledged",
        )

    @app.view("triage")
    async def on_submit(ack, view) -> None:  # type: ignore[no-untyped-def]
        await ack()
        seen.append(view["state"]["values"]["note"]["text"]["value"] + view["private_metadata"])

    @app.command("/crow")
    async def on_command(ack, command) -> None:  # type: ignore[no-untyped-def]
        await ack()
        seen.append(command["text"])

    bodies = [
        block_actions_body(
            action_id="ack_finding",
            value="F-1",
            user_id="U0ALICE",
            channel=posted["channel"],
            message_ts=posted["ts"],
            message=message,
        ),
        view_submission_body(
            callback_id="triage",
            private_metadata="@F-1",
            user_id="U0ALICE",
            values={"note": {"text": {"type": "plain_text_input", "value": "fp"}}},
        ),
        slash_command_body(command="/crow", text="status", user_id="U0ALICE", channel_id="C1"),
    ]
    for body in bodies:
        headers: dict[str, str | Sequence[str]] = {**signed_headers(body, SIGNING_SECRET)}
        request = AsyncBoltRequest(body=body.decode(), headers=headers)
        response = await app.async_dispatch(request)
        assert response.status == 200, response.body
    assert seen == ["F-1", "fp@F-1", "status"]
    assert standin.messages[posted["channel"]][0]["text"] == "acknowledged"
    assert standin.calls_to("auth.test")  # bolt checked the token against the stand-in
