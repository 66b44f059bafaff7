"""What a team asks of its images beyond the common checks, and its own grading of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from fnmatch import fnmatchcase

from bot.images.facts import ImageFacts
from bot.model.findings import Finding, Severity

BASE_LABEL = "org.opencontainers.image.base.name"


def unsigned(signed: bool | None) -> list[Finding]:
    """`signed` is None when the registry could not say (then nothing is claimed)."""
    if signed is None or signed:
        return []
    return [
        Finding(
            check_id="unsigned",
            severity=Severity.HIGH,
            title="Image is not signed",
            detail="No cosign signature: neither a `sha256-<digest>.sig` tag nor an OCI "
            "referrer of a signature type was found for this digest.",
            remediation="Sign the image in CI (`cosign sign --yes IMAGE@DIGEST`) after pushing.",
        )
    ]


def untrusted_base(facts: ImageFacts, allowed: Sequence[str]) -> list[Finding]:
    if not allowed:
        return []
    bases = {v for p in facts.platforms for k, v in p.labels if k == BASE_LABEL}
    outside = sorted(b for b in bases if not any(fnmatchcase(b, pattern) for pattern in allowed))
    if not bases:
        detail = f"The image does not say what it was built from (no {BASE_LABEL} label)."
    elif outside:
        detail = f"Built from {', '.join(outside)}, which is not an allowed base."
    else:
        return []
    return [
        Finding(
            check_id="untrusted-base",
            severity=Severity.MEDIUM,
            title="Base image outside the allowed list",
            detail=detail,
            remediation="Build FROM one of the team's allowed bases: " + ", ".join(allowed),
        )
    ]


def graded(
    findings: Sequence[Finding], disabled: frozenset[str], severities: Mapping[str, Severity]
) -> list[Finding]:
    """Drop turned-off checks and apply the configured severities."""
    out = []
    for f in findings:
        if f.check_id in disabled:
            continue
        grade = severities.get(f.check_id)
        out.append(replace(f, severity=grade) if grade is not None else f)
    return out
