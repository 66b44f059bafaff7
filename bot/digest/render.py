"""The patch-lag digest as Block Kit, and as plain text for `--dry-run`. Pure: data in, text out.

Every outside string (team, registry and repository names, check ids, packages, reasons) goes
through `escape.mrkdwn` or `escape.code`; sizes stay within Slack's limits (50 blocks, 3,000
characters a section) however many teams, offenders or decisions there are.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.digest.compute import (
    BUCKET_LABELS,
    DecisionTaken,
    Digest,
    Offender,
    PeriodStats,
    SeverityStats,
    TeamDigest,
)
from bot.slack.escape import code, mrkdwn, truncate
from bot.slack.render import (
    BUTTON_VALUE_LIMIT,
    FALLBACK_LIMIT,
    HEADER_LIMIT,
    MAX_BLOCKS,
    SECTION_LIMIT,
    Message,
    user,
    when,
)

#: The button on each top offender; its value is the repository. (Belongs in ActionId.)
DIGEST_FINDINGS = "digest.findings"
UP, DOWN, FLAT = "↑", "↓", "→"
MAX_DECISION_SECTIONS = 3
REASON_LIMIT = 200

Number = int | float | timedelta


def trend(current: Number | None, previous: Number | None) -> str:
    """↑ when the number grew since the previous period, ↓ when it fell, → when unchanged.

    The arrow says which way the number moved, not whether that is good; "" when either
    period has no value (no MTTR without resolved findings).
    """
    if current is None or previous is None:
        return ""
    if current > previous:  # type: ignore[operator]
        return UP
    if current < previous:  # type: ignore[operator]
        return DOWN
    return FLAT


def days(span: timedelta | None) -> str:
    """A lag as days ("5.5d", "1,234d" from 100 days), hours under a day ("7.0h"); "-": none."""
    if span is None:
        return "-"
    seconds = span.total_seconds()
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    if seconds < 100 * 86400:
        return f"{seconds / 86400:.1f}d"
    return f"{seconds / 86400:,.0f}d"


def _n(count: int) -> str:
    return f"{count:,}"


def _date(at: datetime) -> str:
    return f"{at.day} {at:%b %Y}"


def _period(d: Digest) -> str:
    start, end = d.period_start, d.period_end
    head = f"{start.day} {start:%b}" if start.year == end.year else _date(start)
    return f"{head} \u2013 {_date(end)}"


def _scope(d: Digest, team: str | None) -> TeamDigest:
    if team is None:
        return d.overall
    found = d.team(team)
    if found is not None:
        return found
    return TeamDigest(team=team, severities=[], current=PeriodStats(), previous=PeriodStats())


def _name(team: str | None) -> str:
    return "all teams" if team is None else team


def _has_data(s: SeverityStats) -> bool:
    return any(
        (p.open_fixable, p.resolved, p.breaches) != (0, 0, 0) for p in (s.current, s.previous)
    )


def _with_trend(value: str, current: Number | None, previous: Number | None) -> str:
    arrow = trend(current, previous)
    return f"{value} {arrow}" if arrow else value


# --------------------------------------------------------------------------- tables


def sla_table(t: TeamDigest) -> str:
    """Severity by severity: SLA, open fixable, breaches, resolved (with trends), lags."""
    rows = [s for s in t.severities if _has_data(s)]
    if not rows:
        return "No fixable findings in this period or the one before."
    head = ("severity", "SLA", "open", "breaches", "resolved", "median", "p90", "MTTR")
    lines: list[tuple[str, ...]] = [head]
    for s in rows:
        c, p = s.current, s.previous
        lines.append(
            (
                s.severity,
                f"{s.sla_days}d" if s.sla_days is not None else "-",
                _with_trend(_n(c.open_fixable), c.open_fixable, p.open_fixable),
                _with_trend(_n(c.breaches), c.breaches, p.breaches),
                _with_trend(_n(c.resolved), c.resolved, p.resolved),
                days(c.median_lag),
                days(c.p90_lag),
                _with_trend(days(c.mttr), c.mttr, p.mttr),
            )
        )
    table = _columns(lines)
    ages: list[tuple[str, ...]] = [("open by age", *BUCKET_LABELS)]
    ages += [(s.severity, *map(_n, s.current.buckets.counts)) for s in rows]
    return table + "\n\n" + _columns(ages)


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _headline(t: TeamDigest, *, markdown: bool) -> str:
    c, p = t.current, t.previous
    bold: Callable[[str], str] = (lambda s: f"*{s}*") if markdown else (lambda s: s)
    parts = [
        f"{bold('Open fixable')} {_with_trend(_n(c.open_fixable), c.open_fixable, p.open_fixable)}"
        f" (was {_n(p.open_fixable)})",
        f"{bold('SLA breaches')} {_with_trend(_n(c.breaches), c.breaches, p.breaches)}"
        f" (was {_n(p.breaches)}; {_n(c.open_breaches)} open,"
        f" {_n(c.resolved_breaches)} resolved late)",
        f"{bold('Resolved')} {_with_trend(_n(c.resolved), c.resolved, p.resolved)}"
        f" (was {_n(p.resolved)})",
        f"{bold('MTTR')} {_with_trend(days(c.mttr), c.mttr, p.mttr)} (was {days(p.mttr)})",
        f"{bold('Median lag')} {_with_trend(days(c.median_lag), c.median_lag, p.median_lag)}"
        f"  ·  {bold('p90')} {_with_trend(days(c.p90_lag), c.p90_lag, p.p90_lag)}",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- message parts


def _team_line(t: TeamDigest) -> str:
    c, p = t.current, t.previous
    name = code(t.team) if t.team is not None else "_no team_"
    return (
        f"{name} {_with_trend(_n(c.open_fixable), c.open_fixable, p.open_fixable)} open"
        f" · {_with_trend(_n(c.breaches), c.breaches, p.breaches)} breaches"
        f" · MTTR {_with_trend(days(c.mttr), c.mttr, p.mttr)}"
    )


NOTE_ROOM = 60  # kept free in every section for the "…and N more" note


def pack(head: str, lines: list[str], *, max_sections: int, noun: str) -> list[str]:
    """`head` and then as many lines as fit in up to `max_sections` sections of Slack's size;
    the last one says how many lines were left out."""
    sections: list[str] = []
    body = head
    for i, line in enumerate(lines):
        line = truncate(line, SECTION_LIMIT - NOTE_ROOM - len(head) - 1)
        if len(body) + 1 + len(line) > SECTION_LIMIT - NOTE_ROOM:
            if len(sections) + 1 >= max_sections:
                body += f"\n…and {len(lines) - i} more {noun}"
                break
            sections.append(body)
            body = line
            continue
        body = f"{body}\n{line}" if body else line
    sections.append(body)
    return sections


def _teams_section(d: Digest) -> Block | None:
    if not d.teams:
        return None
    ranked = sorted(
        d.teams,
        key=lambda t: (-t.current.breaches, -t.current.open_fixable, t.team is None, t.team or ""),
    )
    [body] = pack(
        f"*Teams* ({len(d.teams)})", [_team_line(t) for t in ranked], max_sections=1, noun="teams"
    )
    return SectionBlock(text=MarkdownTextObject(text=body))


def _offender_text(o: Offender) -> str:
    text = (
        f"{code(f'{o.registry}/{o.repository}')}\n{_n(o.open_fixable)} open fixable"
        f" · {days(o.total_open_lag)} open lag in total · oldest {days(o.oldest_lag)}"
        f" · worst {o.worst_severity}"
    )
    return truncate(text, SECTION_LIMIT)


def _offender_block(o: Offender) -> Block:
    return SectionBlock(
        text=MarkdownTextObject(text=_offender_text(o)),
        accessory=ButtonElement(
            text="Findings",
            action_id=DIGEST_FINDINGS,
            value=o.repository[:BUTTON_VALUE_LIMIT],
        ),
    )


def _until(x: DecisionTaken, fmt: Callable[[datetime], str]) -> str:
    if x.until is not None:
        text = f"until {fmt(x.until)}"
    elif x.until_fixed:
        text = "until a fix exists"
    else:
        text = "no expiry"
    if x.expired_at is not None:
        text += f" (expired {fmt(x.expired_at)})"
    return text


def _what(x: DecisionTaken, quote: Callable[[str], str]) -> str:
    what = quote(x.check_id + (f" {x.package}" if x.package else ""))
    if x.scope == "vulnerability" or x.repository is None:
        where = "team-wide"
    else:
        where = f"in {quote(f'{x.registry}/{x.repository}' if x.registry else x.repository)}"
        if x.scope == "image":
            where += " (one image)"
    return f"{what} {where}"


def _decision_line(x: DecisionTaken) -> str:
    verb = ":ok: *Approved*" if x.kind == "approve" else ":zzz: *Ignored*"
    reason = mrkdwn(truncate(" ".join(x.reason.split()), REASON_LIMIT))
    return f"{verb} by {user(x.decided_by)}: {_what(x, code)}, {_until(x, when)}\n> {reason}"


def _decision_blocks(decisions: list[DecisionTaken]) -> list[Block]:
    head = f"*Decisions taken* ({len(decisions)})"
    lines = [_decision_line(x) for x in decisions] or ["None."]
    sections = pack(head, lines, max_sections=MAX_DECISION_SECTIONS, noun="decisions")
    return [SectionBlock(text=MarkdownTextObject(text=text)) for text in sections]


def _footer(d: Digest) -> str:
    return (
        "Patch lag runs from when a fix became known while the image was deployed until it "
        "was fixed (or until now, for open findings). Median and p90 by nearest rank. "
        f"Arrows compare with the previous {d.days} days."
    )


def digest_message(d: Digest, team: str | None) -> Message:
    """The digest of one team, or of all teams together when `team` is None."""
    t = _scope(d, team)
    title = f"Patch-lag digest: {_name(team)}, {_period(d)}"
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=truncate(title, HEADER_LIMIT))),
        SectionBlock(text=MarkdownTextObject(text=truncate(_headline(t, markdown=True), 3000))),
        SectionBlock(
            text=MarkdownTextObject(
                text=truncate(f"```{_no_fence(mrkdwn(sla_table(t)))}```", SECTION_LIMIT)
            )
        ),
    ]
    if team is None:
        teams = _teams_section(d)
        if teams is not None:
            blocks.append(teams)
    blocks.append(DividerBlock())
    if t.top_offenders:
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text="*Top offenders* (most open patch lag)"))
        )
        blocks.extend(_offender_block(o) for o in t.top_offenders[:5])
        blocks.append(DividerBlock())
    blocks.extend(_decision_blocks(t.decisions))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_footer(d))]))
    assert len(blocks) <= MAX_BLOCKS
    return Message(text=_fallback(d, t, team), blocks=[b.to_dict() for b in blocks])


def _fallback(d: Digest, t: TeamDigest, team: str | None) -> str:
    c, p = t.current, t.previous
    text = (
        f"Patch-lag digest for {_name(team)}, {_period(d)}: "
        f"{_n(c.open_fixable)} open fixable {trend(c.open_fixable, p.open_fixable)}, "
        f"{_n(c.breaches)} SLA breaches {trend(c.breaches, p.breaches)}, "
        f"{_n(c.resolved)} resolved, MTTR {days(c.mttr)}"
    )
    return truncate(mrkdwn(text), FALLBACK_LIMIT)


def _no_fence(text: str) -> str:
    return text.replace("```", "\u2018\u2018\u2018")


# --------------------------------------------------------------------------- plain text


_CONTROL = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], " ")


def _plain(text: str) -> str:
    """Outside text for a terminal: control characters (escape sequences, newlines) out."""
    return text.translate(_CONTROL)


def _plain_date(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def _plain_team(t: TeamDigest, title: str) -> list[str]:
    title = _plain(title)
    table = "\n".join(_plain(line) for line in sla_table(t).split("\n"))
    lines = [title, "=" * len(title), _headline(t, markdown=False), "", table, ""]
    if t.top_offenders:
        lines.append("Top offenders (most open patch lag):")
        for o in t.top_offenders:
            lines.append(
                f"  {_plain(f'{o.registry}/{o.repository}')}: {_n(o.open_fixable)} open fixable, "
                f"{days(o.total_open_lag)} open lag in total, oldest {days(o.oldest_lag)}, "
                f"worst {o.worst_severity}"
            )
        lines.append("")
    lines.append(f"Decisions taken ({len(t.decisions)}):")
    for x in t.decisions:
        verb = "Approved" if x.kind == "approve" else "Ignored"
        reason = truncate(" ".join(x.reason.split()), REASON_LIMIT)
        lines.append(
            _plain(
                f"  {verb} by {x.decided_by} on {_plain_date(x.created_at)}: "
                f"{_what(x, lambda s: s)}, {_until(x, _plain_date)} - {reason}"
            )
        )
    lines.append("")
    return lines


def digest_text(d: Digest) -> str:
    """The whole digest, all teams together and then team by team, for a terminal."""
    lines = _plain_team(d.overall, f"Patch-lag digest: all teams, {_period(d)}")
    for t in d.teams:
        lines += _plain_team(t, f"Team {t.team}" if t.team is not None else "No team")
    lines.append(_footer(d))
    return "\n".join(lines) + "\n"
