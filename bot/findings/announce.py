"""What a push means for the channel: new findings posted once, the rest followed in threads.

A finding is the same finding across pushes of a repository when its check (or vulnerability)
and package match. The first push that has it posts it; later pushes reply "still present" in
that message's thread; a push without it replies "fixed" and redraws the message. Pushes of one
repository inside `slack.coalesce_seconds` share one message. Approved or ignored findings are
not posted. Everything here runs inside the worker's transaction, so it happens exactly once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.model.findings import Finding, Severity
from bot.slack import render
from bot.slack.escape import mrkdwn
from bot.store import outbox, tracking
from bot.store.memo import transaction_memo
from bot.store.models import Alert, DecisionRow, SlackMessage, Suppression, TrackedFinding


@dataclass(frozen=True)
class Push:
    """One processed push, as the announcer needs it."""

    context: render.PushContext
    tag: str | None
    channel: str
    critical_channel: str | None


class Announcer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.page_rank = Severity(settings.alerts.page_severity).rank

    async def record_push(
        self,
        session: AsyncSession,
        push: Push,
        findings: Sequence[Finding],
        now: datetime,
        *,
        complete: bool = True,
    ) -> None:
        """Announce a push's findings. With `complete=False` (a re-check that found more, not a
        new image) only new findings are posted: nothing is declared fixed or still present."""
        ctx = push.context
        known, suppressions = await self._subject(session, ctx)
        new: list[TrackedFinding] = []
        still: dict[int, list[TrackedFinding]] = defaultdict(list)
        changed: set[int] = set()  # messages showing a finding that now reads differently
        seen: set[tuple[str, str]] = set()
        for f in findings:
            key = (f.check_id, f.package or "")
            seen.add(key)
            row = known.get(key)
            if row is None:
                row = _new_row(f, ctx, now)
                session.add(row)
                known[key] = row
            elif row.status == tracking.FIXED:
                _reopen(row, f, now)
            repeat = row.last_seen_digest == ctx.digest and row.last_seen_tag == push.tag
            message_id = row.message_id
            shown = view(row) if message_id is not None else None
            _seen(row, f, ctx, push.tag, now)
            if message_id is not None and view(row) != shown:
                changed.add(message_id)
            if any(
                tracking.active(s, now, row) and _covers(s, row, ctx.digest) for s in suppressions
            ):
                continue
            if row.message_id is None:
                new.append(row)
            elif not repeat:
                still[row.message_id].append(row)
        await session.flush()
        if not complete:
            await self._post_new(session, push, new, now)
            return
        fixed = [t for key, t in known.items() if key not in seen and t.status == tracking.OPEN]
        for row in fixed:
            row.status, row.fixed_at, row.fixed_in_tag = tracking.FIXED, now, push.tag
        await self._post_new(session, push, new, now)
        await self._follow_up(session, push, still, fixed, changed, now)

    async def _subject(
        self, session: AsyncSession, ctx: render.PushContext
    ) -> tuple[dict[tuple[str, str], TrackedFinding], list[Suppression]]:
        """Lock the repository, then its tracked findings (by check and package) and the
        suppressions that may cover them.

        Read once per transaction: a worker commits several pushes of one repository together,
        and from the first the lock is held, so the findings change only through the objects
        read here (new ones are added to the same dict) and the suppressions not at all.
        """
        memo = transaction_memo(session)
        subject = f"{ctx.registry}/{ctx.repository}"
        await self.lock(session, subject)
        known: dict[tuple[str, str], TrackedFinding] | None = memo.get(("tracked", subject))
        if known is None:
            rows = await tracking.tracked_for(session, ctx.registry, ctx.repository, lock=True)
            known = memo[("tracked", subject)] = {(t.check_id, t.package): t for t in rows}
        suppressions: list[Suppression] | None = memo.get(("suppressions", subject, ctx.team))
        if suppressions is None:
            suppressions = await tracking.suppressions_for(
                session, team=ctx.team, registry=ctx.registry, repository=ctx.repository
            )
            memo[("suppressions", subject, ctx.team)] = suppressions
        return known, suppressions

    async def lock(self, session: AsyncSession, subject: str) -> None:
        """`tracking.lock_subject`, once per subject and transaction (held until its end)."""
        memo = transaction_memo(session)
        if ("lock", subject) not in memo:
            await tracking.lock_subject(session, subject)
            memo[("lock", subject)] = True

    async def _post_new(
        self, session: AsyncSession, push: Push, rows: list[TrackedFinding], now: datetime
    ) -> None:
        if not rows and not self._settings.slack.announce_clean_pushes:
            return
        ctx = push.context
        subject = f"{ctx.registry}/{ctx.repository}"
        window = timedelta(seconds=self._settings.slack.coalesce_seconds)
        message = await tracking.pending_post(session, subject, now - window) if window else None
        if message is None:
            pages = any(Severity(r.severity).rank >= self.page_rank for r in rows)
            channel = push.critical_channel if pages and push.critical_channel else push.channel
            key = f"push:{subject}@{ctx.digest}#{push.tag or ''}"
            message = await outbox.add_post(
                session,
                key=key,
                channel=channel,
                subject=subject,
                context=json.dumps(ctx.to_json(), sort_keys=True),
                now=now,
                available_at=now + window,
            )
            if message is None:
                # This exact push was announced already: what a re-read found (a layer the
                # registry failed to serve the first time) joins that message.
                message = await outbox.post_by_key(session, key)
                if message is None or not rows:
                    return
        else:
            merged = render.PushContext.from_json(json.loads(message.context or "{}"))
            await tracking.set_message_content(
                session,
                message.id,
                text=message.text,
                blocks=[],
                context=merged.with_tag(push.tag).to_json(),
            )
        for row in rows:
            row.message_id = message.id
        await session.flush()
        paging = [r for r in rows if Severity(r.severity).rank >= self.page_rank]
        if paging:
            worst = max(paging, key=lambda r: Severity(r.severity).rank)
            summary = f"{worst.severity} {worst.check_id} in {worst.repository}"
            await self.open_alert(session, message, worst.team, summary, now)
        await self.redraw(session, message.id, now)

    async def open_alert(
        self,
        session: AsyncSession,
        message: SlackMessage,
        team: str | None,
        summary: str,
        now: datetime,
    ) -> None:
        """Page on-call for this message, once: escalation starts counting now."""
        if await tracking.alert_for_message(session, message.id) is not None:
            return
        session.add(
            Alert(
                message_id=message.id,
                team=team,
                summary=summary[:400],
                created_at=now,
                level=0,
                next_escalation_at=now + timedelta(seconds=self._settings.alerts.ack_timeout),
            )
        )
        await session.flush()

    async def _follow_up(
        self,
        session: AsyncSession,
        push: Push,
        still: dict[int, list[TrackedFinding]],
        fixed: list[TrackedFinding],
        changed: set[int],
        now: datetime,
    ) -> None:
        """Thread replies for what is still there or fixed, and a redraw of each message whose
        drawing changed: one that only gets a "still present" reply looks the same as before,
        so it is not drawn (and Slack is not owed an update) again."""
        by_message: dict[int, list[TrackedFinding]] = defaultdict(list)
        for row in fixed:
            if row.message_id is not None:
                by_message[row.message_id].append(row)
        for message_id in sorted(set(still) | set(by_message)):
            parent = await tracking.message(session, message_id)
            if parent is None:
                continue
            window = timedelta(seconds=self._settings.slack.coalesce_seconds)
            if parent.status == outbox.PENDING and window and parent.created_at >= now - window:
                # Still coalescing: the message itself will show this push.
                merged = render.PushContext.from_json(json.loads(parent.context or "{}"))
                await tracking.set_message_content(
                    session,
                    parent.id,
                    text=parent.text,
                    blocks=[],
                    context=merged.with_tag(push.tag).to_json(),
                )
                await self.redraw(session, message_id, now)
                continue
            await self._replies(
                session,
                parent,
                push,
                still.get(message_id, []),
                by_message.get(message_id, []),
                now,
            )
            if message_id in by_message or message_id in changed:
                await self.redraw(session, message_id, now, message=parent)

    async def _replies(
        self,
        session: AsyncSession,
        parent: SlackMessage,
        push: Push,
        still: list[TrackedFinding],
        fixed: list[TrackedFinding],
        now: datetime,
    ) -> None:
        ctx = push.context
        where = f"{ctx.digest}#{push.tag or ''}"
        if still:
            await self._still_present(session, parent, push, still, now)
        if fixed:
            msg = render.fixed(
                ctx, push.tag, ctx.digest, [(view(r), now - r.first_seen_at) for r in fixed]
            )
            await outbox.add_reply(
                session, parent, key=f"fixed:{parent.id}:{where}", message=msg, now=now
            )

    async def _still_present(
        self,
        session: AsyncSession,
        parent: SlackMessage,
        push: Push,
        still: list[TrackedFinding],
        now: datetime,
    ) -> None:
        """Reply "still present"; pushes within the coalescing window share one reply."""
        ctx = push.context
        window = timedelta(seconds=self._settings.slack.coalesce_seconds)
        views = [view(r) for r in still]
        pending = (
            await tracking.pending_reply(session, parent.id, "still:", now - window)
            if window
            else None
        )
        if pending is not None:
            pushes = [tuple(p) for p in json.loads(pending.context or "{}").get("pushes", [])]
            pushes.append((push.tag, ctx.digest))
            msg = render.still_present(ctx, pushes, views)
            if await tracking.set_message_content(
                session,
                pending.id,
                text=msg.text,
                blocks=msg.blocks,
                context={"pushes": pushes},
                only_if_pending=True,
            ):
                return
        msg = render.still_present(ctx, [(push.tag, ctx.digest)], views)
        await outbox.add_reply(
            session,
            parent,
            key=f"still:{parent.id}:{ctx.digest}#{push.tag or ''}",
            message=msg,
            now=now,
            available_at=now + window,
            context=json.dumps({"pushes": [[push.tag, ctx.digest]]}),
        )

    async def redraw(
        self,
        session: AsyncSession,
        message_id: int,
        now: datetime,
        *,
        message: SlackMessage | None = None,
    ) -> None:
        """Draw a message again from what is stored now, and owe Slack the new version.

        `message` is the row when the caller has just read it in this transaction."""
        if message is None:
            message = await tracking.message(session, message_id)
        if message is None or message.kind != "post" or message.context is None:
            return
        data = json.loads(message.context)
        alert = await tracking.alert_for_message(session, message_id)
        note = None
        if alert is not None and alert.acked_by:
            at = render.when(alert.acked_at or now)
            note = f":eyes: Acknowledged by {render.user(alert.acked_by)} {at}"
        page = alert is not None and not alert.acked_by
        if data.get("kind") == "runtime":
            rctx = render.RuntimeContext.from_json(data)
            falco = self._settings.falco
            drawn = render.runtime_message(
                rctx,
                message_id=message_id,
                page=page,
                alert_note=note,
                correlated=len(rctx.pods) >= falco.correlate_pods,
                window_minutes=falco.window_minutes,
            )
        else:
            ctx = render.PushContext.from_json(data)
            rows = await tracking.on_message(session, message_id)
            views = await self.views(session, rows, now)
            drawn = render.push_message(
                ctx, views, message_id=message_id, page=page, alert_note=note
            )
        # Not sent yet: the message itself changes. Taken by delivery meanwhile: owe an update.
        rewritten = message.status == outbox.PENDING and await tracking.set_message_content(
            session, message_id, text=drawn.text, blocks=drawn.blocks, only_if_pending=True
        )
        if not rewritten:
            await outbox.add_update(session, message, drawn.text, drawn.blocks, now)

    async def views(
        self, session: AsyncSession, rows: Sequence[TrackedFinding], now: datetime
    ) -> list[render.FindingView]:
        ids = [r.id for r in rows]
        sups: dict[int, list[Suppression]] = defaultdict(list)
        for s in await tracking.suppressions_of(session, ids):
            if s.finding_id is not None:
                sups[s.finding_id].append(s)
        decs: dict[int, list[DecisionRow]] = defaultdict(list)
        for d in await tracking.decisions_of(session, ids):
            if d.finding_id is not None:
                decs[d.finding_id].append(d)
        return [_view_with_decisions(r, sups[r.id], decs[r.id], now) for r in rows]


def _covers(s: Suppression, row: TrackedFinding, digest: str) -> bool:
    return tracking.covers(s, check_id=row.check_id, package=row.package, digest=digest)


def _new_row(f: Finding, ctx: render.PushContext, now: datetime) -> TrackedFinding:
    return TrackedFinding(
        registry_name=ctx.registry,
        repository=ctx.repository,
        check_id=f.check_id,
        package=f.package or "",
        severity=f.severity.value,
        title=f.title[:255],
        detail=f.detail,
        remediation=f.remediation,
        fixed_version=f.fixed_version,
        team=ctx.team,
        status=tracking.OPEN,
        first_seen_at=now,
        last_seen_at=now,
        last_seen_digest=ctx.digest,
    )


def _reopen(row: TrackedFinding, f: Finding, now: datetime) -> None:
    """Back after a fix: a new finding as far as people are concerned, posted again."""
    row.status, row.fixed_at, row.fixed_in_tag = tracking.OPEN, None, None
    row.first_seen_at, row.message_id, row.assignee, row.due_at = now, None, None, None
    row.fixable_since = None


def _seen(
    row: TrackedFinding, f: Finding, ctx: render.PushContext, tag: str | None, now: datetime
) -> None:
    row.last_seen_at, row.last_seen_tag, row.last_seen_digest = now, tag, ctx.digest
    row.severity, row.title, row.detail, row.remediation = (
        f.severity.value,
        f.title[:255],
        f.detail,
        f.remediation,
    )
    if f.fixed_version and row.fixable_since is None:
        row.fixable_since = now  # a fix is known and this image is out there: lag starts
    row.fixed_version = f.fixed_version
    row.team = ctx.team


def view(row: TrackedFinding) -> render.FindingView:
    return render.FindingView(
        id=row.id,
        severity=Severity(row.severity),
        check_id=row.check_id,
        title=row.title,
        detail=row.detail,
        remediation=row.remediation,
        package=row.package,
        fixed_version=row.fixed_version,
        state="fixed" if row.status == tracking.FIXED else "open",
        patch_requested=row.assignee is not None,
    )


def _view_with_decisions(
    row: TrackedFinding, sups: list[Suppression], decs: list[DecisionRow], now: datetime
) -> render.FindingView:
    base = view(row)
    state = base.state
    if state == "open":
        live = [s for s in sups if tracking.active(s, now, row)]
        if live:
            state = "approved" if live[-1].kind == "approve" else "ignored"
    notes = [decision_note(d) for d in decs]
    if row.status == tracking.FIXED and row.fixed_at is not None:
        where = mrkdwn(row.fixed_in_tag or row.last_seen_digest[7:19])
        notes.append(
            f":white_check_mark: Fixed in `{where}` after "
            f"{render.duration(row.fixed_at - row.first_seen_at)}"
        )
    return render.FindingView(**{**base.__dict__, "state": state, "notes": tuple(notes[-4:])})


def decision_note(d: DecisionRow) -> str:
    """One audit entry as the message shows it: who did what, when, and why."""
    details = json.loads(d.details) if d.details else {}
    who, at = render.user(d.actor), render.when(d.at)
    reason = f": “{mrkdwn(d.reason)}”" if d.reason else ""
    until = f" until {render.when(d.expires_at)}" if d.expires_at else ""
    if d.action == "approve":
        return f":ok: Risk accepted by {who} {at}{until}{reason}"
    if d.action == "ignore":
        scope = render.IGNORE_SCOPE.get(details.get("scope", ""), "").lower()
        if details.get("until_fixed"):
            until = " until a fix exists"
        return f":zzz: Ignored by {who} {at} ({mrkdwn(scope)}){until}{reason}"
    if d.action == "patch":
        due = f", due {render.when(d.expires_at)}" if d.expires_at else ""
        hook = details.get("hook")
        answer = f" · hook: {mrkdwn(str(hook))}" if hook else ""
        return f":hammer_and_wrench: Patch requested by {who} {at}{due}{answer}"
    if d.action == "patch-hook":
        return f":link: Patch hook {mrkdwn(str(details.get('hook', '')))}"
    if d.action in ("ignore-expired", "approve-expired"):
        what = "Ignore" if d.action == "ignore-expired" else "Accepted risk"
        return f":alarm_clock: {what} expired {at}; the finding is open again"
    return f"{mrkdwn(d.action)} by {who} {at}{reason}"
