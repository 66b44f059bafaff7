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


def worst_first(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.severity.rank, f.check_id, f.package or ""))
