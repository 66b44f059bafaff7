"""Block Kit for the messages the bot posts. Pure: data in, Slack JSON out.

Every outside string goes through `escape.mrkdwn` (or a plain_text field, where Slack renders
nothing); sizes are capped to Slack's limits whatever the number of findings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.findings import Finding, Severity, worst_first
from bot.slack.escape import code, mrkdwn, truncate

MAX_BLOCKS = 50
SECTION_LIMIT = 3000
HEADER_LIMIT = 150
FALLBACK_LIMIT = 3000
TOP_FINDINGS = 10

SEVERITY_ICON = {
    Severity.CRITICAL: ":red_circle:",
    Severity.HIGH: ":large_orange_circle:",
    Severity.MEDIUM: ":large_yellow_circle:",
    Severity.LOW: ":large_blue_circle:",
    Severity.INFO: ":white_circle:",
}


@dataclass(frozen=True)
class PushReport:
    """What one image message says: the pushed image and what the checks found."""

    registry: str
    registry_host: str
    repository: str
    tag: str | None
    digest: str
    actor: str | None
    platforms: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def short_digest(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tag}" if self.tag else f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[dict[str, Any]]


def push_message(report: PushReport) -> Message:
    findings = worst_first(list(report.findings))
    blocks: list[Any] = [
        HeaderBlock(text=PlainTextObject(text=truncate(report.name, HEADER_LIMIT), emoji=False)),
        SectionBlock(text=MarkdownTextObject(text=_image_line(report))),
        ContextBlock(elements=[MarkdownTextObject(text=_counts_line(findings))]),
    ]
    if findings:
        blocks.append(DividerBlock())
    shown = findings[:TOP_FINDINGS]
    blocks.extend(SectionBlock(text=MarkdownTextObject(text=_finding_text(f))) for f in shown)
    hidden = len(findings) - len(shown)
    if hidden:
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=f"…and {hidden} more findings.")])
        )
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Digest {code(report.digest)}")]))
    assert len(blocks) <= MAX_BLOCKS
    return Message(text=_fallback(report, findings), blocks=[b.to_dict() for b in blocks])


def _image_line(r: PushReport) -> str:
    ref = f"{r.registry_host}/{r.repository}" + (f":{r.tag}" if r.tag else "")
    parts = [
        f"*Image* {code(ref)}",
        f"*Digest* {code('sha256:' + r.short_digest)}",
        f"*Registry* {mrkdwn(r.registry)}",
    ]
    if r.actor:
        parts.append(f"*Pushed by* {mrkdwn(r.actor)}")
    if len(r.platforms) > 1:
        parts.append(f"*Platforms* {mrkdwn(', '.join(r.platforms))}")
    return truncate("\n".join(parts), SECTION_LIMIT)


def _counts_line(findings: list[Finding]) -> str:
    if not findings:
        return ":white_check_mark: No findings."
    counts = Counter(f.severity for f in findings)
    return "  ·  ".join(f"{counts[s]} {s.value}" for s in Severity if counts[s])


def _finding_text(f: Finding) -> str:
    head = f"{SEVERITY_ICON[f.severity]} *{f.severity.value.upper()}* {code(f.check_id)}"
    head += f" {mrkdwn(f.title)}"
    if f.package:
        head += f" in {code(f.package)}"
        if f.fixed_version:
            head += f", fixed in {code(f.fixed_version)}"
    body = f"{head}\n{mrkdwn(f.detail)}\n_Fix:_ {mrkdwn(f.remediation)}"
    return truncate(body, SECTION_LIMIT)


def _fallback(r: PushReport, findings: list[Finding]) -> str:
    ids = ", ".join(dict.fromkeys(f.check_id for f in findings)) or "no findings"
    text = f"{r.name} ({r.short_digest}): {len(findings)} findings: {ids}"
    return truncate(mrkdwn(text), FALLBACK_LIMIT)
