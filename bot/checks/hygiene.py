"""Image configuration hygiene checks. Pure: ImageFacts in, findings out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase

from bot.checks.entrypoint import suspicious_entrypoint
from bot.checks.layers import LayerFacts, LayerPolicy, run_layer_checks
from bot.checks.secrets import secret_in_config
from bot.findings import Finding, Severity
from bot.images import ImageFacts, PlatformConfig


@dataclass(frozen=True)
class HygienePolicy:
    mutable_tags: tuple[str, ...] = ("latest",)
    disabled: frozenset[str] = frozenset()
    max_age_days: int = 180


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


Check = Callable[[ImageFacts, HygienePolicy], Iterable[Finding]]
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


def run_image_checks(facts: ImageFacts, policy: HygienePolicy, now: datetime) -> list[Finding]:
    """Config checks on the image, layer checks on each platform's files, one finding per key."""
    findings = run_hygiene(facts, policy)
    layer_policy = LayerPolicy(max_age_days=policy.max_age_days, disabled=policy.disabled)
    for platform in facts.platforms:
        if platform.filesystem is not None:
            layer_facts = LayerFacts(platform.filesystem, platform.created, now)
            findings.extend(run_layer_checks(layer_facts, layer_policy))
        elif platform.layer_error and "scan-incomplete" not in policy.disabled:
            findings.append(
                Finding(
                    check_id="scan-incomplete",
                    severity=Severity.INFO,
                    title="Layers not scanned",
                    detail=f"{platform.platform}: {platform.layer_error}",
                    remediation="Raise max_image_bytes or scan_timeout for this registry, "
                    "or check the registry's health.",
                )
            )
    unique: dict[str, Finding] = {}
    for f in findings:
        if f.key not in unique or f.severity.rank > unique[f.key].severity.rank:
            unique[f.key] = f
    return list(unique.values())
