"""Admission decisions for workloads, as Kubernetes asks for them (ValidatingAdmissionWebhook).

`audit` allows everything and warns; `enforce` denies a workload whose violations no Approve
decision covers, and one that runs an image with an unapproved, critical, fixable finding.
Either way the findings go to the owning team through the inbox, so the answer stays fast.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.cluster.policy import Workload, evaluate, parse_image, violations_message
from bot.config import Settings
from bot.model.events import WorkloadSeen
from bot.model.findings import Finding, Severity
from bot.store import tracking
from bot.store.db import Database
from bot.store.models import Suppression

MAX_WARNINGS = 10


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = field(default=())


def workload_subject(cluster: str, namespace: str, kind: str, name: str) -> tuple[str, str]:
    """The (registry, repository) pair a workload's findings are tracked and approved under."""
    return f"k8s:{cluster}", f"{namespace}/{kind.lower()}/{name}"


def seen_event(workload: Workload, obj: Mapping[str, Any]) -> WorkloadSeen:
    spec = json.dumps(workload.pod_spec, sort_keys=True, default=str)
    fingerprint = hashlib.sha256(spec.encode()).hexdigest()[:24]
    return WorkloadSeen(
        delivery_id=f"{workload.cluster}/{workload.namespace}/{workload.kind}/{workload.name}/"
        f"{fingerprint}"[:200],
        cluster=workload.cluster,
        namespace=workload.namespace,
        kind=workload.kind,
        name=workload.name,
        labels={str(k): str(v) for k, v in workload.labels.items()},
        object=dict(obj),
    )


class AdmissionControl:
    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db

    async def review(self, workload: Workload, now: datetime) -> Verdict:
        findings = evaluate(workload, self._settings.policy)
        warnings = tuple(_warning(f) for f in findings[:MAX_WARNINGS])
        if self._settings.admission.mode == "audit":
            return Verdict(True, "", warnings, tuple(findings))
        registry, repository = workload_subject(
            workload.cluster, workload.namespace, workload.kind, workload.name
        )
        async with self._db.transaction() as s:
            approvals = await tracking.suppressions_for(
                s, team=None, registry=registry, repository=repository
            )
            blocked = [f for f in findings if not _approved(f, approvals, now)]
            vulnerable = await self._vulnerable_images(s, workload, now)
        if not blocked and not vulnerable:
            return Verdict(True, "", warnings, tuple(findings))
        parts = []
        if blocked:
            parts.append(violations_message(blocked))
        if vulnerable:
            parts.append(
                "Images with unapproved critical fixable findings: " + "; ".join(vulnerable)
            )
        message = "\n".join(parts)[:2000]
        return Verdict(False, message, warnings, tuple(findings))

    async def _vulnerable_images(self, s: Any, workload: Workload, now: datetime) -> list[str]:
        problems = []
        for container in containers_of(workload.pod_spec):
            image = parse_image(container.get("image"))
            registry = next(
                (r for r in self._settings.registries if image and r.host == image.registry),
                None,
            )
            if image is None or registry is None:
                continue
            rows = await tracking.tracked_for(s, registry.name, image.path)
            approvals = await tracking.suppressions_for(
                s,
                team=rows[0].team if rows else None,
                registry=registry.name,
                repository=image.path,
            )
            for row in rows:
                if (
                    row.status == tracking.OPEN
                    and row.fixed_version
                    and Severity(row.severity) is Severity.CRITICAL
                    and not any(
                        tracking.active(a, now, row)
                        and a.kind == "approve"
                        and tracking.covers(
                            a,
                            check_id=row.check_id,
                            package=row.package,
                            digest=row.last_seen_digest,
                        )
                        for a in approvals
                    )
                ):
                    problems.append(f"{image.path}: {row.check_id} (fixed in {row.fixed_version})")
        return problems


def _approved(f: Finding, approvals: list[Suppression], now: datetime) -> bool:
    return any(
        a.kind == "approve"
        and tracking.active(a, now)
        and tracking.covers(a, check_id=f.check_id, package=f.package or "", digest="")
        for a in approvals
    )


def containers_of(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        items = spec.get(key)
        if isinstance(items, list):
            found += [c for c in items if isinstance(c, Mapping)]
    return found


def _warning(f: Finding) -> str:
    where = f" ({f.package})" if f.package else ""
    return f"{f.check_id}{where}: {f.title}"[:250]
