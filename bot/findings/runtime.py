"""Falco alerts in Slack: one message per rule and team per window, counting pods as it spreads.

The same rule firing in many pods inside `falco.window_minutes` is one correlated alert ("in 14
pods across 5 services") followed in one message, which pages on-call once it is severe and
widespread, or at once for crypto-mining. Runs inside the worker's transaction, like pushes.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.findings.announce import Announcer
from bot.model.events import RuntimeAlert
from bot.model.findings import Severity
from bot.slack import render
from bot.store import outbox, tracking


class RuntimeAlerts:
    def __init__(self, settings: Settings, announcer: Announcer) -> None:
        self._settings = settings
        self._announcer = announcer

    async def record(
        self,
        session: AsyncSession,
        alert: RuntimeAlert,
        team: str | None,
        channel: str,
        now: datetime,
    ) -> None:
        """One message per rule and team per window, counting pods as the rule spreads."""
        falco = self._settings.falco
        subject = f"falco:{team or '-'}:{alert.rule}"[:400]
        await self._announcer.lock(session, subject)
        since = now - timedelta(minutes=falco.window_minutes)
        message = await tracking.recent_post(session, subject, since)
        if message is None:
            ctx = render.RuntimeContext(
                rule=alert.rule,
                priority=alert.priority,
                severity=falco_severity(alert),
                team=team,
                first_at=alert.time.isoformat(),
                last_at=alert.time.isoformat(),
                output=alert.output[:1500],
                pods=_one(alert.pod),
                workloads=_one(alert.workload),
                namespaces=_one(alert.namespace),
                images=_one(alert.image),
            )
            message = await outbox.add_post(
                session,
                key=f"falco:{alert.delivery_id}",
                channel=channel,
                subject=subject,
                context=json.dumps(ctx.to_json(), sort_keys=True),
                now=now,
                available_at=now,
            )
            if message is None:
                return
        else:
            ctx = _spread(
                render.RuntimeContext.from_json(json.loads(message.context or "{}")), alert
            )
            await tracking.set_message_content(
                session, message.id, text=message.text, blocks=[], context=ctx.to_json()
            )
        if self._pages(ctx):
            await self._announcer.open_alert(
                session, message, team, f"{ctx.severity} {ctx.rule}", now
            )
        await self._announcer.redraw(session, message.id, now)

    def _pages(self, ctx: render.RuntimeContext) -> bool:
        if ctx.severity.rank >= self._announcer.page_rank or is_mining(ctx.rule, ctx.output):
            return True
        correlated = len(ctx.pods) >= self._settings.falco.correlate_pods
        return correlated and ctx.severity.rank >= Severity.HIGH.rank


FALCO_SEVERITY = {
    "emergency": Severity.CRITICAL,
    "alert": Severity.CRITICAL,
    "critical": Severity.CRITICAL,
    "error": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "notice": Severity.LOW,
    "informational": Severity.LOW,
    "info": Severity.LOW,
    "debug": Severity.INFO,
}
_MINING = re.compile(r"mining|miner|crypto ?jack|stratum\+|xmrig", re.IGNORECASE)


def is_mining(rule: str, output: str) -> bool:
    """Crypto-mining rules and outbound connections to pools are always critical and page."""
    return bool(_MINING.search(rule) or _MINING.search(output))


def falco_severity(alert: RuntimeAlert) -> Severity:
    if is_mining(alert.rule, alert.output):
        return Severity.CRITICAL
    return FALCO_SEVERITY.get(alert.priority.lower(), Severity.MEDIUM)


def _one(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


def _spread(ctx: render.RuntimeContext, alert: RuntimeAlert) -> render.RuntimeContext:
    def add(values: tuple[str, ...], value: str | None) -> tuple[str, ...]:
        return values if not value or value in values else (*values, value)[-200:]

    severity = max(ctx.severity, falco_severity(alert), key=lambda s: s.rank)
    return replace(
        ctx,
        count=ctx.count + 1,
        last_at=alert.time.isoformat(),
        severity=severity,
        pods=add(ctx.pods, alert.pod),
        workloads=add(ctx.workloads, alert.workload),
        namespaces=add(ctx.namespaces, alert.namespace),
        images=add(ctx.images, alert.image),
    )
