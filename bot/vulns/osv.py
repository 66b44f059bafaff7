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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, PrivateAttr, ValidationError

from bot.infra.validation import describe_validation
from bot.model.findings import Severity
from bot.vulns.versions import (
    DPKG,
    NATURAL,
    PEP440,
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


def describe_error(exc: Exception) -> str:
    """Why a record was not read, without quoting it (see bot.infra.validation)."""
    if isinstance(exc, ValidationError):
        return "not an OSV record: " + describe_validation(exc)
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _records_from(data: bytes, where: str, errors: list[LoadError] | None) -> Iterator[OsvRecord]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        _report(errors, where, describe_error(e))
        return
    items = obj if isinstance(obj, list) else [obj]  # some feeds publish one JSON array
    for i, item in enumerate(items):
        at = f"{where}[{i}]" if isinstance(obj, list) else where
        try:
            yield parse_record(item)
        except (ValueError, ValidationError) as e:
            _report(errors, at, describe_error(e))


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
                _report(errors, where, describe_error(e))
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
                    _report(errors, str(file), describe_error(e))
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


#: A parsed version as matching compares it: the scheme's own orderable value where Python
#: orders it natively (dpkg, PEP 440, SemVer and natural keys, all hashable), else a VersionKey.
Ord = Any
_NATIVE = frozenset({DPKG, PEP440, SEMVER, NATURAL})
_INTRODUCED, _FIXED, _LAST_AFFECTED = 0, 1, 2
#: A fixed version above the installed one: (its position, its scheme, its text). The
#: position is a parsed version, or a place on a `bot.vulns.table` version line.
Fix = tuple[Any, str, str]


@functools.lru_cache(maxsize=65536)
def parsed_version(scheme_name: str, version: str) -> Ord | None:
    """Parsed once per (scheme, version): matching compares the same versions many times."""
    try:
        key = VersionKey(scheme_name, version)
    except VersionError:
        return None
    return key.parsed if scheme_name in _NATIVE else key


@dataclass(frozen=True, slots=True)
class Range:
    """An ECOSYSTEM or SEMVER range with its bounds parsed and its events in version order."""

    scheme: str
    #: (bound, kind), sorted by bound; a None bound is `introduced: "0"`, before everything.
    events: tuple[tuple[Ord | None, int], ...]
    #: `limit` bounds; None is `"*"`. Empty: no limit.
    limits: tuple[Ord | None, ...]
    #: False when a bound does not parse: the range then hits nothing (its fixes still count).
    evaluable: bool
    fixes: tuple[tuple[Ord, str], ...]

    def contains(self, v: Ord) -> bool:
        """The schema's IncludedInRanges: the last event at or below `v` decides."""
        if not self.evaluable:
            return False
        if self.limits and not any(limit is None or v < limit for limit in self.limits):
            return False
        vulnerable = False
        for bound, kind in self.events:
            if bound is None:
                vulnerable = True
            elif v < bound:
                break
            elif kind == _INTRODUCED:
                vulnerable = True
            elif kind == _FIXED or v != bound:
                vulnerable = False  # at or past a fix, or past the last affected version
        return vulnerable


def _compile_range(rng: OsvRange, ecosystem: str) -> Range | None:
    if rng.type == "SEMVER":
        scheme_name = SEMVER
    elif rng.type == "ECOSYSTEM":
        scheme_name = scheme(ecosystem)
    else:
        return None  # GIT ranges need the repository; their tags are in `versions`
    unbounded: list[tuple[Ord | None, int]] = []
    bounded: list[tuple[Ord, int]] = []
    limits: list[Ord | None] = []
    fixes: list[tuple[Ord, str]] = []
    evaluable = True
    for event in rng.events:
        if (
            event.fixed is not None
            and (fix := parsed_version(scheme_name, event.fixed)) is not None
        ):
            fixes.append((fix, event.fixed))
        if event.limit is not None:
            limit = None if "*" in event.limit else parsed_version(scheme_name, event.limit)
            evaluable = evaluable and (limit is not None or "*" in event.limit)
            limits.append(limit)
            continue
        version = event.introduced or event.fixed or event.last_affected
        if version is None:
            continue
        kind = (
            _INTRODUCED
            if event.introduced is not None
            else _FIXED
            if event.fixed is not None
            else _LAST_AFFECTED
        )
        if event.introduced == "0":
            unbounded.append((None, kind))
        elif (bound := parsed_version(scheme_name, version)) is not None:
            bounded.append((bound, kind))
        else:
            evaluable = False
    bounded.sort(key=lambda item: item[0])  # stable: equal bounds keep the record's order
    return Range(scheme_name, (*unbounded, *bounded), tuple(limits), evaluable, tuple(fixes))


@dataclass(frozen=True, slots=True)
class Entry:
    """One `affected` entry, for one package, ready to evaluate."""

    ecosystem: str  # as the record spells it, with its release
    name: str
    severity: Severity
    scheme: str
    versions: frozenset[str]
    #: The `versions` parsed, for equality in the ecosystem's order: a set where hashable.
    version_keys: frozenset[Ord] | tuple[Ord, ...]
    ranges: tuple[Range, ...]

    def hit(self, version: str) -> tuple[bool, list[Fix]]:
        """Whether `version` is hit, and the fixes above it as (bound, scheme, text)."""
        hit = version in self.versions
        if not hit and self.version_keys:
            v = parsed_version(self.scheme, version)
            hit = v is not None and (
                v in self.version_keys
                if isinstance(self.version_keys, frozenset)
                else any(k == v for k in self.version_keys)
            )
        fixes: list[Fix] = []
        for rng in self.ranges:
            v = parsed_version(rng.scheme, version)
            if v is None:
                continue
            if not hit and rng.contains(v):
                hit = True
            fixes += [(k, rng.scheme, text) for k, text in rng.fixes if k > v]
        return hit, fixes


@dataclass(frozen=True, slots=True)
class Compiled:
    """A record's entries for one (base ecosystem, normalised name), compiled once.

    Matching a package against it compares pre-parsed versions only; `compile_record` does
    the parsing, and `affects` is the same evaluation for a single record.
    """

    id: str
    aliases: tuple[str, ...]
    summary: str
    entries: tuple[Entry, ...]

    def hit(self, ecosystem: str, version: str) -> Affected | None:
        """Whether the package at `version` in `ecosystem` (with its release) is hit."""
        hits: list[tuple[Entry, list[Fix]]] = []
        for entry in self.entries:
            if covers(entry.ecosystem, ecosystem):
                hit, fixes = entry.hit(version)
                if hit:
                    hits.append((entry, fixes))
        return self.affected(hits) if hits else None

    @staticmethod
    def answer(hits: Sequence[tuple[Entry, Sequence[Fix]]]) -> tuple[str | None, Severity]:
        """The fixed version and severity from the entries that hit, each with its fixes above
        the version: the lowest fix among those of the first fix's scheme (SEMVER and ECOSYSTEM
        ranges in one record need not order alike), and the worst severity."""
        fixes = [fix for _, entry_fixes in hits for fix in entry_fixes]
        fixed = None
        if fixes:
            first_scheme = fixes[0][1]
            fixed = min((f for f in fixes if f[1] == first_scheme), key=lambda f: f[0])[2]
        severity = hits[0][0].severity
        for entry, _ in hits[1:]:
            severity = max(severity, entry.severity, key=lambda s: s.rank)
        return fixed, severity

    def affected(self, hits: Sequence[tuple[Entry, Sequence[Fix]]]) -> Affected:
        """The record's answer from its entries that hit, each with its fixes above the version."""
        fixed, severity = self.answer(hits)
        first = hits[0][0]
        return Affected(
            id=self.id,
            aliases=self.aliases,
            summary=self.summary,
            fixed_version=fixed,
            severity=severity,
            ecosystem=first.ecosystem,
            name=first.name,
        )


covers = functools.lru_cache(maxsize=4096)(release_matches)


def _compile_entry(record: OsvRecord, entry: OsvAffected, pkg: OsvPackage) -> Entry:
    eco_scheme = scheme(pkg.ecosystem)
    parsed = [k for k in (parsed_version(eco_scheme, x) for x in entry.versions) if k is not None]
    return Entry(
        ecosystem=pkg.ecosystem,
        name=pkg.name,
        severity=severity_of(record, entry),
        scheme=eco_scheme,
        versions=frozenset(entry.versions),
        version_keys=frozenset(parsed) if eco_scheme in _NATIVE else tuple(parsed),
        ranges=tuple(r for r in (_compile_range(r, pkg.ecosystem) for r in entry.ranges) if r),
    )


def compile_record(record: OsvRecord) -> dict[tuple[str, str], Compiled]:
    """The record compiled per (base ecosystem, normalised name) it names; withdrawn: none."""
    if record.withdrawn is not None:
        return {}
    entries: dict[tuple[str, str], list[Entry]] = {}
    for entry in record.affected:
        pkg = entry.package
        if pkg is None:
            continue
        key = (base_ecosystem(pkg.ecosystem), normalize_name(pkg.ecosystem, pkg.name))
        entries.setdefault(key, []).append(_compile_entry(record, entry, pkg))
    summary = summary_of(record)
    return {
        key: Compiled(record.id, record.aliases, summary, tuple(found))
        for key, found in entries.items()
    }


def affects(record: OsvRecord, ecosystem: str, name: str, version: str) -> Affected | None:
    """Whether `name` at `version` in `ecosystem` (with its release, e.g. `Debian:12`) is hit.

    Implements the schema's evaluation: the package matches by base ecosystem, release and
    normalised name; it is hit if `version` is in `versions` or in an ECOSYSTEM/SEMVER range.
    A version that the ecosystem cannot parse is only looked up in `versions`; a range with an
    unparseable bound is skipped. Withdrawn records hit nothing.
    """
    compiled = compile_record(record).get(
        (base_ecosystem(ecosystem), normalize_name(ecosystem, name))
    )
    return compiled.hit(ecosystem, version) if compiled is not None else None


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


@functools.lru_cache(maxsize=8192)
def cvss_score(kind: str, vector: str) -> float | None:
    """The base score of a CVSS vector, or None if the `cvss` library cannot parse it.

    Cached: the library parses in pure Python, and vectors recur across thousands of records."""
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
