"""The packages installed in an image, read from its merged filesystem.

`inventory(fs, os_release)` reads what `bot.images.layers.INVENTORY_WANT` captured (read the layers
with it and `max_total=INVENTORY_MAX_TOTAL`, then `merge`). Only the final view counts: a
package whose files a later layer deleted is not installed.

* dpkg: `var/lib/dpkg/status` and distroless `var/lib/dpkg/status.d/*`; ecosystem `Debian` or
  `Ubuntu`; purl `pkg:deb/debian/<binary>@<version>?distro=debian-12`.
* apk: `lib/apk/db/installed`; `Alpine` (`Wolfi`, `Chainguard`); `pkg:apk/alpine/…?distro=3.19`.
* rpm: `rpmdb.sqlite` (RPM 4.16+); `Red Hat`, `Fedora`, `Rocky Linux`, …;
  `pkg:rpm/redhat/<name>@<version>-<release>?distro=rhel-9.2` (and `epoch=` when set).
* Python: `*.dist-info/METADATA`, `*.egg-info[/PKG-INFO]`; `PyPI`; `pkg:pypi/<name>@<version>`.
* npm: `node_modules/[@scope/]name/package.json`; `npm`; `pkg:npm/<scope>/<name>@<version>`.
* Maven: `pom.properties` in jars, wars and ears (and the jars nested in them); `Maven`, named
  `groupId:artifactId`; `pkg:maven/<group>/<artifact>@<version>`.
* Go: the build info of Go 1.18+ ELF programs; `Go`, each module and `stdlib` (the toolchain);
  `pkg:golang/<module path>@<version>`.

OS packages are named as the distribution's security advisories (and OSV) name them: Debian,
Ubuntu and Alpine by their *source* package (dpkg `Source:`, apk `o:`; its version when dpkg
gives one), so `libssl3` is `openssl`; the purl still names the binary package that is
installed, with the source in an `upstream=` qualifier (`name` or `name@version`) when it
differs. RPM distributions publish advisories by binary package, so rpm packages keep theirs.
`distro` is `Debian:12`, `Ubuntu:22.04`, `Alpine:v3.19`, `Red Hat:9.2`, …; None when the
release is not known.

Versions are as the package manager writes them: dpkg's with its epoch (`1:2.3-4`), rpm's
`epoch:version-release` (epoch only when set and not 0), Go's with the `v` (`v1.2.3`; the Go
toolchain that built a binary is `stdlib` at `v1.21.5`). A Go binary's main module is left out
when its version is `(devel)` (a local build: nothing to look up).

Not read: the Berkeley DB (`Packages`) and NDB (`Packages.db`) rpm databases of RHEL 8 and
older, Go binaries before Go 1.18, jars without `pom.properties`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sqlite3
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from packageurl import PackageURL

from bot.images.facts import ImageFacts
from bot.images.layers import (
    RPMDB_PATHS,
    EntryType,
    Filesystem,
    go_build_info,
    jar_path,
    node_package_path,
    os_release,
    pom_properties,
    python_metadata_path,
)
from bot.vulns.package import Package

__all__ = ["Package", "inventory", "packages_of", "parse_rpm_header", "source_package"]

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
APK_DB = "lib/apk/db/installed"

_RPM_QUERY_BUDGET = 50_000_000  # SQLite VM steps for reading one rpmdb (a 1000-package db: ~1M)


def inventory(
    fs: Filesystem, os_release: dict[str, str] | None, limit: int | None = None
) -> list[Package]:
    """Every package installed in the final view of `fs`, each once, sorted by ecosystem, name
    and version. `os_release` (`bot.images.layers.os_release(fs)`) names the distribution.

    With `limit`, at most `limit + 1` package records are read (the one past it tells the
    caller the cap was hit), so a database listing a million packages costs what the cap does.
    """
    osr = {k: v for k, v in (os_release or {}).items()}
    found = list(itertools.islice(_packages(fs, osr), None if limit is None else limit + 1))
    unique = {(p.ecosystem, p.name, p.version, p.purl, p.distro): p for p in found}
    return sorted(
        unique.values(),
        key=lambda p: (p.ecosystem, p.name, p.version, p.purl or "", p.distro or ""),
    )


def _packages(fs: Filesystem, osr: Mapping[str, str]) -> Iterator[Package]:
    yield from _dpkg(fs, osr)
    yield from _apk(fs, osr)
    yield from _rpm(fs, osr)
    for path, entry in fs.present.items():
        content = entry.content
        if entry.type is not EntryType.FILE or content is None:
            continue
        if python_metadata_path(path):
            yield from _python(content)
        elif node_package_path(path):
            yield from _npm(content)
        elif jar_path(path):
            yield from _maven(content)
        elif b"\xff Go buildinf:" in content:
            yield from _go(content)


def source_package(package: Package) -> tuple[str, str | None] | None:
    """For a dpkg or apk package, the binary package its purl names and that package's own
    version, when they differ from `name` / `version` (which are the source package's)."""
    if not package.purl:
        return None
    purl = PackageURL.from_string(package.purl)
    if purl.type not in ("deb", "apk"):
        return None
    return str(purl.name), (str(purl.version) if purl.version else None)


# --- the distribution ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Distro:
    ecosystem: str
    namespace: str  # purl namespace
    distro: str | None  # Package.distro, "Debian:12"
    qualifier: str | None  # purl distro qualifier, "debian-12"


def _words(value: str | None) -> list[str]:
    return (value or "").lower().split()


def _dpkg_distro(osr: Mapping[str, str]) -> _Distro:
    os_id = osr.get("ID", "").strip().lower()
    like = _words(osr.get("ID_LIKE"))
    version = osr.get("VERSION_ID", "").strip()
    if os_id in ("debian", "ubuntu"):
        ecosystem = os_id.capitalize()
        release = version or None
    else:  # a derivative (Mint, Kali, Raspbian, …): its own releases are not Debian's
        ecosystem = "Ubuntu" if "ubuntu" in like else "Debian"
        release = None
    namespace = os_id or ecosystem.lower()
    codename = osr.get("VERSION_CODENAME", "").strip()
    qualifier_release = version or codename
    return _Distro(
        ecosystem,
        namespace,
        f"{ecosystem}:{release}" if release else None,
        f"{namespace}-{qualifier_release}" if qualifier_release else None,
    )


_APK_ECOSYSTEMS = {"alpine": "Alpine", "wolfi": "Wolfi", "chainguard": "Chainguard"}
_MAJOR_MINOR = re.compile(r"(\d+)\.(\d+)")


def _apk_distro(osr: Mapping[str, str]) -> _Distro:
    os_id = osr.get("ID", "").strip().lower() or "alpine"
    ecosystem = _APK_ECOSYSTEMS.get(os_id, os_id.capitalize())
    m = _MAJOR_MINOR.match(osr.get("VERSION_ID", "").strip())
    if os_id == "alpine" and m:
        return _Distro(ecosystem, os_id, f"Alpine:v{m[1]}.{m[2]}", f"{m[1]}.{m[2]}")
    return _Distro(ecosystem, os_id, None, None)


_RPM_ECOSYSTEMS = {
    "rhel": ("Red Hat", "redhat"),
    "centos": ("CentOS", "centos"),
    "fedora": ("Fedora", "fedora"),
    "rocky": ("Rocky Linux", "rocky"),
    "almalinux": ("AlmaLinux", "almalinux"),
    "ol": ("Oracle Linux", "oracle"),
    "amzn": ("Amazon Linux", "amazon"),
    "opensuse-leap": ("openSUSE", "opensuse"),
    "opensuse-tumbleweed": ("openSUSE", "opensuse"),
    "sles": ("SUSE", "suse"),
    "sle_hpc": ("SUSE", "suse"),
    "mariner": ("Azure Linux", "mariner"),
    "azurelinux": ("Azure Linux", "azurelinux"),
    "photon": ("Photon OS", "photon"),
    "openeuler": ("openEuler", "openeuler"),
    "mageia": ("Mageia", "mageia"),
}


def _rpm_distro(osr: Mapping[str, str]) -> _Distro:
    os_id = osr.get("ID", "").strip().lower()
    ecosystem, namespace = _RPM_ECOSYSTEMS.get(os_id, (os_id.capitalize() or "RPM", os_id))
    version = osr.get("VERSION_ID", "").strip()
    if not version or not os_id:
        return _Distro(ecosystem, namespace or "rpm", None, None)
    return _Distro(ecosystem, namespace, f"{ecosystem}:{version}", f"{os_id}-{version}")


def _purl(
    type_: str,
    namespace: str | None,
    name: str,
    version: str,
    qualifiers: Mapping[str, str | None] | None = None,
) -> str:
    kept = {k: v for k, v in (qualifiers or {}).items() if v}
    return str(
        PackageURL(
            type=type_, namespace=namespace or None, name=name, version=version, qualifiers=kept
        ).to_string()
    )


# --- dpkg ----------------------------------------------------------------------------------------


def _lines(text: str) -> Iterator[str]:
    """`text.splitlines()` for `\n` and `\r\n` line ends, one line at a time."""
    start, end = 0, len(text)
    while start < end:
        stop = text.find("\n", start)
        if stop < 0:
            stop = end
        yield text[start:stop].rstrip("\r")
        start = stop + 1


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    """RFC 822-style paragraphs: `Key: value`, continuation lines indented, blank lines between
    paragraphs. Keys keep their case; the first of a repeated key wins.

    Lines are read one at a time (not `splitlines()`): a status file of 16 MiB would otherwise
    be a million strings at once."""
    fields: dict[str, str] = {}
    key: str | None = None
    for line in _lines(text):
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                fields[key] += "\n" + line.strip()
        else:
            name, colon, value = line.partition(":")
            if colon:
                key = name.strip()
                fields.setdefault(key, value.strip())
    if fields:
        yield fields


_DPKG_SOURCE = re.compile(r"(?P<name>\S+)(?:\s+\((?P<version>[^)]*)\))?")


def _installed(fields: Mapping[str, str], in_status_d: bool) -> bool:
    """`install ok installed` (and `hold ok installed`: held, but installed). Distroless
    `status.d` files have no `Status:`; what is listed there is installed."""
    status = fields.get("Status")
    if status is None:
        return in_status_d
    words = status.split()
    return len(words) == 3 and words[0] in ("install", "hold") and words[1:] == ["ok", "installed"]


def _dpkg_files(fs: Filesystem) -> Iterator[tuple[bytes, bool]]:
    data = fs.read(DPKG_STATUS)
    if data is not None:
        yield data, False
    for path in sorted(fs.present):
        if path.startswith(DPKG_STATUS_D) and not path.endswith(".md5sums"):
            data = fs.read(path)
            if data is not None:
                yield data, True


def _dpkg(fs: Filesystem, osr: Mapping[str, str]) -> Iterator[Package]:
    distro: _Distro | None = None
    for data, in_status_d in _dpkg_files(fs):
        distro = distro or _dpkg_distro(osr)
        for fields in _stanzas(data.decode("utf-8", "replace")):
            name, version = fields.get("Package", ""), fields.get("Version", "")
            if not name or not version or not _installed(fields, in_status_d):
                continue
            source_name, source_version = name, version
            m = _DPKG_SOURCE.fullmatch(fields.get("Source", "").strip())
            if m:
                source_name = m["name"]
                source_version = (m["version"] or "").strip() or version
            upstream = None
            if (source_name, source_version) != (name, version):
                same = source_version == version
                upstream = source_name if same else f"{source_name}@{source_version}"
            yield Package(
                ecosystem=distro.ecosystem,
                name=source_name,
                version=source_version,
                purl=_purl(
                    "deb",
                    distro.namespace,
                    name,
                    version,
                    {"distro": distro.qualifier, "upstream": upstream},
                ),
                distro=distro.distro,
            )


# --- apk -----------------------------------------------------------------------------------------


def _apk(fs: Filesystem, osr: Mapping[str, str]) -> Iterator[Package]:
    data = fs.read(APK_DB)
    if data is None:
        return
    distro = _apk_distro(osr)
    record: dict[str, str] = {}
    for line in [*data.decode("utf-8", "replace").splitlines(), ""]:
        if line.strip():
            key, colon, value = line.partition(":")
            if colon and len(key) == 1:
                record.setdefault(key, value.strip())
            continue
        name, version = record.get("P", ""), record.get("V", "")
        origin = record.get("o", "") or name
        record = {}
        if not name or not version:
            continue
        yield Package(
            ecosystem=distro.ecosystem,
            name=origin,
            version=version,
            purl=_purl(
                "apk",
                distro.namespace,
                name,
                version,
                {"distro": distro.qualifier, "upstream": origin if origin != name else None},
            ),
            distro=distro.distro,
        )


# --- rpm -----------------------------------------------------------------------------------------

RPMTAG_NAME = 1000
RPMTAG_VERSION = 1001
RPMTAG_RELEASE = 1002
RPMTAG_EPOCH = 1003
RPMTAG_ARCH = 1022
RPMTAG_SOURCERPM = 1044
_RPM_TAGS = frozenset(
    {RPMTAG_NAME, RPMTAG_VERSION, RPMTAG_RELEASE, RPMTAG_EPOCH, RPMTAG_ARCH, RPMTAG_SOURCERPM}
)
_RPM_INT32 = 4
_RPM_STRING = 6
_RPM_STRING_ARRAY = 8
_RPM_I18NSTRING = 9
_RPM_MAX_INDEX = 100_000  # rpm's own limit on header entries is 0xffff


class RpmHeaderError(ValueError):
    """A header blob that is not one."""


def parse_rpm_header(blob: bytes) -> dict[int, str | int]:
    """The NAME, VERSION, RELEASE, EPOCH, ARCH and SOURCERPM tags of an RPM header as rpmdb
    stores it: big-endian `index count`, `data length`, then 16-byte index entries (`tag`,
    `type`, `offset`, `count`) and the data store. Strings and the first INT32 only."""
    if len(blob) < 8:
        raise RpmHeaderError("rpm header shorter than its preamble")
    count, length = struct.unpack_from(">II", blob, 0)
    store = 8 + 16 * count
    if count > _RPM_MAX_INDEX or store + length > len(blob):
        raise RpmHeaderError("rpm header sizes do not fit the blob")
    out: dict[int, str | int] = {}
    for i in range(count):
        tag, kind, offset, n = struct.unpack_from(">IIII", blob, 8 + 16 * i)
        if tag not in _RPM_TAGS or n < 1 or offset >= length:
            continue
        at = store + offset
        if kind == _RPM_INT32:
            if offset + 4 > length:
                raise RpmHeaderError(f"rpm tag {tag} runs past the data store")
            out[tag] = struct.unpack_from(">I", blob, at)[0]
        elif kind in (_RPM_STRING, _RPM_STRING_ARRAY, _RPM_I18NSTRING):
            end = blob.find(b"\0", at, store + length)
            if end < 0:
                raise RpmHeaderError(f"rpm tag {tag} is not NUL-terminated")
            out[tag] = blob[at:end].decode("utf-8", "replace")
    return out


def _sqlite_bytes(data: bytes) -> bytes:
    """A WAL-mode database (rpm uses WAL) marked as a rollback-journal one, so an in-memory
    copy opens: bytes 18-19 of the header are the read and write format versions."""
    if len(data) >= 100 and data[18:20] == b"\x02\x02":
        return data[:18] + b"\x01\x01" + data[20:]
    return data


def _open_copy(data: bytes, stack: contextlib.ExitStack) -> sqlite3.Connection:
    """The database in memory (`deserialize`), or in a temporary file where this Python's
    sqlite3 has no `deserialize`."""
    image = _sqlite_bytes(data)
    if hasattr(sqlite3.Connection, "deserialize"):
        db = stack.enter_context(contextlib.closing(sqlite3.connect(":memory:")))
        db.deserialize(image)
        return db
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="crowsnest-rpmdb-"))
    path = os.path.join(tmp, "rpmdb.sqlite")
    with open(path, "wb") as f:
        f.write(image)
    return stack.enter_context(contextlib.closing(sqlite3.connect(path)))


def _rpm_blobs(data: bytes) -> list[bytes]:
    """Every `Packages.blob` of an rpmdb.sqlite. The database comes from the image, so: read
    only, untrusted schema off, only a real table, a bounded query."""
    steps = [0]

    def over_budget() -> int:
        steps[0] += 1
        return 1 if steps[0] * 1000 > _RPM_QUERY_BUDGET else 0

    with contextlib.ExitStack() as stack:
        try:
            db = _open_copy(data, stack)
            db.execute("PRAGMA query_only = ON")
            db.execute("PRAGMA trusted_schema = OFF")
            db.execute("PRAGMA cell_size_check = ON")
            db.set_progress_handler(over_budget, 1000)
            table = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'Packages'"
            ).fetchone()
            if table is None:
                return []
            rows = db.execute("SELECT blob FROM Packages ORDER BY hnum").fetchall()
        except (sqlite3.Error, OSError):
            return []
    return [bytes(row[0]) for row in rows if isinstance(row[0], bytes)]


def _rpm(fs: Filesystem, osr: Mapping[str, str]) -> Iterator[Package]:
    data = next((d for p in sorted(RPMDB_PATHS) if (d := fs.read(p)) is not None), None)
    if not data:  # an empty file is no database (and `deserialize(b"")` raises MemoryError)
        return
    distro = _rpm_distro(osr)
    for blob in _rpm_blobs(data):
        try:
            tags = parse_rpm_header(blob)
        except RpmHeaderError:
            continue
        name, version = tags.get(RPMTAG_NAME), tags.get(RPMTAG_VERSION)
        release, epoch = tags.get(RPMTAG_RELEASE), tags.get(RPMTAG_EPOCH)
        if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
            continue
        if name == "gpg-pubkey":  # imported signing keys, not software
            continue
        full = f"{version}-{release}" if isinstance(release, str) and release else version
        has_epoch = isinstance(epoch, int) and epoch > 0
        source = tags.get(RPMTAG_SOURCERPM)
        yield Package(
            ecosystem=distro.ecosystem,
            name=name,
            version=f"{epoch}:{full}" if has_epoch else full,
            purl=_purl(
                "rpm",
                distro.namespace,
                name,
                full,
                {
                    "distro": distro.qualifier,
                    "epoch": str(epoch) if has_epoch else None,
                    "upstream": source if isinstance(source, str) else None,
                },
            ),
            distro=distro.distro,
        )


# --- language packages ---------------------------------------------------------------------------


def _headers(data: bytes) -> dict[str, str]:
    """The first value of each header of a METADATA / PKG-INFO file, keys lower-cased."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            break
        if line[:1].isspace():
            continue
        key, colon, value = line.partition(":")
        if colon:
            out.setdefault(key.strip().lower(), value.strip())
    return out


def _python(data: bytes) -> Iterable[Package]:
    headers = _headers(data)
    name, version = headers.get("name", ""), headers.get("version", "")
    if not name or not version:
        return []
    return [Package("PyPI", name, version, _purl("pypi", None, name, version))]


def _npm(data: bytes) -> Iterable[Package]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []
    scope, slash, bare = name.rpartition("/")
    if slash and not scope.startswith("@"):
        return []  # not a registry name
    return [Package("npm", name, version, _purl("npm", scope or None, bare, version))]


def _properties(data: bytes) -> dict[str, str]:
    """Java `.properties`: `key=value` or `key: value` lines, `#` / `!` comments."""
    out: dict[str, str] = {}
    for raw in data.decode("latin-1").splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)", line)
        if m:
            out.setdefault(m[1], m[2].strip())
    return out


def _maven(jar: bytes) -> Iterable[Package]:
    out: list[Package] = []
    for content in pom_properties(jar).values():
        props = _properties(content)
        group, artifact = props.get("groupId", ""), props.get("artifactId", "")
        version = props.get("version", "")
        if group and artifact and version:
            out.append(
                Package(
                    "Maven",
                    f"{group}:{artifact}",
                    version,
                    _purl("maven", group, artifact, version),
                )
            )
    return out


_GO_VERSION = re.compile(r"go(\d+)\.(\d+)(?:\.(\d+))?((?:rc|beta)\d+)?")


def _go_stdlib(version: str) -> str | None:
    """`go1.21.5` -> `v1.21.5`; `go1.20` (before Go 1.21, the .0 release) -> `v1.20.0`;
    `go1.22rc1` -> `v1.22.0-rc1`; development builds -> None."""
    m = _GO_VERSION.fullmatch(version.split()[0] if version.split() else "")
    if not m:
        return None
    pre = f"-{m[4]}" if m[4] else ""
    return f"v{m[1]}.{m[2]}.{m[3] or 0}{pre}"


def _golang_purl(module: str, version: str) -> str:
    namespace, _, name = module.rpartition("/")
    return _purl("golang", namespace or None, name, version)


def _go(data: bytes) -> Iterable[Package]:
    info = go_build_info(data)
    if info is None:
        return []
    go_version, modinfo = info
    modules: list[tuple[str, str]] = []
    for line in modinfo.splitlines():
        parts = line.split("\t")
        if parts[0] in ("mod", "dep") and len(parts) >= 3:
            modules.append((parts[1], parts[2]))
        elif parts[0] == "=>" and len(parts) >= 3 and modules:
            if parts[2]:  # a replacement by another module; a local directory has no version
                modules[-1] = (parts[1], parts[2])
            else:
                modules.pop()
    out = [
        Package("Go", path, version, _golang_purl(path, version))
        for path, version in modules
        if path and version and version != "(devel)"
    ]
    stdlib = _go_stdlib(go_version)
    if stdlib:
        out.append(Package("Go", "stdlib", stdlib, _golang_purl("stdlib", stdlib)))
    return out


def packages_of(facts: ImageFacts, limit: int | None = None) -> list[Package]:
    """Every platform's installed packages, each once; with `limit`, at most `limit + 1` (more
    than `limit` returned means the image has more than the cap, and they were not all read)."""
    found: dict[tuple[str, str, str, str | None], Package] = {}
    for platform in facts.platforms:
        if platform.filesystem is None:
            continue
        left = None if limit is None else limit + 1 - len(found)
        fs = platform.filesystem
        for p in inventory(fs, os_release(fs), left):
            found.setdefault((p.ecosystem, p.name, p.version, p.distro), p)
        if limit is not None and len(found) > limit:
            break
    return list(found.values())
