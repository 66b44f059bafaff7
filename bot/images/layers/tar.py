"""The incremental tar parser, and the record of one layer it keeps.

`TarParser` is written any pieces of a layer's uncompressed tar stream and parses them as they
come: nothing but the current 512-byte header, the current pax / GNU long-name record and the
bytes it was asked to keep is held, so its memory does not follow the layer's size. What it
keeps (`LayerRecord`):

* every entry: normalised path (no leading `./` or `/`, no `.` or `..` parts), type, size, mode
  and link target;
* the layer's whiteouts, apart from the entries: `dir/.wh.name` removes `dir/name` from the
  layers below, `dir/.wh..wh..opq` empties `dir` of what the layers below put there;
* the content of regular files a `want(path, size)` predicate asks for, bounded by a per-file
  and a per-layer cap (a wanted file over a cap is listed in `skipped` instead). `want` may
  also answer with a per-path cap (an `int`) or a `Capture`, which can shrink what is kept
  (`reduce`) or read a file of any size as it streams past without holding it (`scan`);
* the first `head_size` bytes (4 KiB) of every executable regular file, bounded per layer.

`Capture`, `Scanner` and `Want` are how a policy tells the parser what to keep; they are
defined here, with the parser that honours them, so that the policies
(`bot.images.layers.capture`) depend on the parser and not the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

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
_MAX_META = 1 * MiB  # largest pax or GNU long-name record


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


def parent_path(path: str) -> str:
    """`a/b/c` -> `a/b`; `c` -> "" (the root)."""
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


class TarParser:
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
                self.whiteouts.append(Whiteout(parent_path(path), opaque=True))
            elif base != _WHITEOUT and not base.startswith(_WHITEOUT + _WHITEOUT):  # aufs
                self.whiteouts.append(Whiteout(_join(parent_path(path), base[len(_WHITEOUT) :])))
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
                    f"{_entries(count)} with a path or link name over {PATH_MAX:,} bytes "
                    "(PATH_MAX) not read"
                )
            elif cap == "entries":
                out.append(
                    f"more than {self._max_entries:,} entries per {self._scope} "
                    f"(max_entries_per_{self._scope}): {count:,} were not read"
                )
            else:
                out.append(
                    f"more than {self._max_path_bytes:,} bytes of paths per {self._scope} "
                    f"(max_path_bytes_per_{self._scope}): {_entries(count)} not read"
                )
        if self.skipped:
            shown = ", ".join(_short(p) for p in self.skipped[:3])
            shown += ", …" if len(self.skipped) > 3 else ""
            files = "1 file" if len(self.skipped) == 1 else f"{len(self.skipped):,} files"
            out.append(f"{files} too large to read whole: {shown}")
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


def _entries(count: int) -> str:
    return "1 entry" if count == 1 else f"{count:,} entries"


def _short(path: str) -> str:
    """A pushed path, as a finding quotes it: a few of them, not kilobytes each."""
    return path if len(path) <= 120 else path[:119] + "…"
