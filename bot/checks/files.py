"""Checks over an image's layers. Pure: LayerFacts in, findings out.

The layers are read by `bot.images.layers` (`LayerReader` per layer, then `merge`); these
checks look at the result:

* `miner-in-layers` (CRITICAL): crypto-miner files anywhere in the image history — known miner
  file names, executables whose first bytes name a miner or a mining pool protocol, and miner
  pool configurations. One finding per image, listing the paths.
* `secret-in-layers` (CRITICAL for private keys and cloud credentials, HIGH otherwise): keys
  and credential files anywhere in the image history. One finding per path (the path is the
  finding's `package`); secrets are shown masked only.
* `eol-base-os` (HIGH past end of life, MEDIUM within `EOL_WARNING_DAYS` of it): the base OS
  release from os-release against `bot/checks/data/eol.json`. Unknown distributions and
  releases give no finding.
* `stale-image` (LOW past `max_age_days`, MEDIUM past a year): the image config's `created`.

Layers are numbered from 1, bottom first, in the text ("layer 2 of 5"); `bot.images.layers` indexes
them from 0. A file that a later layer deleted or overwrote is still in the lower layer's blob,
which everyone who can pull the image can download, so it is reported with that said.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

from bot.images.layers import Entry, EntryType, Filesystem, LayerRecord, Version, merge, os_release
from bot.model.findings import Finding, Severity

MINER_ID = "miner-in-layers"
LEAK_ID = "secret-in-layers"
EOL_ID = "eol-base-os"
STALE_ID = "stale-image"

EOL_WARNING_DAYS = 90
DEFAULT_MAX_AGE_DAYS = 180
STALE_MEDIUM_DAYS = 365
PLACEHOLDER_CREATED_BEFORE = datetime(2013, 1, 1, tzinfo=UTC)
"""Earlier `created` dates are placeholders (reproducible builds write 1970-01-01), not ages."""

_SHOWN_PATHS = 5
_SHOWN_VERSIONS = 3
_SHOWN_HITS = 5
_PATH_LIMIT = 200


@dataclass(frozen=True)
class LayerFacts:
    """An image's stacked layers, its config's `created`, and the time to judge them at."""

    filesystem: Filesystem
    created: datetime | None
    now: datetime
    layer_digests: tuple[str, ...] = ()
    """Optional, bottom first: shown next to the layer numbers when given."""

    @classmethod
    def from_records(
        cls,
        records: Iterable[LayerRecord],
        created: datetime | None,
        now: datetime,
        layer_digests: tuple[str, ...] = (),
    ) -> LayerFacts:
        return cls(merge(list(records)), created, now, layer_digests)


@dataclass(frozen=True)
class LayerPolicy:
    max_age_days: int = DEFAULT_MAX_AGE_DAYS
    disabled: frozenset[str] = frozenset()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- wording shared by the checks ------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _code(path: str) -> str:
    """A path from the image, as an inline code span (the renderer escapes the rest)."""
    clean = _CONTROL.sub("?", path).replace("`", "'")
    if len(clean) > _PATH_LIMIT:
        clean = clean[: _PATH_LIMIT - 1] + "…"
    return f"`/{clean}`"


def _layer(facts: LayerFacts, index: int) -> str:
    text = f"layer {index + 1} of {facts.filesystem.layer_count}"
    if index < len(facts.layer_digests):
        text += f" ({facts.layer_digests[index].removeprefix('sha256:')[:12]})"
    return text


def _where(facts: LayerFacts, version: Version) -> str:
    """`in layer 1 of 3, deleted in layer 3, still in the image history`."""
    text = f"in {_layer(facts, version.layer)}"
    removed = version.removed
    if removed is None:
        return text
    if removed.how == "deleted":
        return f"{text}, deleted in layer {removed.layer + 1}, still in the image history"
    return (
        f"{text}, replaced in layer {removed.layer + 1}, the old content still in the image history"
    )


def _wheres(facts: LayerFacts, versions: list[Version]) -> str:
    shown = [_where(facts, v) for v in versions[:_SHOWN_VERSIONS]]
    if len(versions) > _SHOWN_VERSIONS:
        shown.append(f"and in {len(versions) - _SHOWN_VERSIONS} more layers")
    return "; ".join(shown)


def _package(path: str) -> str:
    return path[:_PATH_LIMIT]


_HISTORY_NOTE = (
    "Deleting or overwriting a file in a later layer does not take it out of the image: every "
    "lower layer is still pulled, and can be read, by anyone who can pull the image."
)


# --- miner-in-layers ---------------------------------------------------------------------------

MINER_NAMES = frozenset(
    {
        "xmrig",
        "xmrig-notls",
        "xmrig-cuda",
        "xmrig-amd",
        "xmrig-nvidia",
        "xmr-stak",
        "xmr-stak-cpu",
        "xmr-stak-rx",
        "minerd",
        "cpuminer",
        "cpuminer-multi",
        "cpuminer-opt",
        "ccminer",
        "cgminer",
        "bfgminer",
        "sgminer",
        "t-rex",
        "nbminer",
        "lolminer",
        "phoenixminer",
        "ethminer",
        "nsfminer",
        "ethdcrminer64",
        "teamredminer",
        "nanominer",
        "srbminer",
        "srbminer-multi",
        "wildrig",
        "wildrig-multi",
        "kdevtmpfsi",
        "kinsing",
    }
)
_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.xz", ".tar.bz2", ".tgz", ".zip", ".tar", ".gz", ".exe")
_VERSIONED = re.compile(r"([a-z][a-z0-9-]*?)[-_]v?\d.*", re.S)
_MINER_STRINGS = re.compile(
    rb"xmrig|stratum\+(?:tcp|ssl|tls)://|(?<![a-z0-9_])(?:cryptonight|randomx)(?![a-z0-9_])",
    re.I,
)
_POOLS = re.compile(r'"pools"\s*:')
_STRATUM_URL = re.compile(r'"url"\s*:\s*"stratum\+', re.I)
_DONATE_LEVEL = re.compile(r'"donate-level"\s*:')
_MINER_CONFIG_NAMES = frozenset({"config.json", "xmrig.json"})


def miner_name(file_name: str) -> str | None:
    """The known miner a file name belongs to (`xmrig-6.21.0-linux-x64.tar.gz` -> `xmrig`)."""
    name = file_name.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name in MINER_NAMES:
        return name
    m = _VERSIONED.fullmatch(name)
    return m.group(1) if m and m.group(1) in MINER_NAMES else None


def _miner_reasons(entry: Entry) -> list[str]:
    reasons: list[str] = []
    if entry.type is EntryType.DIR:
        return reasons
    known = miner_name(entry.name)
    if known:
        reasons.append(f"file name of the {known} miner")
    if entry.head:
        m = _MINER_STRINGS.search(entry.head)
        if m:
            word = m.group(0).decode("ascii", "replace")
            reasons.append(f"executable whose first bytes contain {word!r}")
    if entry.content is not None and entry.name in _MINER_CONFIG_NAMES:
        text = entry.content.decode("utf-8", "replace")
        if _POOLS.search(text) and (_STRATUM_URL.search(text) or _DONATE_LEVEL.search(text)):
            reasons.append("miner pool configuration")
    return reasons


def miner_in_layers(facts: LayerFacts) -> list[Finding]:
    found: dict[str, tuple[list[Version], list[str]]] = {}
    for version in facts.filesystem.versions():
        reasons = _miner_reasons(version.entry)
        if reasons:
            versions, why = found.setdefault(version.path, ([], []))
            versions.append(version)
            why.extend(r for r in reasons if r not in why)
    if not found:
        return []
    lines = [
        f"• {_code(path)} ({'; '.join(why)}), {_wheres(facts, versions)}"
        for path, (versions, why) in list(found.items())[:_SHOWN_PATHS]
    ]
    if len(found) > _SHOWN_PATHS:
        lines.append(f"• and {len(found) - _SHOWN_PATHS} more paths")
    gone = all(v.removed is not None for versions, _ in found.values() for v in versions)
    note = f"\n{_HISTORY_NOTE}" if gone else ""
    return [
        Finding(
            check_id=MINER_ID,
            severity=Severity.CRITICAL,
            title="Crypto-miner in the image layers",
            detail="The image carries crypto-miner files:\n" + "\n".join(lines) + note,
            remediation=(
                "Do not run this image. Treat its build as compromised: find how the miner got "
                "in (base image, dependency, build script, CI runner), rebuild from a trusted "
                "base without it, and rotate any credentials the build could reach. Deleting "
                "it in a later layer is not enough; it must not be in any layer."
            ),
        )
    ]


# --- secret-in-layers --------------------------------------------------------------------------

SHOW_PREFIX_FROM = 16
"""Secrets at least this long show their first four characters when masked; shorter, none."""


def mask(value: str) -> str:
    """`AKIA…(20 chars)`: never more of a secret than its first four characters."""
    shown = value[:4] if len(value) >= SHOW_PREFIX_FROM else ""
    return f"{shown}…({len(value)} chars)"


@dataclass(frozen=True)
class SecretHit:
    kind: str
    severity: Severity
    shown: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.shown}".strip()


_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?P<label>(?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----"
    r"(?P<body>.{0,20000}?)-----END",
    re.S,
)
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_AWS_SECRET = re.compile(
    r"(?im)^\s*(aws_secret_access_key|aws_session_token)\s*[=:]\s*[\"']?([^\s\"']+)"
)
_NPM_TOKEN = re.compile(r"(?m)^\s*(?:\S*:)?(_authToken|_auth|_password)\s*=\s*(\S.*?)\s*$")
_URL_CREDENTIAL = re.compile(
    r"(?m)[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:(?P<pw>[^\s@]+)@(?P<host>[^\s/:@]+)"
)
_PYPIRC_PASSWORD = re.compile(r"(?im)^\s*password\s*[=:]\s*(\S.*?)\s*$")
_NETRC_PASSWORD = re.compile(r"(?<!\S)password\s+(\S+)")
_PLACEHOLDER_MARKERS = ("example", "changeme", "placeholder", "redacted", "xxxxxx", "your_")


def _placeholder(value: str) -> bool:
    s = value.strip().strip("'\"").strip()
    if not s or s.startswith(("$", "{{", "<", "%(")):
        return True
    return any(marker in s.lower() for marker in _PLACEHOLDER_MARKERS)


def _openssh_encrypted(body: str) -> bool:
    """An `openssh-key-v1` blob names its cipher right after the magic; `none` = plain."""
    try:
        blob = base64.b64decode("".join(body.split()), validate=False)
    except (binascii.Error, ValueError):
        return False
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic) or len(blob) < len(magic) + 4:
        return False
    n = int.from_bytes(blob[len(magic) : len(magic) + 4], "big")
    return blob[len(magic) + 4 : len(magic) + 4 + n] != b"none"


def _key_hits(text: str) -> Iterable[SecretHit]:
    for m in _PRIVATE_KEY.finditer(text):
        label = m["label"].strip()
        body = m["body"]
        encrypted = (
            "ENCRYPTED" in label
            or "Proc-Type: 4,ENCRYPTED" in body
            or (label == "OPENSSH" and _openssh_encrypted(body))
        )
        words = [w for w in label.split() if w != "ENCRYPTED"]
        kind = " ".join([*words, "private key"])
        if encrypted:
            yield SecretHit(f"passphrase-protected {kind}", Severity.HIGH)
        else:
            yield SecretHit(kind, Severity.CRITICAL)


def _aws_hits(text: str) -> Iterable[SecretHit]:
    for m in _AWS_KEY_ID.finditer(text):
        if "EXAMPLE" not in m.group(0):
            yield SecretHit("AWS access key id", Severity.CRITICAL, mask(m.group(0)))
    for m in _AWS_SECRET.finditer(text):
        if not _placeholder(m.group(2)):
            kind = (
                "AWS secret access key" if "secret" in m.group(1).lower() else "AWS session token"
            )
            yield SecretHit(kind, Severity.CRITICAL, mask(m.group(2)))


def _docker_hits(text: str) -> Iterable[SecretHit]:
    try:
        config = json.loads(text)
    except ValueError:
        return
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        return
    for host, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        for key in ("auth", "password", "identitytoken", "registrytoken"):
            value = entry.get(key)
            if isinstance(value, str) and value and not _placeholder(value):
                yield SecretHit(
                    f"registry credential for {str(host)[:100]}", Severity.HIGH, mask(value)
                )
                break


def _gcloud_hits(text: str) -> Iterable[SecretHit]:
    try:
        creds = json.loads(text)
    except ValueError:
        return
    if not isinstance(creds, dict):
        return
    for key, kind in (
        ("private_key", "Google service account key"),
        ("refresh_token", "Google refresh token"),
    ):
        value = creds.get(key)
        if isinstance(value, str) and value and not _placeholder(value):
            shown = "" if key == "private_key" else mask(value)
            yield SecretHit(kind, Severity.CRITICAL, shown)


def _file_hits(path: str, text: str) -> Iterable[SecretHit]:
    name = path.rpartition("/")[2]
    yield from _key_hits(text)
    yield from _aws_hits(text)
    if name == ".npmrc":
        for m in _NPM_TOKEN.finditer(text):
            if not _placeholder(m.group(2)):
                yield SecretHit(f"npm {m.group(1)}", Severity.HIGH, mask(m.group(2)))
    elif name == ".git-credentials":
        for m in _URL_CREDENTIAL.finditer(text):
            yield SecretHit(f"git credential for {m['host'][:100]}", Severity.HIGH, mask(m["pw"]))
    elif name == ".pypirc":
        for m in _PYPIRC_PASSWORD.finditer(text):
            if not _placeholder(m.group(1)):
                yield SecretHit("PyPI password", Severity.HIGH, mask(m.group(1)))
    elif name == ".netrc":
        for m in _NETRC_PASSWORD.finditer(text):
            if not _placeholder(m.group(1)):
                yield SecretHit("netrc password", Severity.HIGH, mask(m.group(1)))
    elif path.endswith(".docker/config.json"):
        yield from _docker_hits(text)
    elif path.endswith(".config/gcloud/application_default_credentials.json"):
        yield from _gcloud_hits(text)


def secret_hits(path: str, content: bytes) -> list[SecretHit]:
    """What credentials one file's content holds, each once."""
    hits: list[SecretHit] = []
    for hit in _file_hits(path, content.decode("utf-8", "replace")):
        if hit not in hits:
            hits.append(hit)
    return hits


def secret_in_layers(facts: LayerFacts) -> list[Finding]:
    found: dict[str, tuple[list[Version], list[SecretHit]]] = {}
    for version in facts.filesystem.versions():
        content = version.entry.content
        if content is None or version.entry.type is not EntryType.FILE:
            continue
        hits = secret_hits(version.path, content)
        if hits:
            versions, all_hits = found.setdefault(version.path, ([], []))
            versions.append(version)
            all_hits.extend(h for h in hits if h not in all_hits)
    findings: list[Finding] = []
    for path, (versions, hits) in found.items():
        severity = max((h.severity for h in hits), key=lambda s: s.rank)
        keys = any("private key" in h.kind for h in hits)
        held = ", ".join(h.describe() for h in hits[:_SHOWN_HITS])
        if len(hits) > _SHOWN_HITS:
            held += f" and {len(hits) - _SHOWN_HITS} more"
        gone = all(v.removed is not None for v in versions)
        detail = f"{_code(path)} holds: {held}; it is {_wheres(facts, versions)}."
        if gone:
            detail += f" {_HISTORY_NOTE}"
        findings.append(
            Finding(
                check_id=LEAK_ID,
                severity=severity,
                title="Private key in the image layers"
                if keys
                else "Credentials in the image layers",
                detail=detail,
                remediation=(
                    "Rotate this credential now: anyone who can pull the image can read it. Then "
                    "keep it out of every layer: use `RUN --mount=type=secret` (or a multi-stage "
                    "build that copies only the output) instead of `COPY`ing it in and deleting "
                    "it later, add it to `.dockerignore`, and rebuild and push the image."
                ),
                package=_package(path),
            )
        )
    return findings


# --- eol-base-os -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    version: str
    eol: date
    note: str | None = None


@dataclass(frozen=True)
class Distro:
    id: str
    name: str
    match: str
    """`major` (Debian 12.5 -> 12) or `major.minor` (Alpine 3.19.1 -> 3.19, Ubuntu 22.04)."""
    support: str
    """What ends on the dates given: "security support", "Debian LTS support", …"""
    releases: Mapping[str, Release]

    def release_for(self, version_id: str) -> Release | None:
        m = _VERSION.fullmatch(version_id.strip())
        if not m:
            return None
        key = m["major"] if self.match == "major" else f"{m['major']}.{m['minor'] or ''}"
        return self.releases.get(key)


@dataclass(frozen=True)
class EolTable:
    source: str
    urls: tuple[str, ...]
    as_of: date
    distros: Mapping[str, Distro]


_VERSION = re.compile(r"(?P<major>\d+)(?:\.(?P<minor>\d+))?(?:\.\d+)*")
_MATCHES = frozenset({"major", "major.minor"})


def parse_eol_table(data: Mapping[str, Any]) -> EolTable:
    """The table in `bot/checks/data/eol.json`; ValueError when it is malformed."""
    try:
        distros: dict[str, Distro] = {}
        for distro_id, d in data["distros"].items():
            if d["match"] not in _MATCHES:
                raise ValueError(f"{distro_id}: match must be one of {sorted(_MATCHES)}")
            notes = d.get("notes", {})
            releases = {
                version: Release(version, date.fromisoformat(eol), notes.get(version))
                for version, eol in d["releases"].items()
            }
            distros[distro_id] = Distro(distro_id, d["name"], d["match"], d["support"], releases)
        return EolTable(
            source=str(data["source"]),
            urls=tuple(data.get("urls", ())),
            as_of=date.fromisoformat(data["as_of"]),
            distros=distros,
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"malformed EOL table: {e!r}") from None


@functools.cache
def load_eol_table() -> EolTable:
    text = resources.files("bot.checks.data").joinpath("eol.json").read_text(encoding="utf-8")
    return parse_eol_table(json.loads(text))


def _distro_id(release: Mapping[str, str]) -> str:
    distro_id = release.get("ID", "").strip().lower()
    if distro_id == "centos" and "stream" in release.get("NAME", "").lower():
        return "centos-stream"
    return distro_id


def _release_text(release: Release) -> str:
    return f"{release.eol.isoformat()}{f' ({release.note})' if release.note else ''}"


def eol_base_os(facts: LayerFacts, table: EolTable | None = None) -> list[Finding]:
    osr = os_release(facts.filesystem)
    if osr is None:
        return []
    table = table or load_eol_table()
    distro = table.distros.get(_distro_id(osr))
    version_id = osr.get("VERSION_ID", "")
    release = distro.release_for(version_id) if distro else None
    if distro is None or release is None:
        return []
    today = _utc(facts.now).date()
    days = (release.eol - today).days
    if days > EOL_WARNING_DAYS:
        return []
    what = f"{distro.name} {release.version} (VERSION_ID {version_id})"
    if days < 0:
        severity = Severity.HIGH
        title = f"Base OS {distro.name} {release.version} is past end of life"
        when = f"ended on {_release_text(release)}, {-days} days ago"
        consequence = "it gets no more security fixes"
    else:
        severity = Severity.MEDIUM
        title = f"Base OS {distro.name} {release.version} reaches end of life soon"
        when = f"ends on {_release_text(release)}, in {days} days"
        consequence = "after that it gets no more security fixes"
    supported = sorted(
        (r for r in distro.releases.values() if (r.eol - today).days > EOL_WARNING_DAYS),
        key=lambda r: r.eol,
    )[-3:]  # the longest-lived ones
    target = f"a supported {distro.name} release"
    if supported:
        options = [
            f"{r.version} (until {r.eol}{f', {r.note}' if r.note else ''})" for r in supported
        ]
        listed = options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"
        target += f", {listed},"
    return [
        Finding(
            check_id=EOL_ID,
            severity=severity,
            title=title,
            detail=(
                f"The image is built on {what}; its {distro.support} {when}, so {consequence}. "
                f"Dates: {table.source}."
            ),
            remediation=f"Rebuild the image on {target} and keep rebuilding it as fixes ship.",
        )
    ]


# --- stale-image -------------------------------------------------------------------------------


def stale_image(facts: LayerFacts, max_age_days: int = DEFAULT_MAX_AGE_DAYS) -> list[Finding]:
    if facts.created is None:
        return []
    created = _utc(facts.created)
    if created < PLACEHOLDER_CREATED_BEFORE:
        return []
    age = (_utc(facts.now) - created).days
    if age <= max_age_days:
        return []
    severity = Severity.MEDIUM if age > STALE_MEDIUM_DAYS else Severity.LOW
    return [
        Finding(
            check_id=STALE_ID,
            severity=severity,
            title="Image is stale",
            detail=(
                f"The image config says it was built on {created.date().isoformat()}, {age} days "
                f"ago (more than {max_age_days}); base image and package security fixes "
                "published since then are not in it."
            ),
            remediation=(
                "Rebuild and push the image regularly (e.g. a scheduled CI build that pulls the "
                "base image fresh), so that it picks up upstream security fixes."
            ),
        )
    ]


# --- running them ------------------------------------------------------------------------------

LayerCheck = Callable[[LayerFacts, LayerPolicy], list[Finding]]


def _miner(facts: LayerFacts, policy: LayerPolicy) -> list[Finding]:
    return miner_in_layers(facts)


def _secret(facts: LayerFacts, policy: LayerPolicy) -> list[Finding]:
    return secret_in_layers(facts)


def _eol(facts: LayerFacts, policy: LayerPolicy) -> list[Finding]:
    return eol_base_os(facts)


def _stale(facts: LayerFacts, policy: LayerPolicy) -> list[Finding]:
    return stale_image(facts, policy.max_age_days)


CHECKS: dict[str, LayerCheck] = {MINER_ID: _miner, LEAK_ID: _secret, EOL_ID: _eol, STALE_ID: _stale}


def run_layer_checks(facts: LayerFacts, policy: LayerPolicy | None = None) -> list[Finding]:
    policy = policy or LayerPolicy()
    findings: list[Finding] = []
    for check_id, check in CHECKS.items():
        if check_id not in policy.disabled:
            findings.extend(check(facts, policy))
    return findings
