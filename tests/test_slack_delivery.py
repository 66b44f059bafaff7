"""Delivering the outbox to Slack (the stand-in): once, in order, through 429, 500 and outages."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Slack as SlackSettings
from bot.infra.clock import SystemClock
from bot.infra.metrics import Metrics
from bot.slack.delivery import Delivery
from bot.slack.posters import DryRunPoster, WebApiPoster
from bot.store import outbox
from bot.store.db import Database
from tests.conftest import BOT_TOKEN, make_settings, slack_section
from tests.support.slack_standin import SlackStandIn


class Sleeps:
    """Records the pacing waits instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def delivery(
    db: Database, slack: SlackStandIn
) -> AsyncIterator[tuple[Delivery, Metrics, Sleeps]]:
    metrics, sleeps = Metrics(), Sleeps()
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[])
    settings = SlackSettings(channel_interval=1.0, retry_backoff=0.01)
    d = Delivery(
        db,
        WebApiPoster(client, metrics),
        settings,
        metrics,
        SystemClock(),
        asyncio.Event(),
        sleep=sleeps,
    )
    yield d, metrics, sleeps


async def _owe(db: Database, *keys: str, channel: str = "#team-a") -> None:
    async with db.transaction() as s:
        for key in keys:
            await outbox.enqueue(
                s,
                key=key,
                channel=channel,
                text=f"message {key}",
                blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": key}}],
                now=datetime.now(UTC),
            )


async def _drain(d: Delivery, rounds: int = 20) -> None:
    for _ in range(rounds):
        if not await d.run_once():
            await asyncio.sleep(0.02)
        async with d._db.transaction() as s:
            if await outbox.pending_count(s) == 0:
                return


async def _crash_before_recording(db: Database, key: str) -> None:
    """As if the process died after Slack took the message but before the bot recorded it."""
    async with db.transaction() as s:
        await s.execute(
            outbox.SlackMessage.__table__.update()
            .where(outbox.SlackMessage.key == key)
            .values(status="sending", ts=None, channel_id=None)
        )
        await outbox.mark_unsure(s)


def _posted_texts(slack: SlackStandIn) -> list[str]:
    return [c.args["text"] for c in slack.calls_to("chat.postMessage")]


async def test_messages_arrive_once_in_order_paced_per_channel(delivery, db, slack) -> None:  # type: ignore[no-untyped-def]
    d, _, sleeps = delivery
    await _owe(db, "a", "b", "c")
    await _owe(db, "x", channel="#other")
    await _drain(d)
    texts = _posted_texts(slack)
    assert [t for t in texts if t != "message x"] == ["message a", "message b", "message c"]
    assert texts.count("message x") == 1
    assert len(sleeps.waits) == 2 and all(0 < w <= 1.0 for w in sleeps.waits)


async def test_429_waits_retry_after_and_posts_once(delivery, db, slack) -> None:  # type: ignore[no-untyped-def]
    d, metrics, _ = delivery
    slack.fail_next("chat.postMessage", 429, retry_after=1)
    await _owe(db, "a", "b")
    assert await d.run_once()
    async with db.transaction() as s:
        [first, _second] = await outbox.due(s, datetime.now(UTC), timedelta(minutes=2))
    assert first.status == "pending" and "429" in (first.last_error or "")
    wait = (first.available_at - datetime.now(UTC)).total_seconds()
    assert 0.5 < wait <= 1.0
    assert _posted_texts(slack) == []  # "b" waits behind "a": order holds within a channel
    await asyncio.sleep(wait)
    await _drain(d)
    assert _posted_texts(slack) == ["message a", "message b"]
    assert metrics.slack_calls.labels("chat.postMessage", "429")._value.get() == 1


async def test_500_is_retried_with_backoff_and_not_doubled(delivery, db, slack) -> None:  # type: ignore[no-untyped-def]
    d, _, _ = delivery
    slack.fail_next("chat.postMessage", 500, times=2)
    await _owe(db, "a")
    await _drain(d, rounds=50)
    assert _posted_texts(slack) == ["message a"]
    assert len(slack.calls_to("chat.postMessage", ok_only=False)) == 3


async def test_slack_down_then_back_delivers_everything_once(delivery, db, slack) -> None:  # type: ignore[no-untyped-def]
    d, _, _ = delivery
    slack.go_down()
    await _owe(db, "a", "b")
    await d.run_once()
    assert _posted_texts(slack) == []
    slack.come_back()
    await _drain(d, rounds=50)
    assert _posted_texts(slack) == ["message a", "message b"]


async def test_unknown_channel_is_parked_not_retried_forever(delivery, db, slack) -> None:  # type: ignore[no-untyped-def]
    d, _, _ = delivery
    slack.fail_next("chat.postMessage", 200, error="channel_not_found")
    await _owe(db, "a")
    await d.run_once()
    async with db.transaction() as s:
        assert await outbox.pending_count(s) == 0
        assert await outbox.due(s, datetime.now(UTC), timedelta(0)) == []


async def test_post_that_reached_slack_before_a_crash_is_not_posted_again(
    delivery, db, slack
) -> None:  # type: ignore[no-untyped-def]
    d, _, _ = delivery
    await _owe(db, "warmup", "a")
    await _drain(d)
    [_, posted_a] = slack.calls_to("chat.postMessage")
    await _crash_before_recording(db, "a")
    await _drain(d)
    assert _posted_texts(slack) == ["message warmup", "message a"]
    async with db.transaction() as s:
        row = (
            await s.execute(
                outbox.SlackMessage.__table__.select().where(outbox.SlackMessage.key == "a")
            )
        ).one()
    assert row.status == "posted" and row.ts == posted_a.response["ts"]
    assert [c.method for c in slack.calls][-1] == "conversations.history"


async def test_first_post_to_a_channel_that_reached_slack_before_a_crash_is_not_posted_again(
    delivery, db, slack
) -> None:  # type: ignore[no-untyped-def]
    """No earlier post recorded the channel's id, so the bot asks Slack for it by name."""
    d, _, _ = delivery
    await _owe(db, "a")
    await _drain(d)
    await _crash_before_recording(db, "a")
    await _drain(d)
    assert _posted_texts(slack) == ["message a"]
    assert [c.method for c in slack.calls][-2:] == ["conversations.list", "conversations.history"]


async def test_post_answered_500_after_slack_took_it_is_not_posted_again(
    delivery, db, slack
) -> None:  # type: ignore[no-untyped-def]
    d, _, _ = delivery
    slack.fail_next("chat.postMessage", 502, after_doing=True)
    await _owe(db, "a", "b")
    await _drain(d, rounds=50)
    history = slack.messages.get(slack.channel_id("#team-a")) or []
    assert [m["text"] for m in history] == ["message a", "message b"]
    assert len(slack.calls_to("chat.postMessage", ok_only=False)) == 2
    assert "conversations.history" in [c.method for c in slack.calls]


async def test_unsure_post_that_never_reached_slack_is_posted(delivery, db, slack) -> None:  # type: ignore[no-untyped-def]
    d, _, _ = delivery
    await _owe(db, "warmup", "a")
    await d.run_once()  # posts "warmup" and "a"
    async with db.transaction() as s:
        await _owe(db, "b")
    async with db.transaction() as s:
        await s.execute(
            outbox.SlackMessage.__table__.update()
            .where(outbox.SlackMessage.key == "b")
            .values(status="unsure")
        )
    await _drain(d)
    assert _posted_texts(slack).count("message b") == 1


async def test_the_app_keeps_its_connection_to_slack_between_posts(
    app_client: Any, sqlite_url: str, slack: SlackStandIn
) -> None:
    """Against real Slack every new connection is a TLS handshake: one per post is slow."""
    settings = make_settings(sqlite_url, slack=slack_section(slack), worker={"concurrency": 0})
    _, runtime = await app_client(settings)
    await _owe(runtime.core.db, "a", "b", "c", "d", "e")
    await slack.wait_for("chat.postMessage", 5, timeout=10)
    assert _posted_texts(slack) == [f"message {k}" for k in "abcde"]
    assert slack.connections == 1


async def test_a_post_whose_connection_drops_after_slack_took_it_goes_out_once(
    app_client: Any, sqlite_url: str, slack: SlackStandIn
) -> None:
    """The SDK must not resend it blindly: the bot looks it up in the channel first."""
    slack.fail_next("chat.postMessage", 0, after_doing=True)
    settings = make_settings(sqlite_url, slack=slack_section(slack), worker={"concurrency": 0})
    _, runtime = await app_client(settings)
    await _owe(runtime.core.db, "a", "b")
    await slack.wait_for("chat.postMessage", 1, timeout=10)
    history = slack.messages.get(slack.channel_id("#team-a")) or []
    assert [m["text"] for m in history] == ["message a", "message b"]
    assert [c.status for c in slack.calls_to("chat.postMessage", ok_only=False)] == [0, 200]


def _dry_run(db: Database, out: io.StringIO) -> Delivery:
    return Delivery(
        db,
        DryRunPoster(out),
        SlackSettings(channel_interval=0),
        Metrics(),
        SystemClock(),
        asyncio.Event(),
    )


async def test_dry_run_prints_each_message(db: Database) -> None:
    out = io.StringIO()
    await _owe(db, "a")
    await _dry_run(db, out).run_once()
    record = json.loads(out.getvalue())
    assert record["dry_run"] is True and record["channel"] == "#team-a"
    assert record["text"] == "message a"


async def test_dry_run_prints_a_message_a_crash_left_unsure_and_warns_of_nothing(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """There is no Slack to look the message up in: no "not in conversations.list" warning."""
    out = io.StringIO()
    await _owe(db, "a")
    await _crash_before_recording(db, "a")
    with caplog.at_level(logging.WARNING):
        await _dry_run(db, out).run_once()
    assert json.loads(out.getvalue())["text"] == "message a"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
