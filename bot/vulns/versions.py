"""Version order per package ecosystem, as OSV ranges are evaluated in it.

`compare(ecosystem, a, b)` is -1, 0 or 1; `sort_key(ecosystem, v)` is an orderable key. The
ecosystem may carry an OSV release suffix (`Debian:12`, `Alpine:v3.19`, `Ubuntu:22.04:LTS`),
which does not change the order. An unparseable version raises `VersionError`.

Schemes: Debian/Ubuntu compare as dpkg, Alpine/Wolfi/Chainguard as apk, the RPM distributions
as rpm, PyPI as PEP 440, npm/Go/crates.io (and OSV's `SEMVER` range type) as SemVer 2.0, Maven
as Maven; anything else falls back to a natural order (numbers numerically, words by text).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from packaging.version import InvalidVersion as _Pep440Invalid
from packaging.version import Version as _Pep440Version
from univers import debian as _debian_module
from univers import maven as _maven_module
from univers import rpm as _rpm_module
from univers import versions as _univers_versions

# univers ships no annotations: use it through Any.
_debian: Any = _debian_module
_maven: Any = _maven_module
_rpm: Any = _rpm_module
_UniversInvalid: type[Exception] = _univers_versions.InvalidVersion
_SemverVersion: Any = _univers_versions.SemverVersion


class VersionError(ValueError):
    """A version string that the ecosystem's version scheme cannot order."""


DPKG, APK, RPM, PEP440, SEMVER, MAVEN, NATURAL = (
    "dpkg", "apk", "rpm", "pep440", "semver", "maven", "natural",
)  # fmt: skip

#: OSV ecosystem names, spelled as OSV spells them, with their version scheme.
_ECOSYSTEMS: dict[str, str] = {
    "Debian": DPKG,
    "Ubuntu": DPKG,
    "Alpine": APK,
    "Wolfi": APK,
    "Chainguard": APK,
    "MinimOS": APK,
    "Red Hat": RPM,
    "AlmaLinux": RPM,
    "Rocky Linux": RPM,
    "Rocky": RPM,
    "Fedora": RPM,
    "CentOS": RPM,
    "openSUSE": RPM,
    "SUSE": RPM,
    "openEuler": RPM,
    "Mageia": RPM,
    "Photon OS": RPM,
    "PyPI": PEP440,
    "npm": SEMVER,
    "Go": SEMVER,
    "crates.io": SEMVER,
    "SEMVER": SEMVER,
    "Hex": SEMVER,
    "SwiftURL": SEMVER,
    "Kubernetes": SEMVER,
    "Maven": MAVEN,
    # Known to OSV, ordered naturally here:
    "RubyGems": NATURAL,
    "NuGet": NATURAL,
    "Packagist": NATURAL,
    "Pub": NATURAL,
    "Hackage": NATURAL,
    "GHC": NATURAL,
    "CRAN": NATURAL,
    "Bioconductor": NATURAL,
    "ConanCenter": NATURAL,
    "Linux": NATURAL,
    "Android": NATURAL,
    "GitHub Actions": NATURAL,
    "OSS-Fuzz": NATURAL,
    "Bitnami": NATURAL,
    "Julia": NATURAL,
    "opam": NATURAL,
    "VSCode": NATURAL,
}
_CANONICAL = {name.lower(): name for name in _ECOSYSTEMS}


@functools.lru_cache(maxsize=4096)
def base_ecosystem(ecosystem: str) -> str:
    """The ecosystem without its release: `Debian:12` → `Debian`, `Alpine:v3.19` → `Alpine`.

    Known ecosystems come back in OSV's spelling whatever the case given (`pypi` → `PyPI`).
    """
    base = ecosystem.split(":", 1)[0].strip()
    return _CANONICAL.get(base.lower(), base)


def ecosystem_release(ecosystem: str) -> str | None:
    """The release part after the first colon (`Ubuntu:22.04:LTS` → `22.04:LTS`), if any."""
    _, sep, rest = ecosystem.partition(":")
    return rest.strip() or None if sep else None


@functools.lru_cache(maxsize=4096)
def scheme(ecosystem: str) -> str:
    """Which version order the ecosystem uses (one of the module's scheme constants)."""
    return _ECOSYSTEMS.get(base_ecosystem(ecosystem), NATURAL)


# --- dpkg -------------------------------------------------------------------------------------


def _parse_dpkg(text: str) -> tuple[int, _DpkgPart, _DpkgPart]:
    v = text.strip()
    # univers accepts an empty revision ("1.0-"), which dpkg rejects.
    if not v or v.endswith("-") or not _debian.Version.is_valid(v):
        raise VersionError(f"not a Debian version: {text!r}")
    parsed = _debian.Version.from_string(v)
    return (int(parsed.epoch), _dpkg_part(str(parsed.upstream)), _dpkg_part(str(parsed.revision)))


_DpkgPart = tuple[tuple[tuple[int, ...], int], ...]
_DPKG_RUN = re.compile(r"(\D*)(\d*)", re.ASCII)
#: An exhausted string: an empty non-digit run, then the number 0.
_DPKG_END: tuple[tuple[int, ...], int] = ((0,), 0)


def _dpkg_weight(c: str) -> int:
    """dpkg's `order()`: `~` before the end of a run, letters before every other character."""
    if c == "~":
        return -1
    return ord(c) if c.isascii() and c.isalpha() else ord(c) + 256


def _dpkg_part(text: str) -> _DpkgPart:
    """dpkg's `verrevcmp` as a key that Python's tuple order compares natively.

    dpkg walks alternating runs: non-digits character by character (each run ends in weight 0,
    which no character has), then digits as a number; an exhausted string goes on as empty
    runs and zeros. The key is those (run, number) pairs, always starting with the first, and
    closed by the exhausted-string pair. Only the first pair can have an empty run, so where
    one key ends the other's next pair compares against that closing pair as dpkg would.
    """
    pairs = [
        ((*map(_dpkg_weight, run), 0), int(digits or 0))
        for run, digits in _DPKG_RUN.findall(text)
        if run or digits
    ]
    return (*(pairs or [_DPKG_END]), _DPKG_END)


# --- apk --------------------------------------------------------------------------------------
# Alpine's format is digit{.digit}...{letter}{_suffix{#}}...{~hash}{-r#}, ordered as apk-tools
# does (univers knows only Gentoo's suffixes, so "_git2024…" or "~hash" would not parse). Tokens
# compare pairwise while both versions have one of the same kind. Where the kinds first differ,
# a pre-release suffix (_alpha, _beta, _pre, _rc) is older; otherwise the version whose next
# token is of the earlier kind is newer ("1.0.1" > "1.0a", "1.0-r1" > "1.0").

_T_INITIAL, _T_DIGIT, _T_LETTER, _T_SUFFIX, _T_SUFFIX_NO, _T_HASH, _T_REVISION, _T_END = range(8)
_APK_SUFFIXES = {
    "alpha": 0, "beta": 1, "pre": 2, "rc": 3,  # pre-releases, before the plain version
    "cvs": 5, "svn": 6, "git": 7, "hg": 8, "p": 9,  # post-releases, after it
}  # fmt: skip
_APK_NONE = 4
_APK_TOKEN = re.compile(
    r"(?P<digit>\.?\d+)|(?P<letter>[a-z])|_(?P<suffix>[a-z]+)|~(?P<hash>[0-9a-f]+)|-r(?P<rev>\d+)"
)


def _parse_apk(text: str) -> tuple[tuple[int, Any], ...]:
    v = text.strip()
    first = re.match(r"\d+", v)
    if not first:
        raise VersionError(f"not an Alpine version: {text!r}")
    tokens: list[tuple[int, Any]] = [(_T_INITIAL, int(first.group()))]
    pos, last = first.end(), _T_INITIAL
    while pos < len(v):
        m = _APK_TOKEN.match(v, pos)
        kind: int
        value: Any
        if m is None:
            raise VersionError(f"not an Alpine version: {text!r}")
        if m.group("digit") is not None:
            digits = m.group("digit")
            dotted = digits.startswith(".")
            if dotted and last > _T_DIGIT:
                raise VersionError(f"not an Alpine version: {text!r}")
            if not dotted and last != _T_SUFFIX:
                raise VersionError(f"not an Alpine version: {text!r}")
            if last == _T_SUFFIX and not dotted:
                kind, value = _T_SUFFIX_NO, int(digits)
            else:
                # A leading zero makes the component compare as a string, as apk does.
                kind, value = _T_DIGIT, digits.lstrip(".")
        elif m.group("letter") is not None:
            if last > _T_DIGIT:
                raise VersionError(f"not an Alpine version: {text!r}")
            kind, value = _T_LETTER, m.group("letter")
        elif m.group("suffix") is not None:
            if last > _T_SUFFIX_NO or m.group("suffix") not in _APK_SUFFIXES:
                raise VersionError(f"not an Alpine version: {text!r}")
            kind, value = _T_SUFFIX, _APK_SUFFIXES[m.group("suffix")]
        elif m.group("hash") is not None:
            if last >= _T_HASH:
                raise VersionError(f"not an Alpine version: {text!r}")
            kind, value = _T_HASH, m.group("hash")
        else:
            if last >= _T_REVISION:
                raise VersionError(f"not an Alpine version: {text!r}")
            kind, value = _T_REVISION, int(m.group("rev"))
        tokens.append((kind, value))
        pos, last = m.end(), kind
    return tuple(tokens)


def _cmp_apk(a: tuple[tuple[int, Any], ...], b: tuple[tuple[int, Any], ...]) -> int:
    i, n = 0, min(len(a), len(b))
    while i < n and a[i][0] == b[i][0]:
        (kind, va), (_, vb) = a[i], b[i]
        if kind == _T_DIGIT and not (va.startswith("0") or vb.startswith("0")):
            va, vb = int(va), int(vb)
        if va != vb:
            return -1 if va < vb else 1
        i += 1
    # Equal so far: the version that goes on is newer, unless it goes on with a pre-release.
    ka = a[i][0] if i < len(a) else _T_END
    kb = b[i][0] if i < len(b) else _T_END
    if ka == kb:
        return 0
    if ka == _T_SUFFIX and a[i][1] < _APK_NONE:
        return -1
    if kb == _T_SUFFIX and b[i][1] < _APK_NONE:
        return 1
    return -1 if ka > kb else 1


# --- rpm --------------------------------------------------------------------------------------


def _parse_rpm(text: str) -> Any:
    v = text.strip()
    if not v or v.startswith(":") or v.endswith(("-", ":")):
        raise VersionError(f"not an RPM version: {text!r}")
    epoch, sep, _ = v.partition(":")
    if sep and not epoch.isdigit():
        raise VersionError(f"not an RPM version: {text!r}")
    try:
        return _rpm.RpmVersion.from_string(v)
    except (ValueError, TypeError) as e:
        raise VersionError(f"not an RPM version: {text!r}") from e


def _cmp_rpm(a: Any, b: Any) -> int:
    return int(_rpm.compare_rpm_versions(a, b))


# --- PEP 440 ----------------------------------------------------------------------------------


def _parse_pep440(text: str) -> _Pep440Version:
    try:
        return _Pep440Version(text.strip())
    except _Pep440Invalid as e:
        raise VersionError(f"not a PEP 440 version: {text!r}") from e


# --- SemVer -----------------------------------------------------------------------------------


_SEMVER_SHAPE = re.compile(
    r"v?(0|[1-9]\d*)(\.(0|[1-9]\d*)){0,2}(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-.]+)?",
    re.ASCII | re.IGNORECASE,
)


def _parse_semver(text: str) -> tuple[Any, ...]:
    """SemVer precedence (section 11): build metadata is ignored, a pre-release sorts first.

    A leading `v` (Go) is dropped; univers also pads a short `1.2` to `1.2.0`.
    """
    v = text.strip()
    if not _SEMVER_SHAPE.fullmatch(v):
        raise VersionError(f"not a semantic version: {text!r}")
    try:
        parsed = _SemverVersion(v).value
    except (_UniversInvalid, ValueError) as e:
        raise VersionError(f"not a semantic version: {text!r}") from e
    pre = tuple(parsed.prerelease or ())
    if not pre:
        pre_key: tuple[Any, ...] = (1,)
    else:
        pre_key = (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre))
    return (int(parsed.major), int(parsed.minor), int(parsed.patch), pre_key)


# --- Maven ------------------------------------------------------------------------------------

#: Maven 3.9 treats `release` like `ga` and `final` (the empty qualifier); univers predates it.
_MAVEN_RELEASE = re.compile(r"(?i)(?<![a-z])release(?![a-z])")


def _parse_maven(text: str) -> Any:
    v = text.strip()
    if not v or not v[0].isalnum():
        raise VersionError(f"not a Maven version: {text!r}")
    try:
        return _maven.Version(_MAVEN_RELEASE.sub("ga", v))
    except (ValueError, TypeError) as e:
        raise VersionError(f"not a Maven version: {text!r}") from e


def _cmp_maven(a: Any, b: Any) -> int:
    c = int(a.__cmp__(b))
    return (c > 0) - (c < 0)


# --- natural ----------------------------------------------------------------------------------

_NATURAL_TOKEN = re.compile(r"\d+|[^\W\d_]+")


def _parse_natural(text: str) -> tuple[tuple[int, int, str], ...]:
    v = text.strip()
    if not v:
        raise VersionError("empty version")
    if v[0] in "vV" and v[1:2].isdigit():
        v = v[1:]
    tokens = _NATURAL_TOKEN.findall(v)
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in tokens) or (
        (1, 0, v.lower()),
    )


# --- dispatch ---------------------------------------------------------------------------------


def _natural_cmp(a: Any, b: Any) -> int:
    """For parsed values that order themselves (tuples, packaging's Version)."""
    return 1 if a > b else -1 if a < b else 0


_PARSE: dict[str, Any] = {
    DPKG: _parse_dpkg,
    APK: _parse_apk,
    RPM: _parse_rpm,
    PEP440: _parse_pep440,
    SEMVER: _parse_semver,
    MAVEN: _parse_maven,
    NATURAL: _parse_natural,
}
_CMP: dict[str, Any] = {
    DPKG: _natural_cmp,
    APK: _cmp_apk,
    RPM: _cmp_rpm,
    PEP440: _natural_cmp,
    SEMVER: _natural_cmp,
    MAVEN: _cmp_maven,
    NATURAL: _natural_cmp,
}


@functools.total_ordering
class VersionKey:
    """A parsed version, ordered within its scheme (comparing across schemes is an error)."""

    __slots__ = ("parsed", "scheme", "text")
    __hash__ = None  # type: ignore[assignment]  # equal keys can have different spellings

    def __init__(self, scheme_name: str, text: str) -> None:
        if not isinstance(text, str):
            raise VersionError(f"not a version string: {text!r}")
        self.scheme = scheme_name
        self.text = text
        self.parsed = _PARSE[scheme_name](text)

    def _cmp(self, other: VersionKey) -> int:
        if other.scheme != self.scheme:
            raise TypeError(f"cannot order a {self.scheme} version against a {other.scheme} one")
        c: int = _CMP[self.scheme](self.parsed, other.parsed)
        return c

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionKey):
            return NotImplemented
        return self._cmp(other) == 0

    def __lt__(self, other: VersionKey) -> bool:
        if not isinstance(other, VersionKey):
            return NotImplemented
        return self._cmp(other) < 0

    def __repr__(self) -> str:
        return f"VersionKey({self.scheme!r}, {self.text!r})"


def sort_key(ecosystem: str, version: str) -> VersionKey:
    """An orderable key for `version` in `ecosystem`: `sorted(vs, key=lambda v: sort_key(e, v))`."""
    return VersionKey(scheme(ecosystem), version)


def compare(ecosystem: str, a: str, b: str) -> int:
    """-1, 0 or 1 as `a` sorts before, equal to or after `b` in the ecosystem's order."""
    s = scheme(ecosystem)
    ka, kb = VersionKey(s, a), VersionKey(s, b)
    return ka._cmp(kb)


def is_valid(ecosystem: str, version: str) -> bool:
    try:
        VersionKey(scheme(ecosystem), version)
    except VersionError:
        return False
    return True
