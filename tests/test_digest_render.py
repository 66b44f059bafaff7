"""The digest message: within Slack's limits whatever its size, outside text escaped, trends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.digest.compute import (
    AgeBuckets,
    DecisionTaken,
    Digest,
    Offender,
    PeriodStats,
    SeverityStats,
    TeamDigest,
    WeeklyPoint,
    week_ends,
)
from bot.digest.render import DIGEST_FINDINGS, digest_message, digest_text, trend

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
EVIL = "<!channel> & <@U999>"


def stats(open_: int, breaches: int, resolved: int, mttr_days: float | None) -> PeriodStats:
    return PeriodStats(
        open_fixable=open_,
        open_breaches=breaches,
        buckets=AgeBuckets(open_),
        resolved=resolved,
        resolved_lag=(mttr_days or 0) * resolved * DAY,
        median_lag=None if mttr_days is None else mttr_days * DAY,
        p90_lag=None if mttr_days is None else 2 * mttr_days * DAY,
    )


def decision(n: int, team: str | None, **kw: Any) -> DecisionTaken:
    values: dict[str, Any] = {
        "id": n,
        "kind": "approve",
        "scope": "repository",
        "team": team,
        "registry": "local",
        "repository": f"{EVIL}/repo-{n}",
        "check_id": "CVE-2026-0001",
        "package": "openssl",
        "decided_by": "U123ABC",
        "reason": "see <https://x|y> " + "long " * 100,
        "created_at": NOW - DAY,
        "until": NOW + 30 * DAY,
        "until_fixed": False,
        "expired_at": None,
    }
    values.update(kw)
    return DecisionTaken(**values)


def team(name: str | None, *, offenders: int = 5, decisions: int = 3) -> TeamDigest:
    current, previous = stats(5, 2, 4, 5.5), stats(3, 3, 4, 6.0)
    return TeamDigest(
        team=name,
        severities=[
            SeverityStats("critical", 7, stats(2, 1, 1, 1.0), stats(1, 1, 2, 1.0)),
            SeverityStats("high", 30, stats(3, 1, 3, 7.0), stats(2, 2, 2, 8.0)),
            SeverityStats("medium", 90, PeriodStats(), PeriodStats()),
            SeverityStats("low", None, PeriodStats(), stats(1, 0, 0, None)),
        ],
        current=current,
        previous=previous,
        top_offenders=[
            Offender("local", f"{EVIL}/svc-{i}", 3, (10 - i) * DAY, 4 * DAY, "critical")
            for i in range(offenders)
        ],
        decisions=[decision(i, name) for i in range(decisions)],
    )


def big_digest(n: int = 200) -> Digest:
    teams = [team(f"team-{i:03d} {EVIL}") for i in range(n)]
    weekly = [WeeklyPoint(w, t.team, "high", 1) for w in week_ends(NOW) for t in teams]
    overall = team(None, decisions=n * 3)
    return Digest(NOW - 7 * DAY, NOW, teams, weekly, overall)


def texts(
    blocks: list[dict[str, Any]], kinds: tuple[str, ...] = ("mrkdwn", "plain_text")
) -> list[str]:
    """Every text object of these kinds in the blocks."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in kinds:
                found.append(node["text"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(blocks)
    return found


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b["accessory"] for b in blocks if b.get("accessory", {}).get("type") == "button"]


def test_trend_arrows() -> None:
    assert trend(5, 3) == "↑" and trend(3, 5) == "↓" and trend(4, 4) == "→"
    assert trend(2 * DAY, DAY) == "↑" and trend(DAY, 2 * DAY) == "↓"
    assert trend(None, DAY) == "" and trend(DAY, None) == ""


def test_limits_with_200_teams_and_their_offenders_and_decisions() -> None:
    d = big_digest(200)
    for scope in (None, d.teams[0].team, d.teams[-1].team):
        message = digest_message(d, scope)
        assert len(message.blocks) <= 50
        for block in message.blocks:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
            if block["type"] == "header":
                assert len(block["text"]["text"]) <= 150
        assert len(message.text) <= 3000
        assert len(buttons(message.blocks)) == 5
    overall = digest_message(d, None)
    body = "\n".join(texts(overall.blocks))
    assert "*Teams* (200)" in body and "more teams" in body
    assert "*Decisions taken* (600)" in body and "more decisions" in body


def test_outside_strings_are_escaped() -> None:
    d = big_digest(3)
    for scope in (None, d.teams[1].team):
        message = digest_message(d, scope)
        # Slack shows plain_text as it is; mrkdwn and the fallback would be parsed
        for text in [*texts(message.blocks, ("mrkdwn",)), message.text]:
            assert "<!channel>" not in text
            assert "<@U999>" not in text
            assert "<https://x|y>" not in text
        body = "\n".join(texts(message.blocks))
        assert "&lt;!channel&gt; &amp; &lt;@U999&gt;" in body
        assert "see &lt;https://x|y&gt;" in body
        assert "<@U123ABC>" in body  # a validated user id becomes a mention
    # team names are outside strings too, in the header (plain text) and the fallback
    message = digest_message(d, d.teams[0].team)
    assert message.blocks[0]["text"]["type"] == "plain_text"
    assert "&lt;!channel&gt;" in message.text


def test_offender_buttons_carry_the_repository() -> None:
    d = big_digest(2)
    message = digest_message(d, d.teams[0].team)
    found = buttons(message.blocks)
    assert [b["action_id"] for b in found] == [DIGEST_FINDINGS] * 5
    assert [b["value"] for b in found] == [f"{EVIL}/svc-{i}" for i in range(5)]
    long = Offender("local", "r" * 2500, 1, DAY, DAY, "high")
    t = TeamDigest("x", [], PeriodStats(), PeriodStats(), top_offenders=[long])
    message = digest_message(Digest(NOW - 7 * DAY, NOW, [t], [], t), "x")
    [button] = buttons(message.blocks)
    assert len(button["value"]) <= 2000


def test_headline_table_and_trends() -> None:
    d = big_digest(1)
    message = digest_message(d, d.teams[0].team)
    head = message.blocks[1]["text"]["text"]
    assert "*Open fixable* 5 ↑ (was 3)" in head
    assert "*SLA breaches* 2 ↓ (was 3;" in head
    assert "*Resolved* 4 → (was 4)" in head
    assert "*MTTR* 5.5d ↓ (was 6.0d)" in head
    table = message.blocks[2]["text"]["text"]
    assert table.startswith("```") and table.endswith("```")
    lines = table.strip("`").splitlines()
    assert lines[0].split() == [
        "severity",
        "SLA",
        "open",
        "breaches",
        "resolved",
        "median",
        "p90",
        "MTTR",
    ]
    assert lines[1].split() == [
        "critical",
        "7d",
        "2",
        "↑",
        "1",
        "→",
        "1",
        "↓",
        "1.0d",
        "2.0d",
        "1.0d",
        "→",
    ]
    assert lines[2].split() == [
        "high",
        "30d",
        "3",
        "↑",
        "1",
        "↓",
        "3",
        "↑",
        "7.0d",
        "14.0d",
        "7.0d",
        "↓",
    ]
    # medium has nothing in either period; low had one open before
    assert lines[3].split()[:4] == ["low", "-", "0", "↓"]
    assert not any(line.startswith("medium") for line in lines)
    assert "open by age" in table and "≥90d" in table
    assert "↑" in message.text and "5 open fixable" in message.text


def test_decisions_show_who_what_and_until_when() -> None:
    t = team("payments", offenders=0, decisions=0)
    t = TeamDigest(
        t.team,
        t.severities,
        t.current,
        t.previous,
        decisions=[
            decision(1, "payments", reason="short"),
            decision(2, "payments", kind="ignore", until=None, until_fixed=True),
            decision(
                3, "payments", kind="ignore", scope="vulnerability", repository=None, until=None
            ),
            decision(4, "payments", until=NOW - DAY, expired_at=NOW - DAY),
        ],
    )
    d = Digest(NOW - 7 * DAY, NOW, [t], [], t)
    body = "\n".join(texts(digest_message(d, "payments").blocks))
    stamp = int((NOW + 30 * DAY).timestamp())
    assert ":ok: *Approved* by <@U123ABC>: `CVE-2026-0001 openssl` in `local/" in body
    assert f"until <!date^{stamp}^" in body
    assert ":zzz: *Ignored* by <@U123ABC>" in body and "until a fix exists" in body
    assert "team-wide, no expiry" in body
    assert "(expired <!date^" in body
    assert "*Top offenders*" not in body
    text = digest_text(d)
    assert "Approved by U123ABC" in text and "until a fix exists" in text
    assert f"until {(NOW + 30 * DAY):%Y-%m-%d %H:%M} UTC" in text


def test_unknown_team_and_empty_digest() -> None:
    empty = TeamDigest(None, [], PeriodStats(), PeriodStats())
    d = Digest(NOW - 7 * DAY, NOW, [], [], empty)
    for scope in (None, "nobody"):
        message = digest_message(d, scope)
        body = "\n".join(texts(message.blocks))
        assert "No fixable findings" in body and "*Decisions taken* (0)\nNone." in body
        assert len(json.dumps(message.blocks)) < 10_000


def test_plain_text_for_dry_run() -> None:
    d = big_digest(2)
    text = digest_text(d)
    assert text.startswith("Patch-lag digest: all teams, 24 Nov \u2013 1 Dec 2026\n")
    assert f"Team team-000 {EVIL}" in text  # plain text: nothing to escape for a terminal
    assert text.count("Top offenders") == 3
    assert "critical  7d   2 ↑" in text


def test_plain_text_drops_control_characters() -> None:
    t = team("evil\x1b[2J\nteam", offenders=1, decisions=1)
    d = Digest(NOW - 7 * DAY, NOW, [t], [], t)
    text = digest_text(d)
    assert "\x1b" not in text and "Team evil [2J team\n" in text
