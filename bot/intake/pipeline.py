"""What happens to each inbox event: fetch, check, record, and owe Slack a message."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from bot.checks.base import HygienePolicy
from bot.checks.hygiene import run_image_checks
from bot.checks.team import graded, unsigned, untrusted_base
from bot.cluster.admission import containers_of, workload_subject
from bot.cluster.policy import Workload, evaluate, parse_image
from bot.config import Registry, Settings, Team
from bot.findings.announce import Announcer, Push
from bot.findings.routing import route_namespace, route_repository, route_workload
from bot.findings.runtime import RuntimeAlerts, falco_severity
from bot.images.facts import ImageFacts
from bot.images.inventory import packages_of
from bot.images.registry_client import PermanentRegistryError, RegistryClient
from bot.infra.clock import Clock
from bot.intake.worker import Apply, PermanentError
from bot.model.events import (
    MAX_RESCANS,
    Event,
    ImageDeleted,
    ImagePushed,
    RuntimeAlert,
    ScanCompleted,
    WorkloadObserved,
    WorkloadSeen,
    dump_event,
)
from bot.model.findings import Finding, Severity
from bot.slack import render
from bot.store import cluster as cluster_store
from bot.store import images, inbox, tracking
from bot.store.db import Database
from bot.store.memo import transaction_memo
from bot.vulns.match import Package
from bot.vulns.reports import ReportError, ReportFinding, ScannerError, parse_harbor, run_trivy
from bot.vulns.reports import to_finding as report_finding
from bot.vulns.service import Vulnerabilities

log = logging.getLogger(__name__)


def policy_from(settings: Settings) -> HygienePolicy:
    return HygienePolicy(
        mutable_tags=settings.checks.mutable_tags,
        disabled=frozenset(settings.checks.disabled),
        max_age_days=settings.checks.max_age_days,
    )


class Pipeline:
    """The inbox workers' event handler."""

    def __init__(
        self,
        settings: Settings,
        registry_client: RegistryClient,
        clock: Clock,
        announcer: Announcer,
        vulns: Vulnerabilities,
        db: Database,
    ) -> None:
        self._settings = settings
        self._db = db
        self._scans = asyncio.Semaphore(settings.scan.concurrent_scans)
        self._vulns = vulns
        self._announcer = announcer
        self._runtime_alerts = RuntimeAlerts(settings, announcer)
        self._client = registry_client
        self._clock = clock
        self._policy = policy_from(settings)

    async def __call__(self, source: str, event: Event) -> Apply:
        if isinstance(event, ImagePushed):
            return await self._pushed(source, event)
        if isinstance(event, RuntimeAlert):
            return partial(self._runtime, event)
        if isinstance(event, ScanCompleted):
            return await self._scan_completed(event)
        if isinstance(event, WorkloadSeen):
            return partial(self._workload, event)
        if isinstance(event, WorkloadObserved):
            return partial(self._observed, event)
        assert isinstance(event, ImageDeleted)
        return partial(self._deleted, event)

    async def _workload(self, event: WorkloadSeen, session: AsyncSession) -> None:
        """Policy findings of an admitted workload, posted and followed like an image's."""
        workload = Workload.from_object(
            event.object, cluster=event.cluster, namespace=event.namespace, kind=event.kind
        )
        if workload is not None:
            await self._check_workload(workload, session)

    async def _observed(self, event: WorkloadObserved, session: AsyncSession) -> None:
        """A workload the watcher saw start, change or go: inventory, then policy."""
        now = self._clock.now()
        if event.deleted:
            await cluster_store.stopped(session, event.cluster, event.uid, now)
            return
        await self._inventory(event, session, now)
        if event.owner:
            return  # a Pod its controller owns is checked through the controller's template
        workload = Workload(
            cluster=event.cluster,
            namespace=event.namespace,
            kind=event.kind,
            name=event.name,
            labels=event.labels,
            pod_spec=event.pod_spec,
        )
        await self._check_workload(workload, session)

    async def _inventory(
        self, event: WorkloadObserved, session: AsyncSession, now: datetime
    ) -> None:
        """Record what runs; an image of a configured registry never seen before is checked
        as if it had just been pushed (queued in this same transaction, so exactly once)."""
        rows = []
        new_images = []
        for c in event.containers:
            ref = parse_image(c.image) if c.image else None
            registry = next(
                (
                    r
                    for r in self._settings.registries
                    if ref is not None and r.host == ref.registry
                ),
                None,
            )
            digest = c.image_id or (ref.digest if ref else None)
            repository = ref.path if ref and registry else None
            rows.append((c.name, c.image, registry.name if registry else None, repository, digest))
            if (
                registry
                and repository
                and digest
                and not await cluster_store.known_image(session, registry.name, repository, digest)
            ):
                new_images.append(
                    ImagePushed(
                        delivery_id=f"running:{registry.name}/{repository}@{digest}",
                        registry=registry.name,
                        repository=repository,
                        digest=digest,
                        tag=ref.tag if ref else None,
                    )
                )
        if event.kind == "Pod":
            await cluster_store.observe(
                session,
                cluster=event.cluster,
                namespace=event.namespace,
                kind=event.kind,
                name=event.owner or event.name,
                uid=event.uid,
                containers=rows,
                now=now,
            )
        await inbox.add(
            session,
            [
                inbox.NewEvent(f"cluster:{event.cluster}", e.delivery_id, e.type, dump_event(e))
                for e in new_images
            ],
            now,
        )

    async def _check_workload(self, workload: Workload, session: AsyncSession) -> None:
        findings = evaluate(workload, self._settings.policy)
        route = route_workload(self._settings, workload.namespace, dict(workload.labels))
        team = self._settings.team(route.team)
        registry, repository = workload_subject(
            workload.cluster, workload.namespace, workload.kind, workload.name
        )
        spec = json.dumps(workload.pod_spec, sort_keys=True, default=str).encode()
        images = sorted({str(c.get("image")) for c in containers_of(workload.pod_spec)})
        push = Push(
            context=render.PushContext(
                registry=registry,
                registry_host=workload.cluster,
                repository=repository,
                digest="sha256:" + hashlib.sha256(spec).hexdigest(),
                platforms=tuple(images),
                team=route.team,
                subject_kind="workload",
            ),
            tag=None,
            channel=route.channel,
            critical_channel=team.critical_channel if team else None,
        )
        await self._announcer.record_push(session, push, findings, self._clock.now())

    async def _scan_completed(self, event: ScanCompleted) -> Apply:
        """Harbor's report joins the built-in findings; the same vulnerability is posted once."""
        registry = self._settings.registry(event.registry)
        if registry is None:
            raise PermanentError(f"registry {event.registry!r} is no longer configured")
        try:
            report = await self._client.harbor_report(registry, event.repository, event.digest)
            found = parse_harbor(report)
        except PermanentRegistryError as exc:
            raise PermanentError(str(exc)) from exc
        except ReportError as exc:
            raise PermanentError(f"Harbor report: {exc}") from exc
        route = route_repository(
            self._settings.teams, event.repository, self._settings.slack.fallback_channel
        )
        team = self._settings.team(route.team)
        push = Push(
            context=render.PushContext(
                registry=registry.name,
                registry_host=registry.host,
                repository=event.repository,
                digest=event.digest,
                tags=(event.tag,) if event.tag else (),
                team=route.team,
            ),
            tag=event.tag,
            channel=route.channel,
            critical_channel=team.critical_channel if team else None,
        )
        return partial(self._record_report, push, found)

    async def _record_report(
        self, push: Push, found: list[ReportFinding], session: AsyncSession
    ) -> None:
        ctx = push.context
        known = await tracking.tracked_for(session, ctx.registry, ctx.repository)
        ids = {t.check_id for t in known}
        fresh = [r for r in found if r.vuln_id not in ids and not ids & set(r.aliases)]
        await self._announcer.record_push(
            session, push, [report_finding(r) for r in fresh], self._clock.now(), complete=False
        )

    async def _runtime(self, event: RuntimeAlert, session: AsyncSession) -> None:
        route = route_namespace(
            self._settings.teams, event.namespace, self._settings.slack.fallback_channel
        )
        team = self._settings.team(route.team)
        channel = route.channel
        if team is not None and team.critical_channel and falco_severity(event).rank >= 4:
            channel = team.critical_channel
        await self._runtime_alerts.record(session, event, route.team, channel, self._clock.now())

    async def _pushed(self, source: str, event: ImagePushed) -> Apply:
        """Read, check and inventory the image, a few images at a time (`concurrent_scans`):
        what one image holds in memory is bounded by the scan caps, so this bounds the sum."""
        registry = self._settings.registry(event.registry)
        if registry is None:
            raise PermanentError(f"registry {event.registry!r} is no longer configured")
        async with self._scans:
            return await self._scan_pushed(source, event, registry)

    async def _scan_pushed(self, source: str, event: ImagePushed, registry: Registry) -> Apply:
        try:
            reference = event.digest or event.tag
            assert reference is not None
            facts = await self._client.image_facts(registry, event.repository, reference, event.tag)
        except PermanentRegistryError as exc:
            raise PermanentError(str(exc)) from exc
        route = route_repository(
            self._settings.teams, event.repository, self._settings.slack.fallback_channel
        )
        team = self._settings.team(route.team)
        facts, packages = await asyncio.to_thread(self._inventory_of, facts)
        findings = await self._findings(registry, facts, team, packages)
        await images.record_inventory(
            self._db,
            registry=event.registry,
            repository=event.repository,
            digest=facts.digest,
            media_type=facts.media_type,
            packages=packages,
            limit=self._settings.scan.max_packages_per_image,
            now=self._clock.now(),
        )
        push = Push(
            context=render.PushContext(
                registry=registry.name,
                registry_host=registry.host,
                repository=event.repository,
                digest=facts.digest,
                tags=(event.tag,) if event.tag else (),
                actor=event.actor,
                platforms=tuple(p.platform for p in facts.platforms),
                team=route.team,
            ),
            tag=event.tag,
            channel=route.channel,
            critical_channel=team.critical_channel if team else None,
        )
        rescan = self._rescan(source, event, facts)
        return partial(
            self._record_push, event, facts.media_type, facts.digest, findings, push, rescan
        )

    def _rescan(self, source: str, event: ImagePushed, facts: ImageFacts) -> inbox.NewEvent | None:
        """The same push again, later, when a layer failed in a way that may pass (a 5xx, a
        timeout): it is announced now without that layer, and the re-read's findings join
        the same message (`layers-not-scanned` then reads as fixed)."""
        if event.rescan >= MAX_RESCANS or not any(
            u.transient for p in facts.platforms for u in p.unscanned
        ):
            return None
        again = event.model_copy(update={"digest": facts.digest, "rescan": event.rescan + 1})
        worker = self._settings.worker
        delay = min(worker.max_retry_backoff, worker.retry_backoff * 8**again.rescan)
        return inbox.NewEvent(
            source,
            f"{event.delivery_id[:180]}#rescan-{again.rescan}",
            again.type,
            dump_event(again),
            available_at=self._clock.now() + timedelta(seconds=delay),
        )

    def _inventory_of(self, facts: ImageFacts) -> tuple[ImageFacts, list[Package]]:
        """The image's packages up to `max_packages_per_image`; past it, the facts carry the
        cap as a scan limit. CPU-bound on what a pusher chose: run it off the event loop."""
        cap = self._settings.scan.max_packages_per_image
        packages = packages_of(facts, cap)
        if len(packages) <= cap or not facts.platforms:
            return facts, packages
        note = (
            f"more than {cap:,} installed packages per image (max_packages_per_image): "
            "the rest were not read"
        )
        first = facts.platforms[0]
        first = replace(first, scan_limits=(*first.scan_limits, note))
        return replace(facts, platforms=(first, *facts.platforms[1:])), packages[:cap]

    async def _findings(
        self, registry: Registry, facts: ImageFacts, team: Team | None, packages: list[Package]
    ) -> list[Finding]:
        """The common checks, known vulnerabilities, then what the owning team asks for."""
        findings = await asyncio.to_thread(run_image_checks, facts, self._policy, self._clock.now())
        findings += await self._vulns.findings(packages)
        if self._settings.vulns.scanner == "trivy":
            findings += await self._trivy(registry, facts, findings)
        severities = {k: Severity(v) for k, v in self._settings.checks.severities.items()}
        disabled: frozenset[str] = frozenset()
        if team is not None:
            if team.require_signatures:
                signed = await self._client.signed(registry, facts.repository, facts.digest)
                findings += unsigned(signed)
            findings += untrusted_base(facts, team.allowed_bases)
            severities |= {k: Severity(v) for k, v in team.severities.items()}
            disabled = frozenset(team.disabled_checks)
        return graded(findings, disabled | self._policy.disabled, severities)

    async def _trivy(
        self, registry: Registry, facts: ImageFacts, known: list[Finding]
    ) -> list[Finding]:
        """Trivy's findings that the built-in matcher did not already report (by id or alias)."""
        vulns = self._settings.vulns
        ref = f"{registry.host}/{facts.repository}@{facts.digest}"
        try:
            found = await run_trivy(ref, timeout=vulns.trivy_timeout, trivy=vulns.trivy_path)
        except ScannerError as exc:
            log.warning("trivy on %s failed: %s", ref, exc)
            return []
        ids = {f.check_id for f in known}
        return [
            report_finding(r) for r in found if r.vuln_id not in ids and not ids & set(r.aliases)
        ]

    async def _record_push(
        self,
        event: ImagePushed,
        media_type: str,
        digest: str,
        findings: list[Finding],
        push: Push,
        rescan: inbox.NewEvent | None,
        session: AsyncSession,
    ) -> None:
        """The push, its findings and its message, with the event's `done`; its packages were
        written before, in batches (`images.record_inventory`), and show from this commit.
        A re-read of layers that failed is queued in the same transaction (exactly once)."""
        now = self._clock.now()
        image_id = await images.record_push(
            session,
            registry=event.registry,
            repository=event.repository,
            digest=digest,
            media_type=media_type,
            tag=event.tag,
            actor=event.actor,
            now=now,
        )
        # One digest pushed under several tags in one transaction: its findings are inserted
        # once.
        memo = transaction_memo(session)
        recorded: set[tuple[str, str]] = memo.setdefault(("findings", image_id), set())
        fresh = [f for f in findings if (f.check_id, f.package or "") not in recorded]
        await images.record_findings(session, image_id, fresh, now)
        recorded.update((f.check_id, f.package or "") for f in fresh)
        await self._announcer.record_push(session, push, findings, now)
        if rescan is not None:
            await inbox.add(session, [rescan], now)

    async def _deleted(self, event: ImageDeleted, session: AsyncSession) -> None:
        await images.mark_deleted(
            session,
            registry=event.registry,
            repository=event.repository,
            digest=event.digest,
            now=self._clock.now(),
        )
