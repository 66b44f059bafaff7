"""Who may do what, per team: each action, tried by each role, through the signed Slack endpoint.

Two teams: team-a lists no members, so whoever is in #team-a may Patch and Ignore (read from
`conversations.members`, over more than one page); team-b lists a user and a user group, so its
channel does not count. Findings of a repository no team owns go to #fallback. Every attempt
clicks the buttons the bot posted; a refused click is followed by the submission a modal would
have sent, crafted, to show the submission is checked again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, true

import handlers
from bot.app import build, web_app
from bot.store import tracking
from bot.store.models import Alert, Suppression, TrackedFinding
from tests.conftest import WEBHOOK_SECRET, make_settings, slack_section
from tests.support.fake_registry import FakeRegistry
from tests.support.slack_standin import SlackStandIn
from tests.test_slack_decisions import AWS_KEY, Bot, Clock, button, choice, reason

OUTSIDER, LISTED, IN_GROUP, IN_CHANNEL = "UOUTSIDER1", "ULISTED1", "UINGROUP1", "UINCHANNEL1"
ON_CALL, APPROVER, GROUP_APPROVER, IN_FALLBACK = "UONCALL1", "UAPPROVER1", "UGAPPR1", "UFALLBK1"
#: #team-a has more members than one conversations.members page holds (the bot asks for 1,000).
CROWD = [f"UCROWD{i:05d}" for i in range(1500)]
#: Root, plus a live AWS key: a medium finding (runs-as-root), a critical one and an alert.
ALERTING = {"User": "", "Env": [f"AWS_ACCESS_KEY_ID={AWS_KEY}"]}

APPROVE, PATCH, IGNORE, IGNORE_TEAM_WIDE, IGNORE_UNTIL_FIXED, ACK = (
    "approve",
    "patch",
    "ignore this image for 7 days",
    "ignore team-wide",
    "ignore until a fix exists",
    "acknowledge",
)
#: In this order: a team-wide Ignore, taken last, cannot get in the way of another decision.
ACTIONS = (APPROVE, PATCH, IGNORE, IGNORE_UNTIL_FIXED, ACK, IGNORE_TEAM_WIDE)
EVERYTHING = frozenset(ACTIONS)
MEMBERS_MAY = frozenset({PATCH, IGNORE})

#: role -> (user, repository, the actions that user may take on that repository's findings)
ROLES: dict[str, tuple[str, str, frozenset[str]]] = {
    "workspace stranger": (OUTSIDER, "team-a/app", frozenset()),
    "member via the members list": (LISTED, "team-b/app", MEMBERS_MAY),
    "member via a user group in the list": (IN_GROUP, "team-b/app", MEMBERS_MAY),
    "member via channel membership": (IN_CHANNEL, "team-a/app", MEMBERS_MAY),
    "in the channel of a team that lists its members": (IN_CHANNEL, "team-b/app", frozenset()),
    "member of another team": (LISTED, "team-a/app", frozenset()),
    "on-call group member": (ON_CALL, "team-a/app", frozenset({ACK})),
    "approver": (APPROVER, "team-a/app", EVERYTHING),
    "approver via a user group": (GROUP_APPROVER, "team-b/app", EVERYTHING),
    "fallback channel member, unowned finding": (IN_FALLBACK, "misc/app", MEMBERS_MAY | {ACK}),
    "a team's approver, unowned finding": (APPROVER, "misc/app", frozenset()),
}
CHANNEL = {"team-a/app": "#team-a", "team-b/app": "#team-b", "misc/app": "#fallback"}
#: What a decision taken by each action is recorded as in the audit log.
RECORDED = {
    APPROVE: "approve",
    PATCH: "patch",
    IGNORE: "ignore",
    IGNORE_TEAM_WIDE: "ignore",
    IGNORE_UNTIL_FIXED: "ignore",
    ACK: "ack",
}
IGNORE_CHOICES = {
    IGNORE: ("image", "7"),
    IGNORE_TEAM_WIDE: ("vulnerability", "30"),
    IGNORE_UNTIL_FIXED: ("repository", "fix"),
}
#: A mention or channel link the bot may write; anything else in <…> would be a live injection.
SAFE_LINK = re.compile(r"<(@[UW][A-Z0-9]+|!subteam\^S[A-Z0-9]+|#C[A-Z0-9]+)>")


@pytest.fixture
async def pbot(aiohttp_client: Callable[..., Any], sqlite_url: str) -> AsyncIterator[Bot]:
    slack = SlackStandIn(
        epoch=time.time(),
        usergroups={"SDEVS": [IN_GROUP], "SAPPROVERS": [GROUP_APPROVER], "SONCALL1": [ON_CALL]},
        channel_members={
            "#team-a": [*CROWD, IN_CHANNEL],
            "#team-b": [IN_CHANNEL, OUTSIDER],
            "#fallback": [IN_FALLBACK],
        },
    )
    await slack.start()
    fake = FakeRegistry()
    await fake.start()
    clock = Clock()
    settings = make_settings(
        sqlite_url,
        slack=slack_section(slack),
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
                "approvers": [APPROVER],
                "oncall": "SONCALL1",
            },
            {
                "name": "team-b",
                "channel": "#team-b",
                "repositories": ["team-b/*"],
                "members": [LISTED, "SDEVS"],
                "approvers": ["SAPPROVERS"],
            },
        ],
    )
    runtime = build(settings, handlers.EDGES, clock=clock)
    client = await aiohttp_client(web_app(runtime))
    yield Bot(client, runtime, slack, fake, clock)
    await slack.stop()
    await fake.stop()


async def attempt(
    bot: Bot, action: str, user: str, channel: str, message: dict[str, Any] | None = None
) -> list[str]:
    """Take `action` as `user` the way Slack sends it: the click, then (for a modal) the
    submission of the modal that opened or, if none did, of a crafted one. Returns the errors
    the modal showed."""
    message = message or bot.message(channel)
    if action in (PATCH, ACK):
        button_id, check = (
            ("finding.patch", "runs-as-root") if action == PATCH else ("alert.ack", None)
        )
        resp = await bot.click(button_id, user, message, check, channel=channel)
        assert resp.status == 200
        return []
    kind = "approve" if action == APPROVE else "ignore"
    opened = len(bot.slack.calls_to("views.open"))
    resp = await bot.click(f"finding.{kind}", user, message, "runs-as-root", channel=channel)
    assert resp.status == 200
    values = reason("accepted for the test")
    if action == APPROVE:
        values |= choice("expiry", "30")
    else:
        scope, expiry = IGNORE_CHOICES[action]
        values |= choice("expiry", expiry) | {
            "scope": {"value": {"type": "radio_buttons", "selected_option": {"value": scope}}}
        }
    crafted = None
    if len(bot.slack.calls_to("views.open")) == opened:  # refused at the click: craft it
        crafted = json.dumps({"finding": int(button(message, f"finding.{kind}", "runs-as-root"))})
    resp = await bot.submit(f"decision.{kind}", user, values, metadata=crafted)
    assert resp.status == 200
    answer = await resp.json() if await resp.text() else {}
    return list((answer.get("errors") or {}).values())


async def told(bot: Bot, user: str) -> list[str]:
    return [
        c.args["text"] for c in bot.slack.calls_to("chat.postEphemeral") if c.args["user"] == user
    ]


@dataclass(frozen=True)
class Snapshot:
    audit: list[tuple[str, str]]
    changed: tuple[int, ...]  # suppressions, assigned findings, acknowledged alerts, redraws


async def snapshot(bot: Bot) -> Snapshot:
    async with bot.runtime.core.db.transaction() as s:
        audit = [(d.action, d.actor) for d in await tracking.decisions(s)]
        counts = [
            (await s.execute(select(func.count()).select_from(table).where(where))).scalar_one()
            for table, where in (
                (Suppression, true()),
                (TrackedFinding, TrackedFinding.assignee.is_not(None)),
                (Alert, Alert.acked_by.is_not(None)),
            )
        ]
    return Snapshot(audit, (*counts, len(bot.updates())))


def message_of(bot: Bot, channel: str, repository: str) -> dict[str, Any]:
    [message] = [
        m
        for m in bot.slack.messages[channel]
        if not m.get("thread_ts") and f"{repository}:1.0" in json.dumps(m["blocks"])
    ]
    return message


@pytest.mark.parametrize("role", list(ROLES))
async def test_each_role_may_take_exactly_its_actions(pbot: Bot, role: str) -> None:
    user, team_repository, allowed = ROLES[role]
    channel = CHANNEL[team_repository]
    # One image per action, so that no decision stands in the way of the next.
    for action in ACTIONS:
        await pbot.push(f"{team_repository}{ACTIONS.index(action)}", "1.0", ALERTING)
    await pbot.settle()

    outcomes: dict[str, str] = {}
    for action in ACTIONS:
        message = message_of(pbot, channel, f"{team_repository}{ACTIONS.index(action)}")
        before, ephemerals = await snapshot(pbot), len(await told(pbot, user))
        modal_errors = await attempt(pbot, action, user, channel, message)
        await pbot.settle()
        after = await snapshot(pbot)
        added = after.audit[len(before.audit) :]
        said = (await told(pbot, user))[ephemerals:] + modal_errors
        if added == [(RECORDED[action], user)] and not modal_errors:
            assert after.changed > before.changed  # taken, and the message redrawn
            outcomes[action] = "taken"
        elif added and set(added) == {("refused", user)}:
            # Nothing changed but the audit log, and the user was told who may.
            assert after.changed == before.changed
            assert said and all("only" in t.lower() or "nobody" in t for t in said), said
            for text in said:  # people and groups named only as well-formed mentions
                assert "<" not in SAFE_LINK.sub("", text), text
            outcomes[action] = "refused"
        else:
            outcomes[action] = f"unexpected: {added} {said}"
    assert outcomes == {a: "taken" if a in allowed else "refused" for a in ACTIONS}


async def test_a_refusal_names_who_may_as_mentions(pbot: Bot) -> None:
    await pbot.push("team-a/app", "1.0", ALERTING)
    await pbot.push("team-b/app", "1.0", ALERTING)
    await pbot.settle()
    await attempt(pbot, PATCH, OUTSIDER, "#team-b")
    await attempt(pbot, PATCH, OUTSIDER, "#team-a")
    await attempt(pbot, ACK, IN_CHANNEL, "#team-a")
    await attempt(pbot, APPROVE, LISTED, "#team-b")
    assert await told(pbot, OUTSIDER) == [
        "Only members of team team-b (<@ULISTED1>, <!subteam^SDEVS>) or its approvers may "
        "request patches for its findings.",
        "Only members of team team-a's channel #team-a or its approvers may request patches "
        "for its findings.",
    ]
    assert await told(pbot, IN_CHANNEL) == [
        "Only team team-a's on-call group (<!subteam^SONCALL1>) or its approvers "
        "(<@UAPPROVER1>) may acknowledge its alerts."
    ]
    assert await told(pbot, LISTED) == [
        "Only the approvers of team team-b (<!subteam^SAPPROVERS>) may accept the risk of its "
        "findings."
    ]


async def test_a_member_is_offered_only_the_narrow_ignore_and_an_approver_every_choice(
    pbot: Bot,
) -> None:
    await pbot.push("team-b/app", "1.0", ALERTING)
    await pbot.settle()

    def choices(view: dict[str, Any]) -> dict[str, list[str]]:
        return {
            b["block_id"]: [o["value"] for o in b["element"]["options"]]
            for b in view["blocks"]
            if b.get("block_id") in ("expiry", "scope")
        }

    for user in (LISTED, GROUP_APPROVER):
        await pbot.click(
            "finding.ignore", user, pbot.message("#team-b"), "runs-as-root", channel="#team-b"
        )
    member, approver = (c.args["view"] for c in pbot.slack.calls_to("views.open"))
    assert choices(member) == {"expiry": ["7", "30", "90"], "scope": ["image", "repository"]}
    assert choices(approver) == {
        "expiry": ["7", "30", "90", "fix"],
        "scope": ["image", "repository", "vulnerability"],
    }


async def test_a_submission_naming_another_teams_finding_is_refused(pbot: Bot) -> None:
    await pbot.push("team-a/app", "1.0", ALERTING)
    await pbot.push("team-b/app", "1.0", ALERTING)
    await pbot.settle()
    # LISTED may ignore team-b's finding, so the modal opens for it ...
    await pbot.click(
        "finding.ignore", LISTED, pbot.message("#team-b"), "runs-as-root", channel="#team-b"
    )
    [opened] = pbot.slack.calls_to("views.open")
    theirs = int(button(pbot.message("#team-a"), "finding.ignore", "runs-as-root"))
    assert json.loads(opened.args["view"]["private_metadata"]) != {"finding": theirs}
    # ... and its submission is replayed naming team-a's finding instead.
    values = (
        reason("not mine")
        | choice("expiry", "7")
        | {"scope": {"value": {"type": "radio_buttons", "selected_option": {"value": "image"}}}}
    )
    resp = await pbot.submit("decision.ignore", LISTED, values, json.dumps({"finding": theirs}))
    answer = await resp.json()
    assert answer["response_action"] == "errors"
    assert answer["errors"]["reason"] == (
        "Only members of team team-a's channel or its approvers may ignore its findings."
    )
    async with pbot.runtime.core.db.transaction() as s:
        [refused] = await tracking.decisions(s)
        assert (await s.execute(Suppression.__table__.select())).all() == []
    assert (refused.action, refused.actor, refused.finding_id) == ("refused", LISTED, theirs)
    assert json.loads(refused.details or "{}")["attempted"] == "ignore"


async def test_channel_membership_is_read_page_by_page_then_cached(pbot: Bot) -> None:
    await pbot.push("team-a/app", "1.0", ALERTING)
    await pbot.settle()
    await attempt(pbot, PATCH, IN_CHANNEL, "#team-a")  # the 1,501st member: on the second page
    await attempt(pbot, IGNORE, IN_CHANNEL, "#team-a")
    pages = pbot.slack.calls_to("conversations.members")
    assert len(pages) == 2 and pages[1].args["cursor"]
    async with pbot.runtime.core.db.transaction() as s:
        assert [d.action for d in await tracking.decisions(s)] == ["patch", "ignore"]


async def test_when_slack_cannot_say_who_is_in_the_channel_the_answer_is_no(pbot: Bot) -> None:
    await pbot.push("team-a/app", "1.0", ALERTING)
    await pbot.settle()
    pbot.slack.fail_next("conversations.members", 500)
    await attempt(pbot, PATCH, IN_CHANNEL, "#team-a")
    [refusal] = await told(pbot, IN_CHANNEL)
    assert refusal.startswith("Only members of team team-a's channel")
    # The failure was not remembered: the next click asks Slack again, and is let through.
    await attempt(pbot, PATCH, IN_CHANNEL, "#team-a")
    async with pbot.runtime.core.db.transaction() as s:
        assert [d.action for d in await tracking.decisions(s)] == ["refused", "patch"]


async def test_refused_attempts_stay_in_the_audit_log_not_in_the_message(pbot: Bot) -> None:
    await pbot.push("team-a/app", "1.0", ALERTING)
    await pbot.settle()
    await attempt(pbot, PATCH, OUTSIDER, "#team-a")
    await attempt(pbot, PATCH, IN_CHANNEL, "#team-a")
    await pbot.settle()
    shown = json.dumps(pbot.updates()[-1]["blocks"])
    assert f"Patch requested by <@{IN_CHANNEL}>" in shown
    assert "refused" not in shown and OUTSIDER not in shown
