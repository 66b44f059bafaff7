"""OSV records (ossf.github.io/osv-schema): loading them and deciding whether a package is hit.

`load_path` reads a directory of `.json` records (recursively) or OSV's per-ecosystem `all.zip`
(streamed member by member), reporting bad files instead of stopping. `affects` is the schema's
evaluation algorithm: explicit `versions`, or ECOSYSTEM / SEMVER ranges whose introduced, fixed,
last_affected and limit events are ordered in the ecosystem's own version order.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, PrivateAttr, ValidationError

from bot.findings import Severity
from bot.vulns.versions import (
    SEMVER,
    VersionError,
    VersionKey,
    base_ecosystem,
    ecosystem_release,
    scheme,
)

log = logging.getLogger(__name__)

#: A record bigger than this (uncompressed) is refused rather than read into memory.
MAX_RECORD_BYTES = 32 * 1024 * 1024


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OsvEvent(_Model):
    introduced: str | None = None
    fixed: str | None = None
    last_affected: str | None = None
    limit: str | None = None


class OsvRange(_Model):
    type: str
    repo: str | None = None
    events: tuple[OsvEvent, ...] = ()


class OsvPackage(_Model):
    ecosystem: str
    name: str
    purl: str | None = None


class OsvSeverity(_Model):
    type: str
    score: str


class OsvAffected(_Model):
    package: OsvPackage | None = None
    severity: tuple[OsvSeverity, ...] = ()
    ranges: tuple[OsvRange, ...] = ()
    versions: tuple[str, ...] = ()
    ecosystem_specific: dict[str, Any] | None = None
    database_specific: dict[str, Any] | None = None


class OsvRecord(_Model):
    id: str
    modified: UtcDatetime
    schema_version: str | None = None
    published: UtcDatetime | None = None
    withdrawn: UtcDatetime | None = None
    aliases: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    summary: str | None = None
    details: str | None = None
    severity: tuple[OsvSeverity, ...] = ()
    affected: tuple[OsvAffected, ...] = ()
    database_specific: dict[str, Any] | None = None

    _raw: str | None = PrivateAttr(default=None)

    def raw_json(self) -> str:
        """The record as it was read (all fields, compact), or the model's own fields."""
        return self._raw if self._raw is not None else self.model_dump_json(exclude_none=True)


def parse_record(data: str | bytes | dict[str, Any]) -> OsvRecord:
    """One record from JSON text or an already-decoded object; keeps the original for storage.

    Raises `ValueError` (bad JSON) or pydantic's `ValidationError` (not an OSV record).
    """
    try:
        obj = json.loads(data) if isinstance(data, str | bytes) else data
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    if not isinstance(obj, dict):
        raise ValueError(f"an OSV record is a JSON object, not {type(obj).__name__}")
    record = OsvRecord.model_validate(obj)
    record._raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return record


# --- loading ----------------------------------------------------------------------------------


class LoadError(NamedTuple):
    """A file (or zip member, `archive.zip!member.json`) that was skipped, and why."""

    path: str
    error: str


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        ]
        more = f" (+{len(parts) - 3} more)" if len(parts) > 3 else ""
        return "not an OSV record: " + "; ".join(parts[:3]) + more
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _records_from(data: bytes, where: str, errors: list[LoadError] | None) -> Iterator[OsvRecord]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        _report(errors, where, _describe(e))
        return
    items = obj if isinstance(obj, list) else [obj]  # some feeds publish one JSON array
    for i, item in enumerate(items):
        at = f"{where}[{i}]" if isinstance(obj, list) else where
        try:
            yield parse_record(item)
        except (ValueError, ValidationError) as e:
            _report(errors, at, _describe(e))


def _report(errors: list[LoadError] | None, where: str, error: str) -> None:
    if errors is None:
        log.warning("skipping OSV file %s: %s", where, error)
    else:
        errors.append(LoadError(where, error))


def _read_capped(path: Path) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"larger than {MAX_RECORD_BYTES} bytes")
    return data


def _load_zip(path: Path, errors: list[LoadError] | None) -> Iterator[OsvRecord]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.lower().endswith(".json"):
                continue
            where = f"{path}!{info.filename}"
            if info.file_size > MAX_RECORD_BYTES:
                _report(errors, where, f"larger than {MAX_RECORD_BYTES} bytes")
                continue
            try:
                with archive.open(info) as member:
                    data = member.read(MAX_RECORD_BYTES + 1)
                if len(data) > MAX_RECORD_BYTES:
                    raise ValueError(f"larger than {MAX_RECORD_BYTES} bytes")
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
                _report(errors, where, _describe(e))
                continue
            yield from _records_from(data, where, errors)


def load_path(path: str | Path, errors: list[LoadError] | None = None) -> Iterator[OsvRecord]:
    """Every record under `path`: a `.json` file, a directory of them, or an OSV `.zip`.

    Files that are not records (bad JSON, missing `id`/`modified`, …) are skipped and appended
    to `errors` as `(path, error)` (logged when no list is given). Non-`.json` files in a
    directory are ignored. A missing `path`, or a `path` that is a broken zip, raises.
    """
    root = Path(path)
    if root.is_dir():
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            if file.suffix.lower() == ".zip":
                if zipfile.is_zipfile(file):
                    yield from _load_zip(file, errors)
                else:
                    _report(errors, str(file), "not a zip archive")
            elif file.suffix.lower() == ".json":
                try:
                    data = _read_capped(file)
                except (OSError, ValueError) as e:
                    _report(errors, str(file), _describe(e))
                    continue
                yield from _records_from(data, str(file), errors)
        return
    if not root.exists():
        raise FileNotFoundError(f"no OSV data at {root}")
    if zipfile.is_zipfile(root):
        yield from _load_zip(root, errors)
        return
    if root.suffix.lower() == ".zip":
        raise zipfile.BadZipFile(f"{root} is not a zip archive")
    yield from _records_from(_read_capped(root), str(root), errors)


# --- matching ---------------------------------------------------------------------------------


def normalize_name(ecosystem: str, name: str) -> str:
    """The package name as OSV compares it: PEP 503 for PyPI, lower case where the registry is
    case-insensitive (NuGet, Packagist), exact elsewhere (npm, Go, Maven, distros, …)."""
    base = base_ecosystem(ecosystem)
    name = name.strip()
    if base == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    if base in {"NuGet", "Packagist"}:
        return name.lower()
    return name


_DEBIAN_CODENAMES = {
    "buzz": "1.1", "rex": "1.2", "bo": "1.3", "hamm": "2.0", "slink": "2.1", "potato": "2.2",
    "woody": "3.0", "sarge": "3.1", "etch": "4", "lenny": "5", "squeeze": "6", "wheezy": "7",
    "jessie": "8", "stretch": "9", "buster": "10", "bullseye": "11", "bookworm": "12",
    "trixie": "13", "forky": "14",
}  # fmt: skip
_NUMERIC_RELEASE = re.compile(r"\d+(?:\.\d+)*")


def _release_parts(ecosystem: str, release: str) -> tuple[str, ...] | str:
    """A release as dotted numbers (`v3.19` → ("3", "19")) or, failing that, lower-cased text."""
    base = base_ecosystem(ecosystem)
    text = release.strip()
    if base == "Ubuntu":
        text = re.sub(r"(?i)^pro:|:lts$", "", text)
    if base == "Debian":
        text = _DEBIAN_CODENAMES.get(text.lower(), text)
    if base == "Alpine":
        text = text.removeprefix("v")
    m = _NUMERIC_RELEASE.search(text)
    if m and (base in {"Red Hat", "Ubuntu"} or m.group() == text):
        return tuple(str(int(p)) for p in m.group().split("."))
    return text.lower()


def release_matches(record_ecosystem: str, target_ecosystem: str) -> bool:
    """Whether a record's ecosystem (`Alpine:v3.19`) covers the target's (`Alpine:3.19.1`).

    Same base ecosystem, and the record's release is absent or a prefix of the target's in
    dotted-number terms (`Debian:12` covers `Debian:12.4`). A target without a release is
    covered by records of every release.
    """
    if base_ecosystem(record_ecosystem) != base_ecosystem(target_ecosystem):
        return False
    want, have = ecosystem_release(record_ecosystem), ecosystem_release(target_ecosystem)
    if want is None or have is None:
        return True
    w, h = _release_parts(record_ecosystem, want), _release_parts(target_ecosystem, have)
    if isinstance(w, tuple) and isinstance(h, tuple):
        return h[: len(w)] == w
    return w == h


@dataclass(frozen=True)
class Affected:
    """A record that hits a package version."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed_version: str | None
    severity: Severity
    ecosystem: str
    name: str


@functools.lru_cache(maxsize=65536)
def _key(scheme_name: str, version: str) -> VersionKey | None:
    """Parsed once per (scheme, version): matching compares the same versions many times."""
    try:
        return VersionKey(scheme_name, version)
    except VersionError:
        return None


def _in_range(rng: OsvRange, scheme_name: str, v: VersionKey) -> bool | None:
    """The schema's IncludedInRanges for one range; None when the range cannot be evaluated."""
    keyed: list[tuple[VersionKey | None, OsvEvent]] = []
    limits: list[VersionKey | None] = []
    for event in rng.events:
        if event.limit is not None:
            if "*" in event.limit:
                limits.append(None)  # "*" is infinity
            elif (limit := _key(scheme_name, event.limit)) is not None:
                limits.append(limit)
            else:
                return None
            continue
        version = event.introduced or event.fixed or event.last_affected
        if version is None:
            continue
        if event.introduced == "0":
            keyed.append((None, event))  # sorts before everything
            continue
        k = _key(scheme_name, version)
        if k is None:
            return None
        keyed.append((k, event))
    if limits and not any(limit is None or v < limit for limit in limits):
        return False
    keyed.sort(key=lambda item: _SortAdapter(item[0]))
    vulnerable = False
    for k, event in keyed:
        if event.introduced is not None:
            vulnerable = vulnerable or k is None or v >= k
        elif k is not None and v >= k and (event.fixed is not None or v != k):
            vulnerable = False  # at or past a fix, or past the last affected version
    return vulnerable


class _SortAdapter:
    """Lets `None` (introduced "0") sit in a sort key beside VersionKeys."""

    __slots__ = ("key",)

    def __init__(self, key: VersionKey | None) -> None:
        self.key = key

    def __lt__(self, other: _SortAdapter) -> bool:
        if self.key is None or other.key is None:
            return self.key is None and other.key is not None
        return self.key < other.key


def _range_scheme(rng: OsvRange, ecosystem: str) -> str | None:
    if rng.type == "SEMVER":
        return SEMVER
    if rng.type == "ECOSYSTEM":
        return scheme(ecosystem)
    return None  # GIT ranges need the repository; their tags are in `versions`


@functools.lru_cache(maxsize=4096)
def _parsed_versions(scheme_name: str, versions: tuple[str, ...]) -> tuple[VersionKey, ...]:
    return tuple(k for k in (_key(scheme_name, x) for x in versions) if k is not None)


def _in_versions(versions: tuple[str, ...], scheme_name: str, version: str) -> bool:
    """The schema's IncludedInVersions: equal as strings, or equal in the ecosystem's order."""
    if not versions:
        return False
    if version in versions:
        return True
    v = _key(scheme_name, version)
    return v is not None and any(k == v for k in _parsed_versions(scheme_name, versions))


def affects(record: OsvRecord, ecosystem: str, name: str, version: str) -> Affected | None:
    """Whether `name` at `version` in `ecosystem` (with its release, e.g. `Debian:12`) is hit.

    Implements the schema's evaluation: the package matches by base ecosystem, release and
    normalised name; it is hit if `version` is in `versions` or in an ECOSYSTEM/SEMVER range.
    A version that the ecosystem cannot parse is only looked up in `versions`; a range with an
    unparseable bound is skipped. Withdrawn records hit nothing.
    """
    if record.withdrawn is not None:
        return None
    want = normalize_name(ecosystem, name)
    hit_entries: list[OsvAffected] = []
    fixes: list[VersionKey] = []
    for entry in record.affected:
        pkg = entry.package
        if pkg is None or not release_matches(pkg.ecosystem, ecosystem):
            continue
        if normalize_name(pkg.ecosystem, pkg.name) != want:
            continue
        eco_scheme = scheme(pkg.ecosystem)
        hit = _in_versions(entry.versions, eco_scheme, version)
        entry_fixes: list[VersionKey] = []
        for rng in entry.ranges:
            rng_scheme = _range_scheme(rng, pkg.ecosystem)
            if rng_scheme is None:
                continue
            v = _key(rng_scheme, version)
            if v is None:
                continue
            if _in_range(rng, rng_scheme, v):
                hit = True
            for event in rng.events:
                if event.fixed is not None:
                    k = _key(rng_scheme, event.fixed)
                    if k is not None and k > v:
                        entry_fixes.append(k)
        if hit:
            hit_entries.append(entry)
            fixes += entry_fixes
    if not hit_entries:
        return None
    # The lowest fix above the installed version (keys of one scheme: SEMVER and ECOSYSTEM
    # ranges in one record need not order alike).
    fixed = min(k for k in fixes if k.scheme == fixes[0].scheme).text if fixes else None
    first = hit_entries[0].package
    assert first is not None
    return Affected(
        id=record.id,
        aliases=record.aliases,
        summary=summary_of(record),
        fixed_version=fixed,
        severity=max((severity_of(record, e) for e in hit_entries), key=lambda s: s.rank),
        ecosystem=first.ecosystem,
        name=first.name,
    )


def summary_of(record: OsvRecord) -> str:
    """The summary, else the first line of the details, else the id."""
    if record.summary and record.summary.strip():
        return record.summary.strip()
    for line in (record.details or "").splitlines():
        if line.strip():
            return line.strip()
    return record.id


# --- severity ---------------------------------------------------------------------------------

_WORDS = {
    "critical": Severity.CRITICAL,
    "high": Severity.HIGH,
    "important": Severity.HIGH,
    "moderate": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "negligible": Severity.LOW,
    "unimportant": Severity.LOW,
}
#: Newest CVSS first; the first vector that parses decides.
_CVSS_ORDER = ("CVSS_V4", "CVSS_V3", "CVSS_V2")


def band(score: float | Decimal) -> Severity:
    """The CVSS v3/v4 qualitative rating: 9.0+ critical, 7.0+ high, 4.0+ medium, else low."""
    s = float(score)
    if s >= 9.0:
        return Severity.CRITICAL
    if s >= 7.0:
        return Severity.HIGH
    if s >= 4.0:
        return Severity.MEDIUM
    return Severity.LOW


def cvss_score(kind: str, vector: str) -> float | None:
    """The base score of a CVSS vector, or None if the `cvss` library cannot parse it."""
    from cvss import CVSS2, CVSS3, CVSS4

    try:
        if kind == "CVSS_V4":
            return float(CVSS4(vector).base_score)
        if kind == "CVSS_V3":
            return float(CVSS3(vector).scores()[0])
        if kind == "CVSS_V2":
            return float(CVSS2(vector).scores()[0])
    except Exception:  # the cvss library raises several unrelated error types
        return None
    return None


def _word(value: Any) -> Severity | None:
    if isinstance(value, str):
        return _WORDS.get(value.strip().lower())
    return None


def severity_of(record: OsvRecord, entry: OsvAffected | None = None) -> Severity:
    """Severity from CVSS vectors (the package's, else the record's), else from the
    `database_specific` / `ecosystem_specific` severity words, else medium."""
    scored = entry.severity if entry is not None and entry.severity else record.severity
    for kind in _CVSS_ORDER:
        for sev in scored:
            if sev.type == kind and (score := cvss_score(kind, sev.score)) is not None:
                if kind == "CVSS_V2":  # v2 has no critical band
                    return Severity.HIGH if score >= 7.0 else band(score)
                return band(score)
    for sev in scored:  # e.g. {"type": "Ubuntu", "score": "medium"}
        if (word := _word(sev.score)) is not None:
            return word
    blocks = []
    if entry is not None:
        blocks += [entry.database_specific, entry.ecosystem_specific]
    blocks.append(record.database_specific)
    for block in blocks:
        if block and (word := _word(block.get("severity"))) is not None:
            return word
    return Severity.MEDIUM
