"""Installed packages against OSV records: one finding per vulnerability and package."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from bot.model.findings import Finding, Severity
from bot.vulns.osv import Compiled, OsvRecord, compile_record, normalize_name
from bot.vulns.table import NameTable, Vulnerability
from bot.vulns.versions import base_ecosystem, ecosystem_release

TITLE_MAX = 150


@dataclass(frozen=True)
class Package:
    """An installed package. OS packages give the source package name OSV records use."""

    ecosystem: str
    name: str
    version: str
    purl: str | None = None
    distro: str | None = None  # e.g. "Debian:12"; scopes OS ecosystems to a release

    @functools.cached_property
    def target(self) -> str:
        """The ecosystem to match in, with the release: `Debian` + `Debian:12` → `Debian:12`."""
        if ecosystem_release(self.ecosystem) is not None or not self.distro:
            return self.ecosystem
        release = ecosystem_release(self.distro)
        if release is None or base_ecosystem(self.distro) != base_ecosystem(self.ecosystem):
            return self.ecosystem
        return f"{base_ecosystem(self.ecosystem)}:{release}"


class VulnFinding(NamedTuple):
    """A vulnerability of an installed package (a tuple: matching makes thousands at once)."""

    vuln_id: str
    aliases: tuple[str, ...]
    package: Package
    installed: str
    fixed_version: str | None
    severity: Severity
    summary: str


#: What advisories are looked up and compiled by: base ecosystem and normalised name.
NameKey = tuple[str, str]


def name_key(pkg: Package) -> NameKey:
    return base_ecosystem(pkg.target), normalize_name(pkg.target, pkg.name)


def compile_index(records: Iterable[OsvRecord]) -> dict[NameKey, NameTable]:
    """The records compiled, one table per package name they affect, in the order given."""
    by_name: dict[NameKey, list[Compiled]] = defaultdict(list)
    for record in records:
        for key, compiled in compile_record(record).items():
            by_name[key].append(compiled)
    return {key: NameTable(found) for key, found in by_name.items()}


def match(packages: Iterable[Package], records: Iterable[OsvRecord]) -> list[VulnFinding]:
    """Every (vulnerability, package) hit, sorted by package (name, version, distro), then id."""
    return match_compiled(packages, compile_index(records))


def match_compiled(
    packages: Iterable[Package], index: Mapping[NameKey, NameTable]
) -> list[VulnFinding]:
    """`match` on records already compiled, e.g. those `Vulnerabilities` keeps between calls."""
    return [
        VulnFinding(v.id, v.aliases, pkg, pkg.version, v.fixed_version, v.severity, v.summary)
        for pkg, found in matches(packages, index)
        for v in found
    ]


#: A vulnerable package and its vulnerabilities, in id order.
Matched = tuple[Package, tuple[Vulnerability, ...]]


def matches(packages: Iterable[Package], index: Mapping[NameKey, NameTable]) -> list[Matched]:
    """Each vulnerable package with what hits it, sorted by package (name, version, distro):
    the matcher's answer before any finding is built from it."""
    # Several binaries built from one source package share (target, name, version): one match.
    unique: dict[tuple[str, str, str], Package] = {}
    for pkg in packages:
        unique.setdefault((pkg.target, pkg.name, pkg.version), pkg)
    out: list[Matched] = []
    for pkg in sorted(unique.values(), key=lambda p: (p.name.lower(), p.version, p.distro or "")):
        table = index.get(name_key(pkg))
        if table is not None and (found := table.vulnerabilities(pkg.target, pkg.version)):
            out.append((pkg, found))
    return out


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@functools.lru_cache(maxsize=65536)
def _about(vuln_id: str, aliases: tuple[str, ...], summary: str) -> tuple[str, str]:
    """A vulnerability's title and the lines of its detail that are the same in every package
    it hits: worked out once, not per finding (an inventory meets one in many versions)."""
    text = " ".join(summary.split())
    lines = "\nAlso known as " + ", ".join(aliases) + "." if aliases else ""
    if text and text != vuln_id:
        lines += "\n" + _truncate(text, 1000)
    return _truncate(text or vuln_id, TITLE_MAX), lines


def to_findings(matched: Iterable[Matched]) -> list[Finding]:
    """The findings the pipeline stores and posts: keyed by vulnerability id and "name version"."""
    out = []
    for pkg, found in matched:
        name = pkg.name
        package = f"{name} {pkg.version}"
        affected = f"{package} ({pkg.ecosystem}) is affected by"
        for v in found:
            title, about = _about(v.id, v.aliases, v.summary)
            if v.fixed_version:
                remediation = f"Upgrade {name} to {v.fixed_version} or later."
            else:
                remediation = f"No fix yet for {name}; watch {v.id} for a fixed version."
            out.append(
                Finding(
                    check_id=v.id,
                    severity=v.severity,
                    title=title,
                    detail=f"{affected} {v.id}.{about}",
                    remediation=remediation,
                    package=package,
                    fixed_version=v.fixed_version,
                )
            )
    return out
