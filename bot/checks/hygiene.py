"""Image configuration hygiene checks. Pure: ImageFacts in, findings out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from fnmatch import fnmatchcase

from bot.checks.base import Check, HygienePolicy
from bot.checks.entrypoint import suspicious_entrypoint
from bot.checks.files import LayerFacts, LayerPolicy, run_layer_checks
from bot.checks.secrets import secret_in_config
from bot.images.facts import ImageFacts, PlatformConfig
from bot.model.findings import Finding, Severity


def _is_root(user: str) -> bool:
    """An empty User runs as root, as do `root` and uid 0 with or without a group."""
    name = user.split(":", 1)[0].strip()
    return name in ("", "root", "0")


def runs_as_root(facts: ImageFacts, policy: HygienePolicy) -> Iterable[Finding]:
    root = [p for p in facts.platforms if _is_root(p.user)]
    if not root:
        return []
    where = ", ".join(_describe_user(p) for p in root)
    return [
        Finding(
            check_id="runs-as-root",
            severity=Severity.MEDIUM,
            title="Image runs as root",
            detail=f"The container process runs as root ({where}).",
            remediation="Add a non-root `USER` (e.g. `USER 10001:10001`) to the Dockerfile.",
        )
    ]


def _describe_user(p: PlatformConfig) -> str:
    user = f"User {p.user!r}" if p.user else "no User set"
    return f"{p.platform}: {user}"


def mutable_tag(facts: ImageFacts, policy: HygienePolicy) -> Iterable[Finding]:
    tag = facts.tag
    if tag is None or not any(fnmatchcase(tag, pattern) for pattern in policy.mutable_tags):
        return []
    return [
        Finding(
            check_id="mutable-tag",
            severity=Severity.LOW,
            title="Pushed under a mutable tag",
            detail=f"Tag {tag!r} is moved by every push, so what it names changes under you.",
            remediation="Push an immutable version tag and deploy by digest.",
        )
    ]


CHECKS: dict[str, Check] = {
    "runs-as-root": runs_as_root,
    "mutable-tag": mutable_tag,
    "secret-in-config": secret_in_config,
    "suspicious-entrypoint": suspicious_entrypoint,
}


def run_hygiene(facts: ImageFacts, policy: HygienePolicy) -> list[Finding]:
    findings: list[Finding] = []
    for check_id, check in CHECKS.items():
        if check_id not in policy.disabled:
            findings.extend(check(facts, policy))
    return findings


_SHOWN_GAPS = 5


def _lines(lines: list[str]) -> str:
    shown = "\n".join(f"• {line}" for line in lines[:_SHOWN_GAPS])
    more = len(lines) - _SHOWN_GAPS
    return shown + (f"\n…and {more} more" if more > 0 else "")


def scan_gaps(facts: ImageFacts, disabled: frozenset[str]) -> list[Finding]:
    """What the layer checks could not see, said as findings: a hostile image that blows a cap
    or withholds a layer must not read as a clean one."""
    multi = len(facts.platforms) > 1
    missing, limits = [], []
    for p in facts.platforms:
        where = f"{p.platform}: " if multi else ""
        missing += [f"{where}layer {u.digest[7:19] or '?'}: {u.reason}" for u in p.unscanned]
        limits += [f"{where}{limit}" for limit in p.scan_limits]
    findings = []
    if missing and "layers-not-scanned" not in disabled:
        findings.append(
            Finding(
                check_id="layers-not-scanned",
                severity=Severity.MEDIUM,
                title=(
                    "A layer could not be read: checked without it"
                    if len(missing) == 1
                    else f"{len(missing)} layers could not be read: checked without them"
                ),
                detail=_lines(missing),
                remediation="Make the layer blobs pullable by the bot (a foreign or missing "
                "layer can hide anything); a registry error is retried.",
            )
        )
    if limits and "scan-limit" not in disabled:
        findings.append(
            Finding(
                check_id="scan-limit",
                severity=Severity.MEDIUM,
                title="Scan stopped at a limit: part of the image was not checked",
                detail=_lines(limits),
                remediation="An image this large or odd is unusual: look at what was pushed, "
                "or raise the [scan] limit named (or max_image_bytes / scan_timeout).",
            )
        )
    return findings


def run_image_checks(facts: ImageFacts, policy: HygienePolicy, now: datetime) -> list[Finding]:
    """Config checks on the image, layer checks on each platform's files, one finding per key."""
    findings = run_hygiene(facts, policy)
    layer_policy = LayerPolicy(max_age_days=policy.max_age_days, disabled=policy.disabled)
    for platform in facts.platforms:
        if platform.filesystem is not None:
            layer_facts = LayerFacts(platform.filesystem, platform.created, now)
            findings.extend(run_layer_checks(layer_facts, layer_policy))
    findings.extend(scan_gaps(facts, policy.disabled))
    unique: dict[str, Finding] = {}
    for f in findings:
        if f.key not in unique or f.severity.rank > unique[f.key].severity.rank:
            unique[f.key] = f
    return list(unique.values())
