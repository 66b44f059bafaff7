"""Block Kit for everything the bot shows in Slack. Pure: data in, Slack JSON out.

Every outside string goes through `escape.mrkdwn` (or a plain_text field, where Slack renders
nothing); sizes are capped to Slack's limits whatever the number of findings. Mentions are
built here from ids that were validated on the way in, never from payload text.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    RadioButtonsElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.model.findings import Expiry, Scope, Severity
from bot.slack.escape import code, mrkdwn, truncate
from bot.slack.ids import INPUT_VALUE, ActionId, CallbackId, InputId

MAX_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
SECTION_LIMIT = 3000
HEADER_LIMIT = 150
FALLBACK_LIMIT = 3000
BUTTON_VALUE_LIMIT = 2000
MODAL_TITLE_LIMIT = 24
TOP_FINDINGS = 10

SEVERITY_ICON = {
    Severity.CRITICAL: ":red_circle:",
    Severity.HIGH: ":large_orange_circle:",
    Severity.MEDIUM: ":large_yellow_circle:",
    Severity.LOW: ":large_blue_circle:",
    Severity.INFO: ":white_circle:",
}
_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,20}$")


def user(user_id: str) -> str:
    """A user mention, only for a well-formed Slack user id (else the id as plain text)."""
    return f"<@{user_id}>" if _SLACK_ID.match(user_id) and user_id[0] != "S" else mrkdwn(user_id)


def group(group_id: str) -> str:
    return f"<!subteam^{group_id}>" if _SLACK_ID.match(group_id) else mrkdwn(group_id)


def when(at: datetime) -> str:
    """A date Slack shows in the reader's own time zone, with a UTC fallback."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at:%Y-%m-%d %H:%M} UTC>"


def duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


@dataclass(frozen=True)
class PushContext:
    """What a push message is about; stored with the message so it can be drawn again."""

    registry: str
    registry_host: str
    repository: str
    digest: str
    tags: tuple[str, ...] = ()
    actor: str | None = None
    platforms: tuple[str, ...] = ()
    team: str | None = None
    headline: str | None = None
    #: "image" (a pushed image) or "workload" (a Kubernetes workload; repository is ns/kind/name)
    subject_kind: str = "image"

    @property
    def short_digest(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]

    @property
    def name(self) -> str:
        if self.subject_kind == "workload":
            return self.repository
        tags = ", ".join(self.tags[-5:])
        return f"{self.repository}:{tags}" if tags else f"{self.repository}@{self.short_digest}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PushContext:
        data = dict(data)
        data["tags"] = tuple(data.get("tags", ()))
        data["platforms"] = tuple(data.get("platforms", ()))
        return cls(**data)

    def with_tag(self, tag: str | None) -> PushContext:
        if tag is None or tag in self.tags:
            return self
        return PushContext(**{**asdict(self), "tags": (*self.tags, tag)})


@dataclass(frozen=True)
class FindingView:
    """One finding as a message shows it, with what people decided about it."""

    id: int
    severity: Severity
    check_id: str
    title: str
    detail: str = ""
    remediation: str = ""
    package: str = ""
    fixed_version: str | None = None
    #: "open", "fixed", "approved" or "ignored"
    state: str = "open"
    #: mrkdwn built by the core (mentions of validated ids, escaped reasons)
    notes: tuple[str, ...] = field(default=())
    patch_requested: bool = False

    @property
    def decided(self) -> bool:
        return self.state != "open"


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[dict[str, Any]]


def push_message(
    ctx: PushContext,
    findings: list[FindingView],
    *,
    message_id: int,
    page: bool = False,
    alert_note: str | None = None,
) -> Message:
    """The one message of a push (or of several coalesced pushes) of a repository."""
    ordered = sorted(findings, key=lambda f: (f.decided, -f.severity.rank, f.check_id, f.id))
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=truncate(ctx.headline or ctx.name, HEADER_LIMIT))),
        SectionBlock(text=MarkdownTextObject(text=_image_line(ctx))),
        ContextBlock(elements=[MarkdownTextObject(text=_counts_line(ordered))]),
    ]
    blocks.extend(_alert_blocks(message_id, page, alert_note))
    if ordered:
        blocks.append(DividerBlock())
    shown = ordered[:TOP_FINDINGS]
    for f in shown:
        blocks.extend(_finding_blocks(f))
    if len(ordered) > len(shown):
        blocks.append(
            ActionsBlock(
                block_id="more",
                elements=[
                    ButtonElement(
                        text=f"Show all {len(ordered)} findings",
                        action_id=ActionId.SHOW_ALL,
                        value=str(message_id),
                    ),
                ],
            )
        )
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Digest {code(ctx.digest)}")]))
    assert len(blocks) <= MAX_BLOCKS
    return Message(text=_fallback(ctx, ordered), blocks=[b.to_dict() for b in blocks])


def _alert_blocks(message_id: int, page: bool, note: str | None) -> list[Block]:
    """Who acknowledged the alert, or the Acknowledge button while nobody has."""
    blocks: list[Block] = []
    if note:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=note)]))
    if page:
        button = ButtonElement(
            text="Acknowledge", action_id=ActionId.ACK, value=str(message_id), style="danger"
        )
        blocks.append(ActionsBlock(block_id="alert", elements=[button]))
    return blocks


def _finding_blocks(f: FindingView) -> list[Block]:
    blocks: list[Block] = [
        SectionBlock(block_id=f"finding:{f.id}", text=MarkdownTextObject(text=finding_text(f)))
    ]
    if f.notes:
        notes = truncate("\n".join(f.notes), SECTION_LIMIT)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=notes)]))
    if f.state == "open":
        buttons = [ButtonElement(text="Approve", action_id=ActionId.APPROVE, value=str(f.id))]
        if not f.patch_requested:
            buttons.append(
                ButtonElement(
                    text="Patch", action_id=ActionId.PATCH, value=str(f.id), style="primary"
                )
            )
        buttons.append(ButtonElement(text="Ignore", action_id=ActionId.IGNORE, value=str(f.id)))
        blocks.append(ActionsBlock(block_id=f"actions:{f.id}", elements=buttons))
    return blocks


def finding_text(f: FindingView, *, with_detail: bool = True) -> str:
    head = f"{SEVERITY_ICON[f.severity]} *{f.severity.value.upper()}* {code(f.check_id)}"
    head += f" {mrkdwn(f.title)}"
    if f.package:
        head += f" in {code(f.package)}"
        if f.fixed_version:
            head += f", fixed in {code(f.fixed_version)}"
    if f.state == "fixed":
        head = f":white_check_mark: ~{head}~"
    elif f.state in ("approved", "ignored"):
        head = (":ok: " if f.state == "approved" else ":zzz: ") + head
    if not with_detail or f.state == "fixed":
        return truncate(head, SECTION_LIMIT)
    body = f"{head}\n{mrkdwn(f.detail)}\n_Fix:_ {mrkdwn(f.remediation)}"
    return truncate(body, SECTION_LIMIT)


def _image_line(ctx: PushContext) -> str:
    if ctx.subject_kind == "workload":
        return truncate(
            f"*Workload* {code(ctx.repository)}\n*Cluster* {mrkdwn(ctx.registry_host)}\n"
            f"*Images* {mrkdwn(', '.join(ctx.platforms)) or '-'}",
            SECTION_LIMIT,
        )
    tag = ctx.tags[-1] if ctx.tags else None
    ref = f"{ctx.registry_host}/{ctx.repository}" + (f":{tag}" if tag else "")
    parts = [
        f"*Image* {code(ref)}",
        f"*Digest* {code('sha256:' + ctx.short_digest)}",
        f"*Registry* {mrkdwn(ctx.registry)}",
    ]
    if len(ctx.tags) > 1:
        parts.append(f"*Tags* {', '.join(code(t) for t in ctx.tags[-20:])}")
    if ctx.actor:
        parts.append(f"*Pushed by* {mrkdwn(ctx.actor)}")
    if len(ctx.platforms) > 1:
        parts.append(f"*Platforms* {mrkdwn(', '.join(ctx.platforms))}")
    return truncate("\n".join(parts), SECTION_LIMIT)


def _counts_line(findings: list[FindingView]) -> str:
    open_ = [f for f in findings if f.state == "open"]
    if not findings:
        return ":white_check_mark: No findings."
    counts = Counter(f.severity for f in open_)
    line = "  ·  ".join(f"{counts[s]} {s.value}" for s in Severity if counts[s]) or "none open"
    decided = len(findings) - len(open_)
    return line + (f"  ·  {decided} fixed or decided" if decided else "")


def _fallback(ctx: PushContext, findings: list[FindingView]) -> str:
    ids = ", ".join(dict.fromkeys(f.check_id for f in findings)) or "no findings"
    text = f"{ctx.name} ({ctx.short_digest}): {len(findings)} findings: {ids}"
    return truncate(mrkdwn(text), FALLBACK_LIMIT)


def still_present(
    ctx: PushContext, pushes: list[tuple[str | None, str]], findings: list[FindingView]
) -> Message:
    """One reply for every push (within a coalescing window) that still has these findings."""
    names = [
        f"{ctx.repository}:{tag}" if tag else f"{ctx.repository}@{d[7:19]}" for tag, d in pushes
    ]
    ids = ", ".join(code(f.check_id + (f" {f.package}" if f.package else "")) for f in findings)
    shown = ", ".join(code(n) for n in names[-20:])
    more = f" and {len(names) - 20} earlier pushes" if len(names) > 20 else ""
    text = f"Still present in {shown}{more}: {ids}"
    return _reply(truncate(text, SECTION_LIMIT), f"Still present in {mrkdwn(names[-1])}")


def fixed(
    ctx: PushContext, tag: str | None, digest: str, findings: list[tuple[FindingView, timedelta]]
) -> Message:
    where = f"{ctx.repository}:{tag}" if tag else f"{ctx.repository}@{digest[7:19]}"
    lines = [
        f":white_check_mark: {code(f.check_id + (f' {f.package}' if f.package else ''))} "
        f"fixed in {code(where)} after {duration(took)}"
        for f, took in findings
    ]
    return _reply(truncate("\n".join(lines), SECTION_LIMIT), f"Fixed in {mrkdwn(where)}")


def note(text: str) -> Message:
    """A thread reply or plain message whose mrkdwn the caller built (escaped) itself."""
    return _reply(truncate(text, SECTION_LIMIT), truncate(text, FALLBACK_LIMIT))


def _reply(body: str, fallback: str) -> Message:
    block = SectionBlock(text=MarkdownTextObject(text=body))
    return Message(text=fallback, blocks=[block.to_dict()])


def all_findings_modal(ctx: PushContext, findings: list[FindingView]) -> dict[str, Any]:
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=_image_line(ctx)))]
    ordered = sorted(findings, key=lambda f: (f.decided, -f.severity.rank, f.check_id))
    room = MAX_MODAL_BLOCKS - 2
    for f in ordered[:room]:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=finding_text(f))))
    if len(ordered) > room:
        more = f"…and {len(ordered) - room} more; `/crowsnest findings` lists them all."
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=more)]))
    view = View(
        type="modal",
        title=truncate(f"{len(findings)} findings", MODAL_TITLE_LIMIT),
        close="Close",
        blocks=blocks,
    )
    return view.to_dict()


IGNORE_EXPIRY = {
    Expiry.DAYS_7: "7 days",
    Expiry.DAYS_30: "30 days",
    Expiry.DAYS_90: "90 days",
    Expiry.UNTIL_FIX: "Until a fix exists",
}
IGNORE_SCOPE = {
    Scope.IMAGE: "This image (digest)",
    Scope.REPOSITORY: "This repository",
    Scope.VULNERABILITY: "This check or vulnerability, whole team",
}


def decision_modal(
    kind: str, f: FindingView, private_metadata: str, *, wide: bool = True
) -> dict[str, Any]:
    """The reason (and expiry, scope) asked for before an Approve or an Ignore is applied.

    Without `wide` the Ignore offers only this image or repository for a number of days: the
    team-wide and until-fixed choices are for approvers (the submission is checked anyway).
    """
    title = "Approve risk" if kind == "approve" else "Ignore finding"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=finding_text(f, with_detail=False))),
        InputBlock(
            block_id=InputId.REASON,
            label="Reason",
            element=PlainTextInputElement(
                action_id=INPUT_VALUE,
                multiline=True,
                max_length=1000,
                placeholder="Why this is acceptable, for the audit log",
            ),
        ),
    ]
    if kind == "approve":
        blocks.append(
            InputBlock(
                block_id=InputId.EXPIRY,
                label="Expires",
                optional=True,
                element=StaticSelectElement(
                    action_id=INPUT_VALUE,
                    options=[
                        Option(value=v, label=t)
                        for v, t in IGNORE_EXPIRY.items()
                        if v is not Expiry.UNTIL_FIX
                    ],
                ),
            )
        )
    else:
        blocks.append(
            InputBlock(
                block_id=InputId.EXPIRY,
                label="Ignore for",
                element=StaticSelectElement(
                    action_id=INPUT_VALUE,
                    initial_option=Option(
                        value=Expiry.DAYS_30, label=IGNORE_EXPIRY[Expiry.DAYS_30]
                    ),
                    options=[
                        Option(value=v, label=t)
                        for v, t in IGNORE_EXPIRY.items()
                        if wide or v is not Expiry.UNTIL_FIX
                    ],
                ),
            )
        )
        blocks.append(
            InputBlock(
                block_id=InputId.SCOPE,
                label="Scope",
                element=RadioButtonsElement(
                    action_id=INPUT_VALUE,
                    initial_option=Option(
                        value=Scope.REPOSITORY, label=IGNORE_SCOPE[Scope.REPOSITORY]
                    ),
                    options=[
                        Option(value=v, label=t)
                        for v, t in IGNORE_SCOPE.items()
                        if wide or v is not Scope.VULNERABILITY
                    ],
                ),
            )
        )
    callback = CallbackId.APPROVE if kind == "approve" else CallbackId.IGNORE
    view = View(
        type="modal",
        callback_id=callback,
        title=title,
        submit="Confirm",
        close="Cancel",
        private_metadata=private_metadata,
        blocks=blocks,
    )
    return view.to_dict()


def metadata(**values: Any) -> str:
    text = json.dumps(values, separators=(",", ":"))
    assert len(text) <= 3000
    return text


@dataclass(frozen=True)
class RuntimeContext:
    """A runtime rule firing, and every pod it fired in while this message follows it."""

    rule: str
    priority: str
    severity: Severity
    team: str | None
    first_at: str
    last_at: str
    output: str
    count: int = 1
    pods: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    kind: str = "runtime"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "severity": self.severity.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuntimeContext:
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        values["severity"] = Severity(values["severity"])
        return cls(**values)


def runtime_message(
    ctx: RuntimeContext,
    *,
    message_id: int,
    correlated: bool,
    window_minutes: float,
    page: bool,
    alert_note: str | None = None,
) -> Message:
    services = len(ctx.workloads) or len(ctx.pods)
    if correlated:
        headline = (
            f"Correlated: {ctx.rule} in {len(ctx.pods)} pods across {services} services "
            f"in {window_minutes:g} minutes"
        )
    else:
        headline = f"{ctx.rule}" + (f" in {len(ctx.pods)} pods" if len(ctx.pods) > 1 else "")
    where = [
        f"*Rule* {code(ctx.rule)} ({mrkdwn(ctx.priority)})  ·  *Events* {ctx.count}",
        f"*Namespaces* {', '.join(code(n) for n in ctx.namespaces[:10]) or '-'}",
        f"*Workloads* {', '.join(code(w) for w in ctx.workloads[:15]) or '-'}",
    ]
    if ctx.images:
        where.append(f"*Images* {', '.join(code(i) for i in ctx.images[:5])}")
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=truncate(headline, HEADER_LIMIT))),
        SectionBlock(text=MarkdownTextObject(text=truncate("\n".join(where), SECTION_LIMIT))),
        SectionBlock(
            text=MarkdownTextObject(
                text=truncate(
                    f"{SEVERITY_ICON[ctx.severity]} *{ctx.severity.value.upper()}* "
                    f"```{_no_fence(mrkdwn(ctx.output))}```",
                    SECTION_LIMIT,
                )
            )
        ),
    ]
    blocks.extend(_alert_blocks(message_id, page, alert_note))
    text = truncate(mrkdwn(headline), FALLBACK_LIMIT)
    return Message(text=text, blocks=[b.to_dict() for b in blocks])


def _no_fence(text: str) -> str:
    """Outside text inside a code block must not close it early."""
    return text.replace("```", "\u2018\u2018\u2018")
