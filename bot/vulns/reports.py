"""Vulnerability reports from scanners, read into one shape: Trivy, Grype and Harbor.

* `parse_trivy`: `trivy image --format json` (SchemaVersion 2: `Results[].Vulnerabilities[]`;
  the older bare list of results too).
* `parse_grype`: `grype -o json` (`matches[]` of `vulnerability`, `artifact`,
  `relatedVulnerabilities`, `matchDetails`).
* `parse_harbor`: the Harbor pluggable-scanner report,
  `application/vnd.security.vulnerability.report; version=1.1` (`vulnerabilities[]`), bare or
  in the REST answer's wrapper `{"<that mime type>": {…report…}}`.
* `detect_and_parse`: any of them, told apart by shape.

Severities become `bot.model.findings.Severity`: Critical, High, Medium (and Moderate), Low;
Negligible is low; Unknown, None or anything else is info.

One report may name the same vulnerability twice for one package: Trivy once per file the
package was found in, Grype once per database (`GHSA-…` with its `CVE-…` as related, and the
`CVE-…` again from NVD). Those become one `ReportFinding` per package and version: records whose
ids are linked (one lists the other among its aliases, or they have the same id) are merged,
with the smallest id leading (as `bot.vulns.match` does), the others as aliases, the worst
severity and the first fixed version. Ids that merely share an alias (two CVEs in one DSA) are
not merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from bot.model.findings import Finding, Severity

TITLE_MAX = 150
_STDERR_SHOWN = 500

HARBOR_REPORT_MIME = "application/vnd.security.vulnerability.report; version=1.1"


class ReportError(ValueError):
    """The data is not a report of the expected kind (or of any known kind)."""


class ScannerError(Exception):
    """Running the scanner failed: not found, timed out, exited non-zero, or gave no report."""


@dataclass(frozen=True)
class ReportFinding:
    vuln_id: str
    aliases: tuple[str, ...]
    package_name: str
    installed: str
    fixed_version: str | None
    severity: Severity
    title: str
    source: str
    """Which scanner reported it: `trivy`, `grype` or `harbor`."""
    purl: str | None = None
    """The package's purl, when the report gives one (Trivy, Grype)."""


_SEVERITIES = {
    "critical": Severity.CRITICAL,
    "high": Severity.HIGH,
    "important": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "moderate": Severity.MEDIUM,
    "low": Severity.LOW,
    "negligible": Severity.LOW,
}


def normalise_severity(value: object) -> Severity:
    """A scanner's severity word as ours; unknown words (and none) are info."""
    if not isinstance(value, str):
        return Severity.INFO
    return _SEVERITIES.get(value.strip().lower(), Severity.INFO)


# --- reading JSON safely -----------------------------------------------------------------------


def _load(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ReportError(f"not JSON: {e}") from None
    except RecursionError:
        raise ReportError("JSON nested too deep") from None


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReportError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ReportError(f"{where}: no {key}")
    return value.strip()


def _opt(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value.strip() or None if isinstance(value, str) else None


def _title(*texts: object) -> str:
    """The first non-empty text, on one line, cut at `TITLE_MAX`."""
    for text in texts:
        if isinstance(text, str) and text.strip():
            line = " ".join(text.split())
            return line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1].rstrip() + "…"
    return ""


# --- Trivy -------------------------------------------------------------------------------------


def parse_trivy(data: bytes | str) -> list[ReportFinding]:
    """`trivy image --format json`: every vulnerability of every result."""
    return _trivy(_load(data))


def _trivy(doc: Any) -> list[ReportFinding]:
    if isinstance(doc, list):  # before SchemaVersion 2: the results themselves
        results = doc
    else:
        report = _obj(doc, "Trivy report")
        if "Results" not in report and "SchemaVersion" not in report:
            raise ReportError("Trivy report: no SchemaVersion or Results")
        results = _list(report.get("Results"), "Results")
    out: list[ReportFinding] = []
    for i, raw in enumerate(results):
        result = _obj(raw, f"Results[{i}]")
        for j, item in enumerate(_list(result.get("Vulnerabilities"), f"Results[{i}]")):
            where = f"Results[{i}].Vulnerabilities[{j}]"
            v = _obj(item, where)
            vuln_id = _str(v, "VulnerabilityID", where)
            identifier = v.get("PkgIdentifier")
            purl = _opt(identifier, "PURL") if isinstance(identifier, dict) else None
            out.append(
                ReportFinding(
                    vuln_id=vuln_id,
                    aliases=_ids(v.get("VendorIDs"), vuln_id),
                    package_name=_str(v, "PkgName", where),
                    installed=_opt(v, "InstalledVersion") or "",
                    fixed_version=_opt(v, "FixedVersion"),
                    severity=normalise_severity(v.get("Severity")),
                    title=_title(v.get("Title"), v.get("Description"), vuln_id),
                    source="trivy",
                    purl=purl,
                )
            )
    return merge_duplicates(out)


def _ids(values: Any, own: str) -> tuple[str, ...]:
    if not isinstance(values, list):
        return ()
    seen: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and value.strip() and value.strip() != own:
            seen.setdefault(value.strip(), None)
    return tuple(seen)


# --- Grype -------------------------------------------------------------------------------------


def parse_grype(data: bytes | str) -> list[ReportFinding]:
    """`grype -o json`: every match."""
    return _grype(_load(data))


def _grype(doc: Any) -> list[ReportFinding]:
    report = _obj(doc, "Grype report")
    if "matches" not in report:
        raise ReportError("Grype report: no matches")
    out: list[ReportFinding] = []
    for i, item in enumerate(_list(report["matches"], "matches")):
        where = f"matches[{i}]"
        match = _obj(item, where)
        vuln = _obj(match.get("vulnerability"), f"{where}.vulnerability")
        artifact = _obj(match.get("artifact"), f"{where}.artifact")
        vuln_id = _str(vuln, "id", f"{where}.vulnerability")
        related = [
            r for r in _list(match.get("relatedVulnerabilities"), where) if isinstance(r, dict)
        ]
        out.append(
            ReportFinding(
                vuln_id=vuln_id,
                aliases=_ids([r.get("id") for r in related], vuln_id),
                package_name=_str(artifact, "name", f"{where}.artifact"),
                installed=_opt(artifact, "version") or "",
                fixed_version=_grype_fix(match, vuln),
                severity=normalise_severity(vuln.get("severity")),
                title=_title(
                    vuln.get("description"), *(r.get("description") for r in related), vuln_id
                ),
                source="grype",
                purl=_opt(artifact, "purl"),
            )
        )
    return merge_duplicates(out)


def _grype_fix(match: Mapping[str, Any], vuln: Mapping[str, Any]) -> str | None:
    """The fix Grype suggests for the installed version, else every fixed version listed."""
    details = match.get("matchDetails")
    for detail in details if isinstance(details, list) else []:
        fix = detail.get("fix") if isinstance(detail, dict) else None
        if isinstance(fix, dict) and _opt(fix, "suggestedVersion"):
            return _opt(fix, "suggestedVersion")
    fix = vuln.get("fix")
    versions = fix.get("versions") if isinstance(fix, dict) else None
    items = versions if isinstance(versions, list) else []
    listed = [v.strip() for v in items if isinstance(v, str) and v.strip()]
    return ", ".join(listed) or None


# --- Harbor ------------------------------------------------------------------------------------


def parse_harbor(data: bytes | str) -> list[ReportFinding]:
    """A Harbor vulnerability report (v1.1), bare or in the REST wrapper."""
    return _harbor(_load(data))


def _unwrap_harbor(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    if "vulnerabilities" in doc:
        return doc
    reports = [
        (key, value)
        for key, value in doc.items()
        if isinstance(value, dict) and "vulnerabilities" in value and "report" in key.lower()
    ]
    if not reports:
        raise ReportError("Harbor report: no vulnerabilities")
    reports.sort(key=lambda kv: kv[0] != HARBOR_REPORT_MIME)
    return reports[0][1]


def _harbor(doc: Any) -> list[ReportFinding]:
    report = _unwrap_harbor(_obj(doc, "Harbor report"))
    out: list[ReportFinding] = []
    for i, item in enumerate(_list(report.get("vulnerabilities"), "vulnerabilities")):
        where = f"vulnerabilities[{i}]"
        v = _obj(item, where)
        vuln_id = _str(v, "id", where)
        out.append(
            ReportFinding(
                vuln_id=vuln_id,
                aliases=(),
                package_name=_str(v, "package", where),
                installed=_opt(v, "version") or "",
                fixed_version=_opt(v, "fix_version"),
                severity=normalise_severity(v.get("severity")),
                title=_title(v.get("description"), vuln_id),
                source="harbor",
            )
        )
    return merge_duplicates(out)


# --- any of them -------------------------------------------------------------------------------


def detect_and_parse(data: bytes | str) -> list[ReportFinding]:
    """A Trivy, Grype or Harbor report, whichever `data` is."""
    return _parser_for(_load(data))


def report_kind(doc: Any) -> str | None:
    """`trivy`, `grype` or `harbor` for a decoded report, by its shape; None for none."""
    if isinstance(doc, list):
        return "trivy" if doc and all(isinstance(r, dict) and "Target" in r for r in doc) else None
    if not isinstance(doc, dict):
        return None
    if "SchemaVersion" in doc or ("Results" in doc and "ArtifactName" in doc):
        return "trivy"
    if "matches" in doc and ("descriptor" in doc or "source" in doc or "distro" in doc):
        return "grype"
    if "vulnerabilities" in doc and ({"scanner", "artifact", "generated_at"} & doc.keys()):
        return "harbor"
    if any(
        isinstance(v, dict) and "vulnerabilities" in v and "report" in k.lower()
        for k, v in doc.items()
    ):
        return "harbor"
    return None


_PARSERS: dict[str, Callable[[Any], list[ReportFinding]]] = {
    "trivy": _trivy,
    "grype": _grype,
    "harbor": _harbor,
}


def _parser_for(doc: Any) -> list[ReportFinding]:
    kind = report_kind(doc)
    if kind is None:
        raise ReportError("not a Trivy, Grype or Harbor vulnerability report")
    return _PARSERS[kind](doc)


# --- merging -----------------------------------------------------------------------------------


def merge_duplicates(findings: Iterable[ReportFinding]) -> list[ReportFinding]:
    """One finding per vulnerability and package version (see the module docstring), in the
    order the first of each appeared."""
    items = list(findings)
    parent: dict[tuple[str, str, str], tuple[str, str, str]] = {}

    def root(x: tuple[str, str, str]) -> tuple[str, str, str]:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    keys = {(f.package_name, f.installed, f.vuln_id) for f in items}
    for f in items:
        for alias in f.aliases:
            other = (f.package_name, f.installed, alias)
            if other in keys:
                a, b = root((f.package_name, f.installed, f.vuln_id)), root(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[tuple[str, str, str], list[ReportFinding]] = {}
    for f in items:
        groups.setdefault(root((f.package_name, f.installed, f.vuln_id)), []).append(f)
    return [_merge_group(lead[2], group) for lead, group in groups.items()]


def _merge_group(lead_id: str, group: list[ReportFinding]) -> ReportFinding:
    if len(group) == 1:
        return group[0]
    lead = next(f for f in group if f.vuln_id == lead_id)
    ids = {f.vuln_id for f in group} | {a for f in group for a in f.aliases}
    aliases = tuple(sorted(ids - {lead_id}))
    ordered = [lead, *(f for f in group if f is not lead)]
    return replace(
        lead,
        aliases=aliases,
        fixed_version=next((f.fixed_version for f in ordered if f.fixed_version), None),
        severity=max((f.severity for f in group), key=lambda s: s.rank),
        title=next((f.title for f in ordered if f.title and f.title != f.vuln_id), lead.title),
        purl=next((f.purl for f in ordered if f.purl), None),
    )


# --- as findings -------------------------------------------------------------------------------


def to_finding(r: ReportFinding) -> Finding:
    """The finding the pipeline stores and posts: keyed by vulnerability id and "name version"."""
    package = f"{r.package_name} {r.installed}".strip()
    lines = [f"{package} is affected by {r.vuln_id} (reported by {r.source})."]
    if r.aliases:
        lines.append("Also known as " + ", ".join(r.aliases) + ".")
    if r.title and r.title != r.vuln_id:
        lines.append(r.title)
    if r.fixed_version:
        remediation = f"Upgrade {r.package_name} to {r.fixed_version} or later, and rebuild."
    else:
        remediation = (
            f"No fixed version of {r.package_name} is known yet: check whether the vulnerable "
            "code is reachable, remove the package if it is not needed, and watch for a fix."
        )
    return Finding(
        check_id=r.vuln_id,
        severity=r.severity,
        title=r.title or r.vuln_id,
        detail="\n".join(lines),
        remediation=remediation,
        package=package,
        fixed_version=r.fixed_version,
    )


# --- running Trivy -----------------------------------------------------------------------------


async def run_trivy(
    image_ref: str,
    *,
    timeout: float,  # noqa: ASYNC109 (the scanner is a subprocess to kill, not a coroutine)
    trivy: str = "trivy",
    env: Mapping[str, str] | None = None,
) -> list[ReportFinding]:
    """`trivy image --format json --quiet IMAGE`, killed (with anything it started) after
    `timeout` seconds. `env` replaces the environment when given (Trivy reads its registry
    credentials and cache directory from it). Raises `ScannerError`."""
    if not image_ref or image_ref.startswith("-"):
        raise ScannerError(f"not an image reference: {image_ref[:100]!r}")
    try:
        proc = await asyncio.create_subprocess_exec(
            trivy,
            "image",
            "--format",
            "json",
            "--quiet",
            image_ref,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # its own process group, so a timeout kills it all
        )
    except OSError as e:
        raise ScannerError(f"cannot run {trivy!r}: {e}") from None
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill_group(proc)
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()
        raise ScannerError(f"trivy did not finish scanning {image_ref} in {timeout:g} s") from None
    except asyncio.CancelledError:
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        said = stderr.decode("utf-8", "replace").strip()[-_STDERR_SHOWN:]
        raise ScannerError(f"trivy exited with {proc.returncode} on {image_ref}: {said}")
    try:
        return parse_trivy(stdout)
    except ReportError as e:
        raise ScannerError(f"trivy gave no report for {image_ref}: {e}") from None


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group `run_trivy` started (the group id is the child's pid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
