"""What to keep of a layer's files: the package-capture policies given to the reader as `want`.

`DEFAULT_WANT` keeps what the checks read: release files and package databases, credential
files, key files and miner configs, outside package-manager trees (full of test keys and
unrelated config.json files). `INVENTORY_WANT` (with `INVENTORY_MAX_TOTAL`) extends it with
what `bot.images.inventory` needs: the dpkg, apk and rpm databases, Python and npm package
metadata, Maven coordinates out of jars and the build info of Go binaries. Each is held under
a cap of its own, and the larger ones only as far as the inventory needs them: a reducer keeps
a few headers of a METADATA file or the `pom.properties` of a jar, and `GoBuildInfoScanner`
finds a Go binary's build info as the file streams past, without holding the binary.

The answers (`Capture`, caps) are the parser's vocabulary (`bot.images.layers.tar`).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib

from bot.images.layers.tar import Capture, KiB, MiB, Want, parent_path

# --- what to keep by default -------------------------------------------------------------------

_RELEASE_FILES = frozenset(
    {
        "etc/os-release",
        "usr/lib/os-release",
        "etc/alpine-release",
        "etc/debian_version",
        "etc/redhat-release",
        "etc/centos-release",
        "etc/system-release",
        "lib/apk/db/installed",
        "var/lib/dpkg/status",
    }
)
_CREDENTIAL_NAMES = frozenset({".npmrc", ".git-credentials", ".pypirc", ".netrc"})
_CREDENTIAL_TAILS = (
    ".aws/credentials",
    ".docker/config.json",
    ".config/gcloud/application_default_credentials.json",
)
_KEY_NAME = re.compile(r".*\.(?:pem|key)|.*id_(?:rsa|dsa|ecdsa|ed25519).*", re.S)
_MINER_CONFIG_NAMES = frozenset({"config.json", "xmrig.json"})
_MINER_CONFIG_MAX = 64 * KiB
_LIBRARY_PARTS = frozenset({"site-packages", "dist-packages", "node_modules"})


def _in_library(path: str) -> bool:
    """Package-manager trees, full of test keys and unrelated config.json files."""
    return path.startswith("usr/share/") or not _LIBRARY_PARTS.isdisjoint(path.split("/"))


def default_want(path: str, size: int) -> bool:
    """Release files and package databases, credential files, key files, miner configs."""
    if path in _RELEASE_FILES:
        return True
    if path.startswith("var/lib/dpkg/status.d/"):
        return not path.endswith(".md5sums")
    name = path.rpartition("/")[2]
    if name in _CREDENTIAL_NAMES:
        return True
    if any(path == tail or path.endswith("/" + tail) for tail in _CREDENTIAL_TAILS):
        return True
    if _in_library(path):
        return False
    if _KEY_NAME.fullmatch(name) and not name.endswith(".pub"):
        return True
    return name in _MINER_CONFIG_NAMES and size <= _MINER_CONFIG_MAX


DEFAULT_WANT: Want = default_want


# --- what to keep for a package inventory ------------------------------------------------------

INVENTORY_MAX_TOTAL = 256 * MiB
"""`max_total` to read layers with `INVENTORY_WANT`: the most content one layer may keep (and
hold while one file is read). What is really kept is far less: see `inventory_want`."""

DPKG_STATUS_MAX = 16 * MiB
DPKG_STATUS_D_MAX = 1 * MiB
APK_DB_MAX = 8 * MiB
RPMDB_MAX = 64 * MiB
METADATA_MAX = 1 * MiB
JAR_MAX = 32 * MiB
GO_INFO_MAX = 1 * MiB
"""Most bytes the Go build-info scanner holds (the build info itself is a few KiB)."""
GO_MIN_SIZE = 256 * KiB
"""Smaller files are not Go programs (the smallest hello-world is over 1 MiB)."""

RPMDB_PATHS = frozenset({"var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite"})
_JAR_SUFFIXES = (".jar", ".war", ".ear")
_NODE_PACKAGE = re.compile(r"(?:.*/)?node_modules/(?:@[^/]+/)?[^/.@][^/]*/package\.json", re.S)
_GO_PLACES = frozenset({"", "app", "ko-app", "workspace", "srv", "opt"})
_BIN_DIRS = frozenset({"bin", "sbin"})


def python_metadata_path(path: str) -> bool:
    """A wheel's `*.dist-info/METADATA`, an egg's `*.egg-info/PKG-INFO` or `*.egg-info` file."""
    return path.endswith((".dist-info/METADATA", ".egg-info/PKG-INFO", ".egg-info")) and "/" in path


def node_package_path(path: str) -> bool:
    """`…/node_modules/[@scope/]name/package.json`: an installed package's own manifest (not
    the `package.json` files some packages carry deeper inside)."""
    return _NODE_PACKAGE.fullmatch(path) is not None


def jar_path(path: str) -> bool:
    return path.lower().endswith(_JAR_SUFFIXES)


def go_binary_place(path: str) -> bool:
    """Where programs are installed: a `bin` or `sbin` directory, the image root, `/app`, …"""
    if _in_library(path):
        return False
    parent = parent_path(path)
    return (
        parent in _GO_PLACES
        or parent.rpartition("/")[2] in _BIN_DIRS
        or parent.startswith(("app/", "ko-app/"))
    )


_METADATA_KEYS = frozenset({"metadata-version", "name", "version", "license", "license-expression"})


def reduce_python_metadata(data: bytes) -> bytes | None:
    """METADATA / PKG-INFO down to its `Name`, `Version` and license headers: the long
    description after them (and in an old `Description:` header) can be most of the file."""
    lines: list[bytes] = []
    for line in data.splitlines():
        if not line.strip():
            break  # the headers end at the first empty line
        key, colon, _ = line.partition(b":")
        if (
            colon
            and not line[:1].isspace()
            and key.strip().lower().decode("ascii", "replace") in _METADATA_KEYS
        ):
            lines.append(line.rstrip(b"\r"))
    return b"\n".join(lines) + b"\n" if lines else None


def reduce_package_json(data: bytes) -> bytes | None:
    """An npm `package.json` down to `name`, `version` and `license` (compact JSON)."""
    doc = json.loads(data.decode("utf-8-sig"))
    if not isinstance(doc, dict):
        return None
    kept = {k: doc[k] for k in ("name", "version", "license") if isinstance(doc.get(k), str)}
    if "name" not in kept or "version" not in kept:
        return None
    text: str = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return text.encode()


_POM_PROPERTIES = re.compile(r"META-INF/maven/[^/]+/[^/]+/pom\.properties", re.S)
_POM_MAX = 64 * KiB
_NESTED_DEPTH = 2
_NESTED_BUDGET = 4 * JAR_MAX
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    EOFError,
    OSError,
    ValueError,
    KeyError,
)


def pom_properties(jar: bytes) -> dict[str, bytes]:
    """The Maven `pom.properties` files of a jar (war, ear) and of the jars nested in it (two
    levels, as Spring Boot's `BOOT-INF/lib/` and a war's `WEB-INF/lib/`): path in the archive
    (nested ones as `outer.jar!/inner/path`) -> content. Works on what `reduce_jar` keeps too."""
    found: dict[str, bytes] = {}
    budget = [_NESTED_BUDGET]

    def walk(data: bytes, prefix: str, depth: int) -> None:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except _ZIP_ERRORS:
            return
        with archive:
            for info in archive.infolist():
                name = info.filename
                inner = name.rpartition("!/")[2]
                try:
                    if _POM_PROPERTIES.fullmatch(inner) and info.file_size <= _POM_MAX:
                        found[prefix + name] = archive.read(info)
                    elif (
                        depth < _NESTED_DEPTH
                        and jar_path(name)
                        and info.file_size <= min(JAR_MAX, budget[0])
                    ):
                        budget[0] -= info.file_size
                        walk(archive.read(info), f"{prefix}{name}!/", depth + 1)
                except _ZIP_ERRORS:
                    continue

    walk(jar, "", 0)
    return found


def reduce_jar(data: bytes) -> bytes | None:
    """A jar down to a stored zip of its `pom_properties` (same paths), or None without any."""
    found = pom_properties(data)
    if not found:
        return None
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(found):
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), found[name])
    kept: bytes = out.getvalue()
    return kept


GO_BUILDINFO_MAGIC = b"\xff Go buildinf:"
_GO_ALIGN = 16
_GO_HEADER = 32
_GO_FLAG_INLINE = 0x2  # Go 1.18+: the version and module strings follow the header
_GO_STRING_MAX = GO_INFO_MAX // 2 - 64
_MORE, _BAD = -1, -2
_MODINFO_SENTINEL = 16


def _uvarint(buf: bytes | bytearray, i: int) -> tuple[int, int]:
    """(value, index after it); (-1, _) when the buffer ends inside it, (-2, _) overlong."""
    value, shift = 0, 0
    for k in range(i, min(i + 10, len(buf))):
        byte = buf[k]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, k + 1
        shift += 7
    return (_MORE if len(buf) < i + 10 else _BAD), i


def _buildinfo_end(buf: bytes | bytearray, i: int) -> int:
    """At a build-info magic at `buf[i]`: where the blob (header and its two strings) ends,
    `_MORE` if the buffer stops first, `_BAD` if it is no Go 1.18+ build info."""
    if len(buf) < i + _GO_HEADER:
        return _MORE
    if buf[i + 14] not in (4, 8) or not buf[i + 15] & _GO_FLAG_INLINE:
        return _BAD  # before Go 1.18 the header held pointers: not supported
    j = i + _GO_HEADER
    for _ in range(2):
        length, j = _uvarint(buf, j)
        if length < 0:
            return length
        if length > _GO_STRING_MAX:
            return _BAD
        j += length
        if j > len(buf):
            return _MORE
    return j


def go_build_info(data: bytes) -> tuple[str, str] | None:
    """(Go version, module info text) from a Go 1.18+ binary's build info, or from the blob
    `GoBuildInfoScanner` keeps; None when there is none. The module info text has the lines
    `path`, `mod`, `dep`, `=>` and `build` that `go version -m` prints."""
    at = 0
    while True:
        i = data.find(GO_BUILDINFO_MAGIC, at)
        if i < 0:
            return None
        at = i + 1
        if i % _GO_ALIGN:
            continue
        end = _buildinfo_end(data, i)
        if end < 0:
            continue
        j = i + _GO_HEADER
        strings: list[bytes] = []
        for _ in range(2):
            length, j = _uvarint(data, j)
            strings.append(data[j : j + length])
            j += length
        version, mod = strings
        if len(mod) >= 2 * _MODINFO_SENTINEL + 1 and mod[-_MODINFO_SENTINEL - 1] == 0x0A:
            mod = mod[_MODINFO_SENTINEL:-_MODINFO_SENTINEL]
        else:
            mod = b""
        return version.decode("utf-8", "backslashreplace"), mod.decode("utf-8", "backslashreplace")


class GoBuildInfoScanner:
    """Finds a Go binary's build info as the file streams past: gives up after the first bytes
    unless they are ELF's, then looks for the 16-byte-aligned magic and keeps only the blob
    (header, Go version and module list: a few KiB). Holds at most about `GO_INFO_MAX` bytes,
    whatever the binary's size."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # file offset of _buf[0]
        self._elf: bool | None = None
        self._candidate: int | None = None  # index in _buf of a magic being read
        self._found: bytes | None = None

    def feed(self, data: bytes) -> bool:
        self._buf += data
        if self._elf is None:
            if len(self._buf) < 4:
                return True
            self._elf = self._buf.startswith(b"\x7fELF")
            if not self._elf:
                self._buf.clear()
                return False
        return self._search()

    def _search(self) -> bool:
        start = 0
        while True:
            if self._candidate is None:
                i = self._buf.find(GO_BUILDINFO_MAGIC, start)
                if i < 0:
                    drop = max(0, len(self._buf) - (len(GO_BUILDINFO_MAGIC) - 1))
                    del self._buf[:drop]
                    self._base += drop
                    return True
                if (self._base + i) % _GO_ALIGN:
                    start = i + 1
                    continue
                self._candidate = i
            end = _buildinfo_end(self._buf, self._candidate)
            if end == _MORE:
                del self._buf[: self._candidate]
                self._base += self._candidate
                self._candidate = 0
                return True
            if end == _BAD:
                start, self._candidate = self._candidate + 1, None
                continue
            self._found = bytes(self._buf[self._candidate : end])
            self._buf.clear()
            return False

    def result(self) -> bytes | None:
        return self._found


def inventory_want(path: str, size: int) -> bool | int | Capture:
    """`default_want`, and the package databases and metadata that `bot.images.inventory`
    reads, each under a cap of its own (read layers with `max_total=INVENTORY_MAX_TOTAL`):

    * `var/lib/dpkg/status` up to 16 MiB (a full Debian desktop's is about 3 MiB) and
      `var/lib/dpkg/status.d/*` (distroless) 1 MiB each; `lib/apk/db/installed` 8 MiB;
      `rpmdb.sqlite` 64 MiB (a UBI or Fedora base's is 5-20 MiB): kept as they are.
    * Python `METADATA` / `PKG-INFO` (1 MiB): only the name, version and license headers are
      kept; npm `node_modules/…/package.json` (1 MiB): only name, version and license.
    * `.jar` / `.war` / `.ear` up to 32 MiB: read whole, only their (and their nested jars')
      `pom.properties` are kept.
    * Go programs: any file of 256 KiB or more in a `bin` / `sbin` directory, the image root,
      `/app`, `/ko-app`, `/opt`, `/srv` or `/workspace` is scanned as it streams, whatever its
      size, and only the build info of an ELF file is kept (`GoBuildInfoScanner`).

    Memory: while a layer is read, at most `INVENTORY_MAX_TOTAL` (256 MiB) of content, the file
    being read included; in practice a few MiB per layer stay kept (the raw dpkg status or
    rpmdb, about 100 bytes per language package, a few KiB per Go program), the most during the
    read being one jar (32 MiB) or one rpmdb (64 MiB) at a time. Every layer that rewrites a
    database keeps its own copy, as `merge` keeps each version in `ever`.
    """
    if path == "var/lib/dpkg/status":
        return DPKG_STATUS_MAX
    if path.startswith("var/lib/dpkg/status.d/"):
        return False if path.endswith(".md5sums") else DPKG_STATUS_D_MAX
    if path == "lib/apk/db/installed":
        return APK_DB_MAX
    if path in RPMDB_PATHS:
        return RPMDB_MAX
    wanted = default_want(path, size)
    if wanted:
        return wanted
    if python_metadata_path(path):
        return Capture(METADATA_MAX, reduce=reduce_python_metadata)
    if node_package_path(path):
        return Capture(METADATA_MAX, reduce=reduce_package_json)
    if jar_path(path):
        return Capture(JAR_MAX, reduce=reduce_jar)
    if size >= GO_MIN_SIZE and go_binary_place(path):
        return Capture(GO_INFO_MAX, scan=GoBuildInfoScanner)
    return False


INVENTORY_WANT: Want = inventory_want
