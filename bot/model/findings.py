"""Findings and their severities: what a check reports about an image."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is worse; used to sort and to compare against fail levels."""
        return _RANK[self]


_RANK = {
    Severity.CRITICAL: 4,
    Severity.HIGH: 3,
    Severity.MEDIUM: 2,
    Severity.LOW: 1,
    Severity.INFO: 0,
}


@dataclass(frozen=True)
class Finding:
    """One problem found in one image by one check (or one vulnerability in one package)."""

    check_id: str
    severity: Severity
    title: str
    detail: str
    remediation: str
    package: str | None = None
    fixed_version: str | None = None

    @property
    def key(self) -> str:
        """What makes two findings the same finding: the check (or vulnerability) and package."""
        return f"{self.check_id}|{self.package or ''}"


class Scope(StrEnum):
    """What an Ignore covers (an Approve always covers its repository)."""

    IMAGE = "image"
    REPOSITORY = "repository"
    #: The check or vulnerability in every repository of the team.
    VULNERABILITY = "vulnerability"


class Expiry(StrEnum):
    """How long an Approve or an Ignore holds: a number of days, or until a fix exists."""

    DAYS_7 = "7"
    DAYS_30 = "30"
    DAYS_90 = "90"
    UNTIL_FIX = "fix"

    @property
    def days(self) -> int | None:
        return None if self is Expiry.UNTIL_FIX else int(self.value)


class SuppressionKind(StrEnum):
    APPROVE = "approve"
    IGNORE = "ignore"


class DecisionKind(StrEnum):
    """The audit log's actions (`decisions.action`), besides `<kind>-expired`."""

    APPROVE = "approve"
    IGNORE = "ignore"
    PATCH = "patch"
    PATCH_HOOK = "patch-hook"
    ACK = "ack"
    ESCALATE = "escalate"
    #: Someone tried a decision they may not take: nothing changed.
    REFUSED = "refused"


def worst_first(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.severity.rank, f.check_id, f.package or ""))
