"""Image layers read as they stream in: tar entries, whiteouts and a few small files.

A `LayerReader` is fed the raw (compressed) bytes of one layer blob in whatever chunks the
network delivers, and parses the tar stream itself, incrementally: nothing but the current tar
header, the current pax / GNU long-name record and the bytes it was asked to keep is held in
memory, and decompression output is bounded per step, so a small, highly compressed blob cannot
balloon. What it keeps (`LayerRecord`):

* every entry: normalised path (no leading `./` or `/`, no `.` or `..` parts), type, size, mode
  and link target;
* the layer's whiteouts, apart from the entries: `dir/.wh.name` removes `dir/name` from the
  layers below, `dir/.wh..wh..opq` empties `dir` of what the layers below put there;
* the content of regular files a `want(path, size)` predicate asks for, bounded by a per-file
  and a per-layer cap (a wanted file over a cap is listed in `skipped` instead). `want` may
  also answer with a per-path cap (an `int`) or a `Capture`, which can shrink what is kept
  (`reduce`) or read a file of any size as it streams past without holding it (`scan`);
* the first `head_size` bytes (4 KiB) of every executable regular file, bounded per layer.

`INVENTORY_WANT` (with `INVENTORY_MAX_TOTAL`) extends `DEFAULT_WANT` with what
`bot.images.inventory` needs: the dpkg, apk and rpm databases, Python and npm package
metadata, Maven coordinates out of jars and the build info of Go binaries.

`merge` stacks the records of an image's layers, bottom first, into a `Filesystem`: the final
view (`present`) and the history (`ever`), where a file that a later layer deleted or replaced is
still listed, as it is still in every copy of the image.

Compression is recognised from the first bytes, as container runtimes do, whatever the media
type says: gzip (and zlib) through `zlib`, zstd through the optional `zstandard` package, and
anything else is read as a plain tar.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import weakref
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal, Protocol

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_MAX_SIZE = 8 * GiB
"""Uncompressed bytes one layer may have before the reader gives up."""
DEFAULT_MAX_FILE = 256 * KiB
"""Largest file whose content is kept."""
DEFAULT_MAX_TOTAL = 8 * MiB
"""Content bytes kept per layer, over all wanted files."""
DEFAULT_HEAD_SIZE = 4 * KiB
"""Bytes kept from the start of every executable file."""
DEFAULT_MAX_HEADS = 8 * MiB
"""Executable-head bytes kept per layer."""
DEFAULT_MAX_ENTRIES = 200_000
"""Tar entries (and whiteouts) kept per layer; the rest are read past, not kept."""
DEFAULT_MAX_PATH_BYTES = 16 * MiB
"""Path and link-name bytes kept per layer; entries past it are read past, not kept."""
PATH_MAX = 4096
"""Longest path or link name kept, as Linux's PATH_MAX: longer ones cannot be opened anyway."""
ENTRY_OVERHEAD = 240
"""About what one kept `Entry` costs in memory beyond its strings (object, ints, slots)."""

_BLOCK = 512
_OUT_STEP = 256 * KiB  # most decompressed bytes produced by one decompression call
_ZSTD_IN_STEP = 4 * KiB  # compressed bytes per zstd write (at most ~128 MiB out)
_MAX_META = 1 * MiB  # largest pax or GNU long-name record
_MAX_SYMLINK_HOPS = 40
_INDEX_OVERHEAD = 100  # one `present` slot: dict entry and hash

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerError(Exception):
    """The layer cannot be read: corrupt, truncated, too big, or an unsupported format."""


class EntryType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar entry. `content` is set only for wanted files (what a `Capture`'s reducer or
    scanner made of them, for those), `head` for executables."""

    path: str
    type: EntryType
    size: int
    mode: int
    linkname: str = ""
    content: bytes | None = field(default=None, repr=False)
    head: bytes | None = field(default=None, repr=False)

    @property
    def executable(self) -> bool:
        return self.type is EntryType.FILE and bool(self.mode & 0o111)

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


@dataclass(frozen=True)
class Whiteout:
    """`opaque=False`: `path` is removed; `opaque=True`: the directory `path` ("" = the root)
    loses everything the layers below put in it."""

    path: str
    opaque: bool = False


@dataclass(frozen=True)
class LayerRecord:
    """What a `LayerReader` kept of one layer, in tar order."""

    entries: tuple[Entry, ...]
    whiteouts: tuple[Whiteout, ...]
    size: int
    """Uncompressed bytes read."""
    captured: int
    """Content bytes kept (wanted files; after any `Capture` reduced or scanned them)."""
    head_bytes: int
    """Executable-head bytes kept, beyond those of files whose whole content was kept."""
    skipped: tuple[str, ...] = ()
    """Wanted files whose content was not kept because of a cap."""
    compression: str = "none"
    limits: tuple[str, ...] = ()
    """Each cap this layer's reading hit, said for a person: what was not kept, and why."""
    held: int = 0
    """About how many bytes of memory the record holds (entries, paths, kept content)."""


class Scanner(Protocol):
    """Reads one file as it streams past, holding only what it needs (see `Capture.scan`)."""

    def feed(self, data: bytes) -> bool:
        """The file's next bytes; False once it needs no more of them."""
        ...

    def result(self) -> bytes | None:
        """What to keep as the entry's `content`; None keeps nothing."""
        ...


@dataclass(frozen=True)
class Capture:
    """A `want` answer asking for more than yes or no.

    * `Capture(n)` (or just answering `n`, an `int`): keep the whole file when it is at most
      `n` bytes, instead of the reader's `max_file` (larger or smaller).
    * `reduce`: the file is still read whole (so at most `max_size` bytes), but what is kept as
      its `content` is `reduce(content)`; None from it keeps nothing. `content` is then not the
      file's bytes but what the reducer made of them.
    * `scan`: the file is not buffered at all: its bytes go to a fresh `scan()` as they stream
      past, whatever the file's size, and `content` is the scanner's `result()`. `max_size` is
      then the most the scanner may hold.

    While such a file is read, the layer's `max_total` is charged its size (with `scan`,
    `min(size, max_size)`); once read, only what is kept. A reducer or scanner that raises keeps
    nothing for that file, and the layer is read on.
    """

    max_size: int
    reduce: Callable[[bytes], bytes | None] | None = None
    scan: Callable[[], Scanner] | None = None


Want = Callable[[str, int], bool | int | Capture]
"""Which files to keep: False (or 0) no, True under the reader's `max_file`, an `int` under
that cap instead, or a `Capture`."""


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
    parent = _parent(path)
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
        return _text(version), _text(mod)


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


# --- paths -------------------------------------------------------------------------------------


def normalise_path(path: str) -> str:
    """`./a//b/../c/` -> `a/c`: relative to the image root, `..` never above it."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


# --- tar ---------------------------------------------------------------------------------------

_TYPES: dict[bytes, EntryType] = {
    b"0": EntryType.FILE,
    b"\0": EntryType.FILE,
    b"7": EntryType.FILE,
    b"S": EntryType.FILE,  # GNU sparse: the data stored is what follows
    b"1": EntryType.HARDLINK,
    b"2": EntryType.SYMLINK,
    b"3": EntryType.CHAR,
    b"4": EntryType.BLOCK,
    b"5": EntryType.DIR,
    b"6": EntryType.FIFO,
}
_HEADER_ONLY = frozenset({b"1", b"2", b"3", b"4", b"5", b"6"})  # size field ignored, no data
_META = frozenset({b"L", b"K", b"x", b"g"})
_NOT_ENTRIES = frozenset({b"V"})  # volume labels
_OPAQUE = ".wh..wh..opq"
_WHITEOUT = ".wh."


def _number(field_: bytes, what: str) -> int:
    """An octal tar number, or GNU base-256 when the top bit of the first byte is set."""
    if field_ and field_[0] & 0x80:
        if field_[0] == 0xFF:
            raise LayerError(f"negative {what} in a tar header")
        return int.from_bytes(bytes([field_[0] & 0x7F]) + field_[1:], "big")
    text = field_.split(b"\0", 1)[0].strip(b" \0")
    if not text:
        return 0
    if text.strip(b"01234567"):  # octal digits only: int() also takes "-1", "+7", "0o7", "1_0"
        raise LayerError(f"bad {what} {text[:20]!r} in a tar header")
    try:
        return int(text, 8)
    except ValueError:
        raise LayerError(f"bad {what} {text[:20]!r} in a tar header") from None


def _check_sum(block: bytes) -> None:
    stored = _number(block[148:156], "checksum")
    blanked = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(blanked)
    if stored != unsigned and stored != unsigned - 256 * sum(b > 127 for b in blanked):
        raise LayerError("bad tar header checksum (corrupt layer, or not a tar)")


def _cstr(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _parse_pax(data: bytes) -> dict[str, str]:
    """`<len> <key>=<value>\\n` records."""
    out: dict[str, str] = {}
    i = 0
    while i < len(data):
        if not data[i:].strip(b"\0"):
            break
        space = data.find(b" ", i)
        digits = data[i:space] if space > 0 else b""
        if not digits.isdigit():
            raise LayerError("bad pax extended header")
        length = int(digits)
        end = i + length
        if length <= len(digits) + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise LayerError("bad pax extended header record length")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise LayerError("bad pax extended header record")
        out[_text(key)] = _text(value)
        i = end
    return out


class _Tar:
    """Incremental tar parser: `write` any pieces of the uncompressed stream, then `finish`."""

    def __init__(
        self,
        want: Want,
        max_file: int,
        max_total: int,
        head_size: int,
        max_heads: int,
        max_entries: int,
        max_path_bytes: int = DEFAULT_MAX_PATH_BYTES,
        scope: str = "layer",
    ) -> None:
        self._want = want
        self._max_file = max_file
        self._max_total = max_total
        self._head_size = head_size
        self._max_heads = max_heads
        self._max_entries = max_entries
        self._max_path_bytes = max_path_bytes
        self._scope = scope
        self.path_bytes = 0
        self.dropped: dict[str, int] = {}  # cap -> entries not kept because of it
        self.entries: list[Entry] = []
        self.whiteouts: list[Whiteout] = []
        self.skipped: list[str] = []
        self.captured = 0
        self.head_bytes = 0
        self.ended = False
        self._block = bytearray()
        self._sparse_ext = False  # reading old-GNU sparse extension blocks
        self._after_sparse: Callable[[], None] | None = None
        self._left = 0  # data bytes of the current member still to come
        self._pad = 0
        self._keep = 0  # of the current member's data, how many bytes to keep
        self._buf = bytearray()
        self._member: tuple[str, bytes, Entry | None, bool] | None = None
        self._capture: Capture | None = None  # how the current entry is kept, when wanted
        self._scanner: Scanner | None = None  # still reading the current entry
        self._scanned: Scanner | None = None  # done or not, the current entry's scanner
        self._reserved = 0  # of `captured`, what the current entry holds while read
        # pending extended header values, for the next real entry
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._pax: dict[str, str] = {}

    def write(self, data: memoryview) -> None:
        i, n = 0, len(data)
        while i < n and not self.ended:
            if self._left:
                take = min(self._left, n - i)
                room = self._keep - len(self._buf)
                if room > 0:
                    self._buf += data[i : i + min(take, room)]
                if self._scanner is not None:
                    self._scan(bytes(data[i : i + take]))
                i += take
                self._left -= take
                if not self._left:
                    self._end_member()
            elif self._pad:
                take = min(self._pad, n - i)
                i += take
                self._pad -= take
            else:
                take = min(_BLOCK - len(self._block), n - i)
                self._block += data[i : i + take]
                i += take
                if len(self._block) == _BLOCK:
                    block = bytes(self._block)
                    self._block.clear()
                    self._header(block)

    def finish(self) -> None:
        if self.ended:
            return
        # Like Go's archive/tar (so like the container runtimes), an archive that stops at an
        # entry boundary without the end-of-archive blocks is accepted.
        if self._block or self._left or self._pad or self._sparse_ext or self._member:
            raise LayerError("truncated layer: the tar stream stops inside an entry")
        if self._long_name is not None or self._long_link is not None or self._pax:
            raise LayerError("truncated layer: an extended header has no entry after it")

    def _header(self, block: bytes) -> None:
        if self._sparse_ext:  # old GNU sparse map continuation: 21 entries then a flag
            self._sparse_ext = block[504] != 0
            if not self._sparse_ext and self._after_sparse is not None:
                start, self._after_sparse = self._after_sparse, None
                start()
            return
        if not block.strip(b"\0"):
            self.ended = True
            return
        _check_sum(block)
        kind = block[156:157]
        size = _number(block[124:136], "size")
        if kind in _META:
            if size > _MAX_META:
                raise LayerError(f"tar extended header of {size} bytes is too big")
            self._start_member(size, ("meta", kind, None, False), keep=size)
            return
        magic = block[257:265]
        name = _cstr(block[0:100])
        if magic[:6] == b"ustar\0":  # POSIX: prefix field
            prefix = _cstr(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        path = self._pax.get("GNU.sparse.name") or self._pax.get("path") or self._long_name
        link = self._pax.get("linkpath") or self._long_link
        raw_path = path if path is not None else _text(name)
        linkname = link if link is not None else _text(_cstr(block[157:257]))
        if "size" in self._pax:
            if not self._pax["size"].isascii() or not self._pax["size"].isdigit():
                raise LayerError("bad size in a pax extended header")
            size = int(self._pax["size"])
        self._long_name = self._long_link = None
        self._pax = {}
        if kind in _HEADER_ONLY:
            size = 0
        entry_type = _TYPES.get(kind, EntryType.OTHER)
        if entry_type is EntryType.FILE and kind == b"\0" and raw_path.endswith("/"):
            entry_type = EntryType.DIR  # pre-POSIX directories
            size = 0
        mode = _number(block[100:108], "mode") & 0o7777
        if kind in _NOT_ENTRIES:
            self._start_member(size, ("skip", kind, None, False), keep=0)
            return
        path = normalise_path(raw_path)
        if kind == b"S" and block[482] != 0:  # sparse map blocks come before the data
            self._sparse_ext = True
            self._after_sparse = lambda: self._entry(path, entry_type, size, mode, linkname, kind)
            return
        self._entry(path, entry_type, size, mode, linkname, kind)

    def _entry(
        self, path: str, entry_type: EntryType, size: int, mode: int, link: str, kind: bytes
    ) -> None:
        if self._over_cap(path, link):
            self._start_member(size, ("skip", kind, None, False), keep=0)
            return
        base = path.rpartition("/")[2]
        if not path or base.startswith(_WHITEOUT):
            if base == _OPAQUE:
                self.whiteouts.append(Whiteout(_parent(path), opaque=True))
            elif base != _WHITEOUT and not base.startswith(_WHITEOUT + _WHITEOUT):  # aufs
                self.whiteouts.append(Whiteout(_join(_parent(path), base[len(_WHITEOUT) :])))
            self._start_member(size, ("skip", kind, None, False), keep=0)
            return
        if entry_type is EntryType.HARDLINK:
            link = normalise_path(link)
        entry = Entry(path, entry_type, size, mode, link)
        keep, whole = 0, False
        capture = self._capture_for(path, size) if entry_type is EntryType.FILE else None
        if capture is not None:
            hold = size if capture.scan is None else min(size, capture.max_size)
            fits = capture.scan is not None or size <= capture.max_size
            if fits and self.captured + hold <= self._max_total:
                self.captured += hold
                self._capture, self._reserved = capture, hold
                if capture.scan is None:
                    keep, whole = size, True
                else:
                    self._start_scan(capture.scan)
            else:
                self.skipped.append(path)
        if not whole and entry.executable and self._head_size:
            head = min(size, self._head_size)
            if self.head_bytes + head <= self._max_heads:
                keep = head
                self.head_bytes += head
        self._start_member(size, ("entry", kind, entry, whole), keep=keep)

    def _over_cap(self, path: str, link: str) -> bool:
        """Whether this entry is past a cap (and so read past, not kept); counts it if so."""
        cost = len(path) + len(link)
        if len(path) > PATH_MAX or len(link) > PATH_MAX:
            cap = "name"
        elif len(self.entries) + len(self.whiteouts) >= self._max_entries:
            cap = "entries"
        elif self.path_bytes + cost > self._max_path_bytes:
            cap = "path-bytes"
        else:
            self.path_bytes += cost
            return False
        self.dropped[cap] = self.dropped.get(cap, 0) + 1
        return True

    def limits(self) -> tuple[str, ...]:
        """The caps hit, for a person: which cap, its value, and what was not kept."""
        out = []
        for cap, count in self.dropped.items():
            if cap == "name":
                out.append(
                    f"{count:,} entries with a path or link name over {PATH_MAX:,} bytes "
                    "(PATH_MAX) were not read"
                )
            elif cap == "entries":
                out.append(
                    f"more than {self._max_entries:,} entries per {self._scope} "
                    f"(max_entries_per_{self._scope}): {count:,} were not read"
                )
            else:
                out.append(
                    f"more than {self._max_path_bytes:,} bytes of paths per {self._scope} "
                    f"(max_path_bytes_per_{self._scope}): {count:,} entries were not read"
                )
        if self.skipped:
            shown = ", ".join(self.skipped[:3]) + (", …" if len(self.skipped) > 3 else "")
            out.append(f"{len(self.skipped):,} files too large to read whole: {shown}")
        return tuple(out)

    def held(self) -> int:
        """About what the kept entries cost in memory (see `ENTRY_OVERHEAD`)."""
        return (
            self.path_bytes
            + self.captured
            + self.head_bytes
            + ENTRY_OVERHEAD * (len(self.entries) + len(self.whiteouts))
        )

    def _capture_for(self, path: str, size: int) -> Capture | None:
        answer = self._want(path, size)
        if isinstance(answer, Capture):
            return answer
        if isinstance(answer, int) and not isinstance(answer, bool):
            return Capture(answer) if answer > 0 else None
        return Capture(self._max_file) if answer else None

    def _start_scan(self, scan: Callable[[], Scanner]) -> None:
        try:
            self._scanner = self._scanned = scan()
        except Exception:  # a scanner's bug must not stop the layer; the file is not kept
            self._scanner = self._scanned = None

    def _scan(self, data: bytes) -> None:
        assert self._scanner is not None
        try:
            more = self._scanner.feed(data)
        except Exception:  # as above
            more, self._scanned = False, None
        if not more:
            self._scanner = None

    def _start_member(
        self, size: int, member: tuple[str, bytes, Entry | None, bool], keep: int
    ) -> None:
        self._member = member
        self._left = size
        self._pad = -size % _BLOCK
        self._keep = keep
        self._buf = bytearray()
        if not size:
            self._end_member()

    def _end_member(self) -> None:
        assert self._member is not None
        role, kind, entry, whole = self._member
        data = bytes(self._buf)
        self._member = None
        self._buf = bytearray()
        if role == "meta":
            if kind == b"L":
                self._long_name = _text(_cstr(data))
            elif kind == b"K":
                self._long_link = _text(_cstr(data))
            elif kind == b"x":
                self._pax.update(_parse_pax(data))
            # `g` (global pax header): ignored
        elif entry is not None:
            capture, scanned, reserved = self._capture, self._scanned, self._reserved
            self._capture = self._scanner = self._scanned = None
            self._reserved = 0
            content = data if whole else None
            if capture is not None:
                if capture.scan is not None:
                    content = _kept(scanned.result) if scanned is not None else None
                elif capture.reduce is not None and content is not None:
                    reduce = capture.reduce
                    content = _kept(lambda: reduce(data))
                self.captured += len(content or b"") - reserved
            head = None
            if entry.executable and self._head_size:
                head = data[: self._head_size] if (whole or data) else None
            if content is not None or head is not None:
                entry = Entry(
                    entry.path, entry.type, entry.size, entry.mode, entry.linkname, content, head
                )
            self.entries.append(entry)


def _kept(make: Callable[[], bytes | None]) -> bytes | None:
    """What a reducer or scanner gives, or None when it fails: a bug in one, or a hostile file
    it chokes on, must not stop the layer."""
    try:
        out = make()
    except Exception:
        return None
    return None if out is None else bytes(out)


# --- decompression -----------------------------------------------------------------------------


def _zstd_module() -> Any | None:
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        return None


_NO_ZSTD = "zstd layers need the zstandard package"


class _Gunzip:
    """gzip (or zlib) members, one after another, with bounded output per step."""

    def __init__(self, out: Callable[[bytes], None]) -> None:
        self._out = out
        self._d: Any = None  # zlib decompressobj of the member in progress

    def feed(self, data: bytes) -> None:
        buf = data
        while True:
            if self._d is None:
                if not buf:
                    return
                self._d = zlib.decompressobj(wbits=47)
            try:
                piece = self._d.decompress(buf, _OUT_STEP)
            except zlib.error as e:
                raise LayerError(f"corrupt gzip data: {e}") from None
            if piece:
                self._out(piece)
            if self._d.eof:
                buf = self._d.unused_data
                self._d = None  # another member may follow
                continue
            buf = self._d.unconsumed_tail
            if not buf and len(piece) < _OUT_STEP:  # a full step may have more to give
                return

    def close(self) -> None:
        if self._d is not None:
            try:
                rest = self._d.flush()
            except zlib.error as e:
                raise LayerError(f"corrupt gzip data: {e}") from None
            if rest:
                self._out(rest)
            if not self._d.eof:
                raise LayerError("truncated layer: the gzip stream ends early")


class _ZstdFrames:
    """Walks zstd frame and block headers (RFC 8878) beside the decompressor, to tell whether
    the input stopped at a frame boundary; zstandard's streaming writer does not say."""

    _MAGIC = 0xFD2FB528
    _SKIPPABLE = 0x184D2A50  # low four bits free

    def __init__(self) -> None:
        self._state = "magic"
        self._need = 4
        self._buf = bytearray()
        self._skip = 0
        self._checksum = False
        self._last = False

    @property
    def at_boundary(self) -> bool:
        return self._state == "magic" and not self._buf and not self._skip

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                i += take
                self._skip -= take
                if not self._skip:
                    self._after_body()
                continue
            take = min(self._need - len(self._buf), n - i)
            self._buf += data[i : i + take]
            i += take
            if len(self._buf) == self._need:
                field_ = int.from_bytes(self._buf, "little")
                self._buf.clear()
                self._step(field_)

    def _expect(self, state: str, need: int) -> None:
        self._state, self._need = state, need

    def _step(self, value: int) -> None:
        if self._state == "magic":
            if value == self._MAGIC:
                self._expect("descriptor", 1)
            elif value & ~0xF == self._SKIPPABLE:
                self._expect("skippable", 4)
            else:
                raise LayerError("corrupt zstd data: no frame magic where a frame should start")
        elif self._state == "skippable":
            self._expect("skipped", 0)
            self._body(value)
        elif self._state == "descriptor":
            if value & 0x08:
                raise LayerError("corrupt zstd data: reserved frame header bit set")
            single = bool(value & 0x20)
            self._checksum = bool(value & 0x04)
            rest = (0 if single else 1) + (0, 1, 2, 4)[value & 3]
            rest += (1 if single else 0, 2, 4, 8)[value >> 6]
            if rest:
                self._expect("header", rest)
            else:
                self._expect("block", 3)
        elif self._state == "header":
            self._expect("block", 3)
        elif self._state == "block":
            kind, size = (value >> 1) & 3, value >> 3
            if kind == 3:
                raise LayerError("corrupt zstd data: reserved block type")
            self._last = bool(value & 1)
            self._body(1 if kind == 1 else size)  # an RLE block stores one byte
        elif self._state == "checksum":
            self._expect("magic", 4)

    def _body(self, size: int) -> None:
        self._skip = size
        if not size:
            self._after_body()

    def _after_body(self) -> None:
        if self._state == "skipped":
            self._expect("magic", 4)
        elif not self._last:
            self._expect("block", 3)
        elif self._checksum:
            self._expect("checksum", 4)
        else:
            self._expect("magic", 4)


class _Unzstd:
    """zstd frames, one after another (zstd:chunked layers have many), with output handed on
    in bounded pieces as it is produced."""

    class _Sink:
        """Holds the reader's method weakly: zstandard's writer, which holds this sink, is
        invisible to the cycle collector, so a strong reference would leak the reader. Never
        raises into the writer either (it leaks its output buffer when the sink raises): the
        first error is kept, later output dropped, and `feed` raises it."""

        def __init__(self, out: Callable[[bytes], None]) -> None:
            self._out = weakref.WeakMethod(out)
            self.error: Exception | None = None
            self.failed = False

        def write(self, data: bytes) -> int:
            out = self._out()
            if out is not None and not self.failed:
                try:
                    out(bytes(data))
                except Exception as e:  # re-raised by `feed`
                    self.failed, self.error = True, e
            return len(data)

    def __init__(self, zstd: Any, out: Callable[[bytes], None]) -> None:
        self._zstd = zstd
        self._frames = _ZstdFrames()
        self._sink = self._Sink(out)
        self._writer = zstd.ZstdDecompressor().stream_writer(
            self._sink, write_size=_OUT_STEP, write_return_read=True, closefd=False
        )

    def feed(self, data: bytes) -> None:
        self._frames.feed(data)
        for at in range(0, len(data), _ZSTD_IN_STEP):  # small steps: stop soon after an error
            try:
                self._writer.write(data[at : at + _ZSTD_IN_STEP])
            except self._zstd.ZstdError as e:
                raise LayerError(f"corrupt zstd data: {e}") from None
            error, self._sink.error = self._sink.error, None  # its traceback holds the reader
            if error is not None:
                raise error

    def close(self) -> None:
        if not self._frames.at_boundary:
            raise LayerError("truncated layer: the zstd stream ends early")


_KNOWN_MEDIA_WORDS = ("tar",)


def is_layer_media_type(media_type: str) -> bool:
    """OCI and Docker layer media types (plain, gzip, zstd, foreign, non-distributable)."""
    return any(word in media_type for word in _KNOWN_MEDIA_WORDS)


class LayerReader:
    """Feed one layer blob's raw bytes in any chunks, then `close()`; then read `record`.

    Any `LayerError` leaves the reader failed: later calls raise again.
    """

    def __init__(
        self,
        media_type: str | None = None,
        *,
        want: Want = DEFAULT_WANT,
        max_size: int = DEFAULT_MAX_SIZE,
        max_file: int = DEFAULT_MAX_FILE,
        max_total: int = DEFAULT_MAX_TOTAL,
        head_size: int = DEFAULT_HEAD_SIZE,
        max_heads: int = DEFAULT_MAX_HEADS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_path_bytes: int = DEFAULT_MAX_PATH_BYTES,
        scope: str = "layer",
    ) -> None:
        """`max_entries` and `max_path_bytes` bound what is kept; `scope` names what they are
        per ("layer", or "image" when a caller passes what an image has left) in `limits`."""
        if media_type is not None:
            if not is_layer_media_type(media_type):
                raise LayerError(f"not a layer media type: {media_type!r}")
            if "zstd" in media_type and _zstd_module() is None:
                raise LayerError(_NO_ZSTD)
        self._max_size = max_size
        self._tar = _Tar(
            want, max_file, max_total, head_size, max_heads, max_entries, max_path_bytes, scope
        )
        self._size = 0
        self._sniff = bytearray()
        self._codec: _Gunzip | _Unzstd | None = None
        self._compression = ""
        self._failed: LayerError | None = None
        self._record: LayerRecord | None = None

    @property
    def record(self) -> LayerRecord:
        if self._record is None:
            raise RuntimeError("LayerReader.record is only there after a successful close()")
        return self._record

    def feed(self, chunk: bytes) -> None:
        self._guard()
        if not chunk:
            return
        try:
            if not self._compression:
                self._sniff += chunk
                if len(self._sniff) < len(_ZSTD_MAGIC):
                    return
                chunk, self._sniff = bytes(self._sniff), bytearray()
                self._choose(chunk)
            self._dispatch(chunk)
        except LayerError as e:
            self._failed = e
            raise

    def close(self) -> None:
        self._guard()
        try:
            if not self._compression:
                data, self._sniff = bytes(self._sniff), bytearray()
                self._choose(data)
                self._dispatch(data)
            if self._codec is not None:
                self._codec.close()
            self._tar.finish()
        except LayerError as e:
            self._failed = e
            raise
        t = self._tar
        self._record = LayerRecord(
            entries=tuple(t.entries),
            whiteouts=tuple(t.whiteouts),
            size=self._size,
            captured=t.captured,
            head_bytes=t.head_bytes,
            skipped=tuple(t.skipped),
            compression=self._compression,
            limits=t.limits(),
            held=t.held(),
        )
        self._failed = LayerError("LayerReader already closed")

    def _guard(self) -> None:
        if self._failed is not None:
            raise self._failed

    def _choose(self, start: bytes) -> None:
        if start.startswith(_GZIP_MAGIC):
            self._compression = "gzip"
            self._codec = _Gunzip(self._tar_bytes)
        elif start.startswith(_ZSTD_MAGIC) or (
            int.from_bytes(start[:4], "little") & ~0xF == _ZstdFrames._SKIPPABLE  # as runtimes
        ):
            zstd = _zstd_module()
            if zstd is None:
                raise LayerError(_NO_ZSTD)
            self._compression = "zstd"
            self._codec = _Unzstd(zstd, self._tar_bytes)
        else:
            self._compression = "none"

    def _dispatch(self, data: bytes) -> None:
        if self._codec is None:
            self._tar_bytes(data)
        else:
            self._codec.feed(data)

    def _tar_bytes(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._max_size:
            raise LayerError(f"layer is bigger than {self._max_size} bytes uncompressed")
        self._tar.write(memoryview(data))


def read_layer(
    data: bytes | Iterable[bytes],
    media_type: str | None = None,
    *,
    want: Want = DEFAULT_WANT,
    max_size: int = DEFAULT_MAX_SIZE,
    max_file: int = DEFAULT_MAX_FILE,
    max_total: int = DEFAULT_MAX_TOTAL,
) -> LayerRecord:
    """Read a whole layer at once (bytes, or an iterable of chunks)."""
    reader = LayerReader(
        media_type, want=want, max_size=max_size, max_file=max_file, max_total=max_total
    )
    for chunk in [data] if isinstance(data, bytes) else data:
        reader.feed(chunk)
    reader.close()
    return reader.record


# --- the stacked filesystem --------------------------------------------------------------------


@dataclass(frozen=True)
class Removal:
    """How a version of a path left the final view: a whiteout or an opaque directory (or
    replacing a directory it was in) `deleted` it; a later entry at the same path `replaced` it."""

    layer: int
    how: Literal["deleted", "replaced"]


@dataclass(frozen=True)
class Version:
    """One appearance of a path in one layer, and what became of it."""

    path: str
    layer: int
    entry: Entry
    removed: Removal | None

    @property
    def present(self) -> bool:
        return self.removed is None


class Filesystem:
    """The image as its layers stack up. Layer indexes are 0-based, bottom first.

    Only the final view (`present`) and the few versions that left it (`removals`) are held
    beside the layer records themselves: every version of every path is read back from the
    records, so a layer of many small files costs its entries once, not once per index.
    """

    def __init__(
        self,
        present: dict[str, Entry],
        layers: Sequence[LayerRecord] = (),
        removals: dict[tuple[int, int], Removal] | None = None,
    ) -> None:
        self.present = present
        self.layers = tuple(layers)
        self.removals = removals or {}
        """(layer, position in that layer's entries) -> how that version left the final view."""

    @property
    def layer_count(self) -> int:
        return len(self.layers)

    @property
    def limits(self) -> tuple[str, ...]:
        """Every cap the layers' reading hit (see `LayerRecord.limits`), each said once."""
        return tuple(dict.fromkeys(limit for layer in self.layers for limit in layer.limits))

    @property
    def held(self) -> int:
        """About the memory this view holds: its layers' records and the final-view index."""
        return sum(layer.held for layer in self.layers) + _INDEX_OVERHEAD * len(self.present)

    def versions(self) -> Iterator[Version]:
        """Every version of every path that was ever in the image, bottom layer first."""
        for index, layer in enumerate(self.layers):
            for position, entry in enumerate(layer.entries):
                yield Version(entry.path, index, entry, self.removals.get((index, position)))

    @cached_property
    def ever(self) -> dict[str, list[tuple[int, Entry]]]:
        """Path -> every (layer, entry) it had, bottom first; built on first use."""
        out: dict[str, list[tuple[int, Entry]]] = {}
        for version in self.versions():
            out.setdefault(version.path, []).append((version.layer, version.entry))
        return out

    def history(self, path: str) -> list[Version]:
        """Every version of `path`, bottom layer first, with what became of it."""
        path = normalise_path(path)
        return [v for v in self.versions() if v.path == path]

    def resolve(self, path: str) -> str:
        """`path` with symlinks in the final view followed (within the image root).

        As the kernel does: at most 40 links followed, and a path that grows past `PATH_MAX`
        is refused (`LayerError`). The path walked so far is kept with the length of each of
        its prefixes, so each step costs at most `PATH_MAX` and a lookup at most
        `(links + 1) * PATH_MAX` steps, whatever the link targets hold.
        """
        todo = list(reversed(path.split("/")))
        here, ends = "", [0]  # ends[i]: len(here) after the first i parts
        hops = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(ends) > 1:
                    ends.pop()
                    here = here[: ends[-1]]
                continue
            candidate = f"{here}/{part}" if here else part
            if len(candidate) > PATH_MAX:
                raise LayerError(f"path longer than {PATH_MAX} bytes resolving {path[:64]!r}")
            entry = self.present.get(candidate)
            if entry is not None and entry.type is EntryType.SYMLINK:
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise LayerError(f"too many levels of symbolic links at {path[:64]!r}")
                if entry.linkname.startswith("/"):
                    here, ends = "", [0]
                todo.extend(reversed(entry.linkname.split("/")))
                continue
            here = candidate
            ends.append(len(here))
        return here

    def lookup(self, path: str) -> Entry | None:
        """The final-view entry at `path`, through symlinks and hardlinks."""
        try:
            entry = self.present.get(self.resolve(path))
            if entry is not None and entry.type is EntryType.HARDLINK:
                entry = self.present.get(self.resolve(entry.linkname))
        except LayerError:
            return None
        return entry

    def read(self, path: str) -> bytes | None:
        """The final content of the file at `path`, if it exists and was kept."""
        entry = self.lookup(path)
        if entry is None or entry.type is not EntryType.FILE:
            return None
        return entry.content


def merge(layers: Sequence[LayerRecord]) -> Filesystem:
    """Stack layers bottom first. A layer's whiteouts act on the layers below it only."""
    present: dict[str, tuple[Entry, int, int]] = {}  # path -> (entry, layer, position)
    children: dict[str, set[str]] | None = None  # built on the first removal: most need none
    removals: dict[tuple[int, int], Removal] = {}

    def tree() -> dict[str, set[str]]:
        nonlocal children
        if children is None:
            children = {}
            for p in present:
                children.setdefault(_parent(p), set()).add(p)
        return children

    def remove(path: str, removal: Removal, keep_self: bool = False) -> None:
        """Take `path` (unless keep_self) and everything under it out of the final view."""
        below = Removal(removal.layer, "deleted")
        kids = tree()
        stack = [path]
        while stack:
            p = stack.pop()
            if not (keep_self and p == path):
                held = present.pop(p, None)
                if held is not None:
                    removals[(held[1], held[2])] = removal if p == path else below
                    if p:
                        kids.get(_parent(p), set()).discard(p)
            stack.extend(kids.pop(p, ()))

    for index, layer in enumerate(layers):
        for whiteout in layer.whiteouts:
            remove(whiteout.path, Removal(index, "deleted"), keep_self=whiteout.opaque)
        for position, entry in enumerate(layer.entries):
            held = present.get(entry.path)
            if held is not None:
                both_dirs = held[0].type is EntryType.DIR and entry.type is EntryType.DIR
                if not both_dirs:
                    remove(entry.path, Removal(index, "replaced"))
            present[entry.path] = (entry, index, position)
            if children is not None:
                children.setdefault(_parent(entry.path), set()).add(entry.path)
    return Filesystem(
        present={path: held[0] for path, held in present.items()},
        layers=layers,
        removals=removals,
    )


# --- os-release --------------------------------------------------------------------------------

_OS_RELEASE_LINE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_DQ_ESCAPE = re.compile(r"\\([\\$\"`])")
_REDHAT_RELEASE = re.compile(r"^(?P<name>.*?) release (?P<version>[0-9][0-9.]*)")


def parse_os_release(text: str) -> dict[str, str]:
    """`KEY=value` lines; values unquoted, 'single-' or "double-quoted"; `#` comments."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _OS_RELEASE_LINE.fullmatch(line.rstrip())
        if not m:
            continue
        key, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _DQ_ESCAPE.sub(r"\1", value[1:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip().strip("\"'")
        out[key] = value
    return out


def os_release(fs: Filesystem) -> dict[str, str] | None:
    """The base OS as os-release keys (`ID`, `VERSION_ID`, …), or None when it cannot be told.

    Reads `etc/os-release`, then `usr/lib/os-release`; without either, `etc/alpine-release`,
    `etc/debian_version` and `etc/redhat-release` / `etc/centos-release` give `ID` and, where
    they hold one, `VERSION_ID`.
    """
    for path in ("etc/os-release", "usr/lib/os-release"):
        data = fs.read(path)
        if data is not None:
            parsed = parse_os_release(data.decode("utf-8", "replace"))
            if parsed.get("ID"):
                return parsed
    alpine = _first_line(fs.read("etc/alpine-release"))
    if alpine:
        return {"ID": "alpine", "NAME": "Alpine Linux", "VERSION_ID": alpine}
    debian = _first_line(fs.read("etc/debian_version"))
    if debian:
        out = {"ID": "debian", "NAME": "Debian GNU/Linux"}
        if debian[:1].isdigit():
            out["VERSION_ID"] = debian
        return out
    for path in ("etc/centos-release", "etc/redhat-release"):
        m = _REDHAT_RELEASE.match(_first_line(fs.read(path)))
        if m:
            name = m["name"]
            distro = "centos" if name.lower().startswith("centos") else "rhel"
            return {"ID": distro, "NAME": name, "VERSION_ID": m["version"]}
    return None


def _first_line(data: bytes | None) -> str:
    if not data:
        return ""
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[0].strip() if lines else ""
