"""Installed packages against OSV records: one finding per vulnerability and package."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from bot.findings import Finding, Severity
from bot.vulns.osv import Affected, OsvRecord, affects, normalize_name
from bot.vulns.versions import VersionError, base_ecosystem, ecosystem_release, sort_key

TITLE_MAX = 150


@dataclass(frozen=True)
class Package:
    """An installed package. OS packages give the source package name OSV records use."""

    ecosystem: str
    name: str
    version: str
    purl: str | None = None
    distro: str | None = None  # e.g. "Debian:12"; scopes OS ecosystems to a release

    @property
    def target(self) -> str:
        """The ecosystem to match in, with the release: `Debian` + `Debian:12` → `Debian:12`."""
        if ecosystem_release(self.ecosystem) is not None or not self.distro:
            return self.ecosystem
        release = ecosystem_release(self.distro)
        if release is None or base_ecosystem(self.distro) != base_ecosystem(self.ecosystem):
            return self.ecosystem
        return f"{base_ecosystem(self.ecosystem)}:{release}"


@dataclass(frozen=True)
class VulnFinding:
    vuln_id: str
    aliases: tuple[str, ...]
    package: Package
    installed: str
    fixed_version: str | None
    severity: Severity
    summary: str


def _merge(pkg: Package, hits: list[Affected]) -> list[VulnFinding]:
    """Records that are the same vulnerability (linked by id or alias) become one finding.

    The finding takes the smallest id of the group, the worst severity, every other id and
    alias, and the highest fixed version (the one every database agrees is fixed).
    """
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for hit in hits:
        for alias in hit.aliases:
            a, b = root(hit.id), root(alias)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[Affected]] = defaultdict(list)
    for hit in hits:
        groups[root(hit.id)].append(hit)

    findings = []
    for group in groups.values():
        lead = min(group, key=lambda h: h.id)
        ids = {h.id for h in group} | {a for h in group for a in h.aliases}
        fixed = [h.fixed_version for h in group if h.fixed_version]
        try:
            best_fix = max(fixed, key=lambda v: sort_key(lead.ecosystem, v)) if fixed else None
        except VersionError:
            best_fix = lead.fixed_version or fixed[0]
        findings.append(
            VulnFinding(
                vuln_id=lead.id,
                aliases=tuple(sorted(ids - {lead.id})),
                package=pkg,
                installed=pkg.version,
                fixed_version=best_fix,
                severity=max((h.severity for h in group), key=lambda s: s.rank),
                summary=lead.summary,
            )
        )
    return findings


def match(packages: Iterable[Package], records: Iterable[OsvRecord]) -> list[VulnFinding]:
    """Every (vulnerability, package) hit, sorted by package (name, version, distro), then id."""
    index: dict[tuple[str, str], list[OsvRecord]] = defaultdict(list)
    for record in records:
        if record.withdrawn is not None:
            continue
        keys = {
            (base_ecosystem(p.ecosystem), normalize_name(p.ecosystem, p.name))
            for p in (e.package for e in record.affected)
            if p is not None
        }
        for key in keys:
            index[key].append(record)

    findings: list[VulnFinding] = []
    # Several binaries built from one source package share (target, name, version): one match.
    seen: set[tuple[str, str, str]] = set()
    for pkg in packages:
        if (pkg.target, pkg.name, pkg.version) in seen:
            continue
        seen.add((pkg.target, pkg.name, pkg.version))
        target = pkg.target
        key = (base_ecosystem(target), normalize_name(target, pkg.name))
        hits = [
            hit
            for record in index.get(key, ())
            if (hit := affects(record, target, pkg.name, pkg.version)) is not None
        ]
        findings += _merge(pkg, hits)
    findings.sort(
        key=lambda f: (f.package.name.lower(), f.package.version, f.package.distro or "", f.vuln_id)
    )
    return findings


def _truncate(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def to_finding(v: VulnFinding) -> Finding:
    """The finding the pipeline stores and posts: keyed by vulnerability id and "name version"."""
    name = v.package.name
    lines = [f"{name} {v.installed} ({v.package.ecosystem}) is affected by {v.vuln_id}."]
    if v.aliases:
        lines.append("Also known as " + ", ".join(v.aliases) + ".")
    if v.summary and v.summary != v.vuln_id:
        lines.append(_truncate(v.summary, 1000))
    if v.fixed_version:
        remediation = f"Upgrade {name} to {v.fixed_version} or later."
    else:
        remediation = f"No fix yet for {name}; watch {v.vuln_id} for a fixed version."
    return Finding(
        check_id=v.vuln_id,
        severity=v.severity,
        title=_truncate(v.summary or v.vuln_id, TITLE_MAX),
        detail="\n".join(lines),
        remediation=remediation,
        package=f"{name} {v.installed}",
        fixed_version=v.fixed_version,
    )
