"""Approve, Patch, Ignore and Acknowledge: the decisions people take in Slack.

Each one re-reads the finding (a button's value is never trusted), checks who is asking
(`bot.findings.authz`: per team, per action), and applies the decision and its audit entry in one
transaction; a second click finds the decision already taken and changes nothing. The message is
then redrawn through the outbox. A refusal changes nothing but the audit log, which records it
as `refused` (with what was attempted), so a probing clicker leaves a trace.

Who is asking is checked before the finding is locked: the check may ask Slack, and a write
lock must not wait on Slack. The locked transaction then makes sure the finding still belongs
to the team the check was about.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.findings.announce import Announcer
from bot.findings.authz import Action, Permissions, Refusal, ignore_action
from bot.findings.patch_hooks import PatchHooks, PatchRequest
from bot.infra.clock import Clock
from bot.model.findings import DecisionKind, Expiry, Scope, SuppressionKind
from bot.slack import render
from bot.slack.escape import code, mrkdwn
from bot.store import outbox, tracking
from bot.store.db import Database
from bot.store.models import Alert, SlackMessage, Suppression, TrackedFinding

log = logging.getLogger(__name__)

BOT_ACTOR = "crowsnest"
#: The audit log's action for a decision someone was not allowed to take.
REFUSED = DecisionKind.REFUSED


@dataclass(frozen=True)
class Outcome:
    """What the person who clicked is told; `ok` False means nothing changed."""

    ok: bool
    message: str
    #: Plain and short, for a modal's error line (which shows no mentions); else `message`.
    short: str = ""

    @property
    def modal_error(self) -> str:
        return self.short or self.message


def _no(message: str) -> Outcome:
    return Outcome(False, message)


class Decisions:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        announcer: Announcer,
        permissions: Permissions,
        hooks: PatchHooks,
        clock: Clock,
        wake: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._db = db
        self._announcer = announcer
        self._permissions = permissions
        self._hooks = hooks
        self._clock = clock
        self._wake = wake

    async def finding(self, finding_id: int) -> render.FindingView | None:
        async with self._db.transaction() as s:
            row = await tracking.tracked(s, finding_id)
            if row is None:
                return None
            [drawn] = await self._announcer.views(s, [row], self._clock.now())
            return drawn

    async def all_findings(self, message_id: int) -> dict[str, Any] | None:
        """The "Show all" modal of a push message."""
        async with self._db.transaction() as s:
            message = await tracking.message(s, message_id)
            if message is None or message.context is None:
                return None
            ctx = render.PushContext.from_json(json.loads(message.context))
            rows = await tracking.on_message(s, message_id)
            views = await self._announcer.views(s, rows, self._clock.now())
        return render.all_findings_modal(ctx, views)

    async def may_decide(self, finding_id: int, user_id: str, action: Action) -> Outcome:
        """Whether to open the Approve / Ignore modal for this user at all (a refusal is
        audited: the click was an attempt)."""
        row = await self._read(finding_id)
        if row is None:
            return _no("This finding no longer exists.")
        if refusal := await self._permissions.refusal(action, row.team, user_id):
            return await self._refused(refusal, action, user_id, row)
        return Outcome(True, "")

    async def may(self, finding_id: int, user_id: str, action: Action) -> bool:
        """Whether `user_id` may take `action` on this finding; nothing is recorded. For
        offering choices (a modal without the wide Ignores), never for deciding."""
        row = await self._read(finding_id)
        return row is not None and await self._permissions.may(action, row.team, user_id)

    async def approve(
        self, finding_id: int, user_id: str, reason: str, expiry: str | None
    ) -> Outcome:
        days = Expiry(expiry).days if expiry in set(Expiry) else None
        return await self._suppress(
            Action.APPROVE, finding_id, user_id, reason, days, False, Scope.REPOSITORY
        )

    async def ignore(
        self, finding_id: int, user_id: str, reason: str, expiry: str, scope: str
    ) -> Outcome:
        if scope not in set(Scope) or expiry not in set(Expiry):
            return _no("Choose an expiry and a scope from the list.")
        until = Expiry(expiry)
        return await self._suppress(
            ignore_action(scope, expiry),
            finding_id,
            user_id,
            reason,
            until.days,
            until is Expiry.UNTIL_FIX,
            Scope(scope),
        )

    async def _suppress(
        self,
        action: Action,
        finding_id: int,
        user_id: str,
        reason: str,
        days: int | None,
        until_fixed: bool,
        scope: str,
    ) -> Outcome:
        kind = SuppressionKind.APPROVE if action is Action.APPROVE else SuppressionKind.IGNORE
        reason = reason.strip()
        owner = await self._read(finding_id)
        if owner is None:
            return _no("This finding no longer exists.")
        if refusal := await self._permissions.refusal(action, owner.team, user_id):
            details = {"scope": scope, "until_fixed": until_fixed, "days": days}
            return await self._refused(refusal, action, user_id, owner, reason, details)
        if not reason:
            return _no("A reason is required: it goes into the audit log.")
        now = self._clock.now()
        async with self._db.transaction() as s:
            row = await _lock_owned(s, finding_id, owner.team)
            if isinstance(row, Outcome):
                return row
            if taken := await self._already(s, row, now):
                return _no(taken)
            until = now + timedelta(days=days) if days else None
            s.add(_suppression(kind, scope, row, user_id, reason, until, until_fixed, now))
            await tracking.record_decision(
                s,
                at=now,
                actor=user_id,
                action=kind,
                subject=_subject(row),
                finding_id=row.id,
                reason=reason,
                expires_at=until,
                details={"scope": scope, "until_fixed": until_fixed, "severity": row.severity},
            )
            await self._redraw(s, row, now)
        self._wake.set()
        verb = "Accepted the risk of" if kind == "approve" else "Ignoring"
        return Outcome(True, f"{verb} {code(row.check_id)} in {code(row.repository)}.")

    async def patch(self, finding_id: int, user_id: str) -> Outcome:
        owner = await self._read(finding_id)
        if owner is None:
            return _no("This finding no longer exists.")
        if refusal := await self._permissions.refusal(Action.PATCH, owner.team, user_id):
            return await self._refused(refusal, Action.PATCH, user_id, owner)
        now = self._clock.now()
        async with self._db.transaction() as s:
            row = await _lock_owned(s, finding_id, owner.team)
            if isinstance(row, Outcome):
                return row
            if row.status != tracking.OPEN:
                return _no("This finding is already fixed.")
            if row.assignee is not None:
                return _no(f"A patch was already requested by {render.user(row.assignee)}.")
            days = self._settings.sla_days(row.team, row.severity)
            row.assignee = user_id
            row.due_at = now + timedelta(days=days) if days else None
            decision = await tracking.record_decision(
                s,
                at=now,
                actor=user_id,
                action=DecisionKind.PATCH,
                subject=_subject(row),
                finding_id=row.id,
                expires_at=row.due_at,
            )
            request = _patch_request(row, user_id)
            await self._redraw(s, row, now)
        self._wake.set()
        hook = self._hooks.for_repository(row.repository)
        if hook is not None:
            answer = await self._hooks.call(hook, request)
            async with self._db.transaction() as s:
                await tracking.record_decision(
                    s,
                    at=self._clock.now(),
                    actor=BOT_ACTOR,
                    action=DecisionKind.PATCH_HOOK,
                    subject=_subject(row),
                    finding_id=row.id,
                    details={"hook": f"{hook.kind}: {answer}", "decision": decision.id},
                )
                await self._redraw(s, row, self._clock.now())
            self._wake.set()
        due = f", due {row.due_at:%Y-%m-%d}" if row.due_at else ""
        what = f"{code(row.check_id)} in {code(row.repository)}"
        return Outcome(True, f"Patch requested for {what}{due}.")

    async def ack(self, message_id: int, user_id: str) -> Outcome:
        async with self._db.transaction() as s:
            seen = await tracking.alert_for_message(s, message_id)
        if seen is None:
            return _no("There is no alert to acknowledge on this message.")
        refusal = await self._permissions.refusal(Action.ACK, seen.team, user_id, what="alert")
        if refusal:
            now = self._clock.now()
            async with self._db.transaction() as s:
                await tracking.record_decision(
                    s,
                    at=now,
                    actor=user_id,
                    action=REFUSED,
                    subject=seen.summary,
                    details={"attempted": Action.ACK.value, "alert": seen.id, "why": refusal.short},
                )
            log.info("refused %s to %s on alert %d", Action.ACK.value, user_id, seen.id)
            return Outcome(False, refusal.text, refusal.short)
        now = self._clock.now()
        async with self._db.transaction() as s:
            alert = await tracking.alert(s, seen.id, lock=True)
            if alert is None:
                return _no("There is no alert to acknowledge on this message.")
            if alert.team != seen.team:
                return _no(_OWNER_CHANGED)
            if alert.acked_by is not None:
                return _no(f"Already acknowledged by {render.user(alert.acked_by)}.")
            alert.acked_by, alert.acked_at, alert.next_escalation_at = user_id, now, None
            await tracking.record_decision(
                s,
                at=now,
                actor=user_id,
                action=DecisionKind.ACK,
                subject=alert.summary,
                details={"alert": alert.id, "level": alert.level},
            )
            parent = await tracking.message(s, message_id)
            if parent is not None:
                await outbox.add_reply(
                    s,
                    parent,
                    key=f"ack:{alert.id}",
                    now=now,
                    message=render.note(f":eyes: {render.user(user_id)} is on it."),
                )
            await self._announcer.redraw(s, message_id, now)
        self._wake.set()
        return Outcome(True, "Acknowledged; escalation stopped.")

    async def expire_ignores(self) -> int:
        """Post again every finding whose Ignore (or Approve) ran out."""
        now = self._clock.now()
        async with self._db.transaction() as s:
            expired = await tracking.due_expiries(s, now)
            for sup in expired:
                sup.expired_at = now
                row = await tracking.tracked(s, sup.finding_id) if sup.finding_id else None
                if row is None:
                    continue
                await tracking.record_decision(
                    s,
                    at=now,
                    actor=BOT_ACTOR,
                    action=f"{sup.kind}-expired",
                    subject=_subject(row),
                    finding_id=row.id,
                    details={"suppression": sup.id},
                )
                if row.status == tracking.OPEN:
                    await self._repost(s, row, sup, now)
        if expired:
            self._wake.set()
        return len(expired)

    async def _repost(
        self, s: AsyncSession, row: TrackedFinding, sup: Suppression, now: datetime
    ) -> None:
        old = await tracking.message(s, row.message_id) if row.message_id else None
        ctx = (
            render.PushContext.from_json(json.loads(old.context))
            if old and old.context
            else render.PushContext(
                registry=row.registry_name,
                registry_host=row.registry_name,
                repository=row.repository,
                digest=row.last_seen_digest,
                team=row.team,
            )
        )
        what = "Ignore" if sup.kind == SuppressionKind.IGNORE else "Accepted risk"
        ctx = render.PushContext(
            **{
                **ctx.to_json(),
                "tags": tuple(ctx.tags),
                "platforms": tuple(ctx.platforms),
                "headline": f"{what} expired: {row.repository}",
            }
        )
        channel = old.channel if old else self._settings.slack.fallback_channel
        message = await outbox.add_post(
            s,
            key=f"expired:{sup.id}",
            channel=channel,
            subject=None,
            context=json.dumps(ctx.to_json(), sort_keys=True),
            now=now,
            available_at=now,
        )
        if message is None:
            return
        row.message_id = message.id
        await s.flush()
        await self._announcer.redraw(s, message.id, now)
        if old is not None:
            await self._announcer.redraw(s, old.id, now)

    async def escalate(self) -> int:
        """Mention on-call on an unacknowledged alert, then tell the fallback channel."""
        now = self._clock.now()
        timeout = timedelta(seconds=self._settings.alerts.ack_timeout)
        async with self._db.transaction() as s:
            due = await tracking.due_alerts(s, now)
            for alert in due:
                parent = await tracking.message(s, alert.message_id)
                if parent is None:
                    alert.next_escalation_at = None
                    continue
                await self._escalate_one(s, alert, parent, now, timeout)
        if due:
            self._wake.set()
        return len(due)

    async def _escalate_one(
        self,
        s: AsyncSession,
        alert: Alert,
        parent: SlackMessage,
        now: datetime,
        wait: timedelta,
    ) -> None:
        team = self._settings.team(alert.team)
        waited = render.duration(now - alert.created_at)
        if alert.level == 0 and team is not None and team.oncall:
            text = (
                f"{render.group(team.oncall)} this alert has not been acknowledged for "
                f"{waited}: {mrkdwn(alert.summary)}"
            )
            await outbox.add_reply(
                s, parent, key=f"escalate:{alert.id}:1", now=now, message=render.note(text)
            )
            alert.level, alert.next_escalation_at = 1, now + wait
        else:
            where = f"<#{parent.channel_id}>" if parent.channel_id else mrkdwn(parent.channel)
            text = (
                f":rotating_light: Unacknowledged for {waited} in {where}: {mrkdwn(alert.summary)}"
            )
            fallback = self._settings.slack.fallback_channel
            await outbox.enqueue(
                s,
                key=f"escalate:{alert.id}:2",
                channel=fallback,
                text=text,
                blocks=render.note(text).blocks,
                now=now,
            )
            alert.level, alert.next_escalation_at = 2, None
        await tracking.record_decision(
            s,
            at=now,
            actor=BOT_ACTOR,
            action=DecisionKind.ESCALATE,
            subject=alert.summary,
            details={"alert": alert.id, "level": alert.level},
        )

    async def _read(self, finding_id: int) -> TrackedFinding | None:
        async with self._db.transaction() as s:
            return await tracking.tracked(s, finding_id)

    async def _refused(
        self,
        refusal: Refusal,
        action: Action,
        user_id: str,
        row: TrackedFinding,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> Outcome:
        """Record the attempt in the audit log (nothing else changes) and say who may."""
        async with self._db.transaction() as s:
            await tracking.record_decision(
                s,
                at=self._clock.now(),
                actor=user_id,
                action=REFUSED,
                subject=_subject(row),
                finding_id=row.id,
                reason=reason[:1000] or None,
                details={"attempted": action.value, "why": refusal.short, **(details or {})},
            )
        log.info("refused %s to %s on finding %d", action.value, user_id, row.id)
        return Outcome(False, refusal.text, refusal.short)

    async def _already(self, s: AsyncSession, row: TrackedFinding, now: datetime) -> str | None:
        if row.status != tracking.OPEN:
            return "This finding is already fixed."
        for sup in await tracking.suppressions_of(s, [row.id]):
            if tracking.active(sup, now, row):
                verb = "approved" if sup.kind == SuppressionKind.APPROVE else "ignored"
                return f"Already {verb} by {render.user(sup.decided_by)}."
        return None

    async def _redraw(self, s: AsyncSession, row: TrackedFinding, now: datetime) -> None:
        if row.message_id is not None:
            await self._announcer.redraw(s, row.message_id, now)


_OWNER_CHANGED = "This finding just changed owner; try again."


def _subject(row: TrackedFinding) -> str:
    package = f" {row.package}" if row.package else ""
    return f"{row.registry_name}/{row.repository} {row.check_id}{package}"


async def _lock_owned(
    s: AsyncSession, finding_id: int, team: str | None
) -> TrackedFinding | Outcome:
    """The finding, locked for the transaction, when it still exists and is still `team`'s
    (whose people the permission check just asked about); else the refusal to give."""
    row = await tracking.tracked(s, finding_id, lock=True)
    if row is None:
        return _no("This finding no longer exists.")
    if row.team != team:
        return _no(_OWNER_CHANGED)
    return row


def _suppression(
    kind: str,
    scope: str,
    row: TrackedFinding,
    user_id: str,
    reason: str,
    until: datetime | None,
    until_fixed: bool,
    now: datetime,
) -> Suppression:
    team_wide = scope == Scope.VULNERABILITY
    return Suppression(
        kind=kind,
        scope=scope,
        team=row.team,
        registry_name=None if team_wide else row.registry_name,
        repository=None if team_wide else row.repository,
        digest=row.last_seen_digest if scope == Scope.IMAGE else None,
        check_id=row.check_id,
        package=None if team_wide else row.package,
        until=until,
        until_fixed=until_fixed,
        reason=reason[:1000],
        decided_by=user_id,
        created_at=now,
        finding_id=row.id,
    )


def _patch_request(row: TrackedFinding, user_id: str) -> PatchRequest:
    return PatchRequest(
        registry=row.registry_name,
        repository=row.repository,
        digest=row.last_seen_digest,
        tag=row.last_seen_tag,
        finding=row.check_id,
        package=row.package or None,
        fixed_version=row.fixed_version,
        requested_by=user_id,
    )
