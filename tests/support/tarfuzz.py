"""Structure-aware fuzzing of the layer reader: seed layers, a mutator that knows tar, and the
contract every input is checked against. Shared by the atheris target (tests/fuzz_layers.py)
and the hypothesis property test in tests/test_layers.py.

An input is two option bytes and a layer blob (see `Options`). `seeds()` builds real layers
byte by byte: ustar with its prefix field, GNU long names and links (`L`/`K`), pax headers
(`path`, `linkpath`, `size`, `GNU.sparse.*`, a global `g`), old GNU sparse (`S` with extension
blocks), whiteouts, symlinks, hardlinks, devices, and the package databases `bot.images.inventory`
reads; each plain, gzip (one and several members) and zstd (one and several frames, skippable
frames). `mutate` decompresses a blob, changes the tar inside it
where a parser decides things (a header field with the checksum recomputed, so the change
gets past the checksum; a pax record and its length; a whole member inserted, dropped or
repeated; the end cut off) and compresses it again, the same way or another.

`exercise` is the contract: feeding the blob in chunks of the sizes the options choose, then
`close()`, may raise `LayerError` and nothing else; a reader that failed keeps failing; the
record obeys its caps and gives the same record as one whole-blob feed; and `merge`,
`Filesystem.lookup` / `read`, `os_release` and `inventory` of what was read never raise.
"""

from __future__ import annotations

import io
import random
import re
import sqlite3
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.images import layers
from bot.images.inventory import inventory
from bot.images.layers import (
    DEFAULT_WANT,
    INVENTORY_MAX_TOTAL,
    INVENTORY_WANT,
    PATH_MAX,
    EntryType,
    Filesystem,
    LayerError,
    LayerReader,
    LayerRecord,
    merge,
    normalise_path,
    os_release,
)

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

BLOCK = 512
PREFIX = 2
"""Option bytes in front of every input's blob."""


# --- tar, byte by byte ---------------------------------------------------------------------

USTAR = b"ustar\x0000"
GNU_MAGIC = b"ustar  \x00"


def octal(value: int, width: int) -> bytes:
    """`width - 1` octal digits and a NUL, or GNU base-256 when it does not fit."""
    text = b"%0*o" % (width - 1, value)
    if len(text) < width:
        return text + b"\0"
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def set_checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)


def header(
    name: bytes,
    *,
    kind: bytes = b"0",
    size: int = 0,
    mode: int = 0o644,
    link: bytes = b"",
    magic: bytes = USTAR,
    prefix: bytes = b"",
    extra: dict[int, bytes] | None = None,
) -> bytearray:
    """One 512-byte header, checksum set. `extra` writes raw bytes at offsets (GNU fields)."""
    block = bytearray(BLOCK)
    block[0:100] = name[:100].ljust(100, b"\0")
    block[100:108] = octal(mode, 8)
    block[108:116] = octal(0, 8)
    block[116:124] = octal(0, 8)
    block[124:136] = octal(size, 12)
    block[136:148] = octal(1_704_067_200, 12)
    block[156:157] = kind
    block[157:257] = link[:100].ljust(100, b"\0")
    block[257:265] = magic
    block[265:269] = b"root"
    block[297:301] = b"root"
    if prefix:
        block[345:500] = prefix[:155].ljust(155, b"\0")
    for at, raw in (extra or {}).items():
        block[at : at + len(raw)] = raw
    set_checksum(block)
    return block


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(name: bytes, data: bytes = b"", **kw: Any) -> bytes:
    kind = kw.get("kind", b"0")
    size = len(data) if kind in (b"0", b"7", b"S", b"x", b"g", b"L", b"K") else 0
    return bytes(header(name, size=kw.pop("size", size), **kw)) + padded(data)


def pax_records(records: list[tuple[bytes, bytes]]) -> bytes:
    """`<len> <key>=<value>\\n`, each length counting itself."""
    out = b""
    for key, value in records:
        body = b" " + key + b"=" + value + b"\n"
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n += 1
        out += str(n).encode() + body
    return out


def pax(records: list[tuple[bytes, bytes]], kind: bytes = b"x") -> bytes:
    return member(b"PaxHeaders/x", pax_records(records), kind=kind)


def gnu_long(kind: bytes, name: bytes) -> bytes:
    return member(b"././@LongLink", name + b"\0", kind=kind, magic=GNU_MAGIC)


def sparse_old(name: bytes, data: bytes, extension_blocks: int) -> bytes:
    """Old GNU sparse (`S`): four map slots in the header, then `extension_blocks` blocks of
    21 slots each, the last with its "more" byte clear; then the stored data."""
    slots = b"".join(octal(i * 1024, 12) + octal(16, 12) for i in range(4))
    extra = {386: slots, 482: b"\1" if extension_blocks else b"\0", 483: octal(8192, 12)}
    out = bytes(header(name, kind=b"S", size=len(data), magic=GNU_MAGIC, extra=extra))
    for n in range(extension_blocks):
        ext = bytearray(BLOCK)
        ext[0:24] = octal(4096 + n * 1024, 12) + octal(16, 12)
        ext[504] = 1 if n + 1 < extension_blocks else 0
        out += bytes(ext)
    return out + padded(data)


END = bytes(2 * BLOCK)

# --- what layers hold ------------------------------------------------------------------------

DEBIAN_OS = b'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
ALPINE_OS = b"NAME='Alpine Linux'\nID=alpine\nVERSION_ID=3.19.1 # comment\n"
DPKG_STATUS = (
    b"Package: libssl3\nStatus: install ok installed\nSource: openssl (3.0.11-1)\n"
    b"Version: 3.0.11-1~deb12u2\nDescription: x\n  more\n\n"
    b"Package: bash\nStatus: hold ok installed\nVersion: 5.2.15-2+b2\n\n"
)
APK_DB = b"P:musl\nV:1.2.4-r2\no:musl\n\nP:busybox\nV:1.36.1-r15\n\n"
PY_METADATA = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache 2.0\n\nlong"
PACKAGE_JSON = b'{"name": "express", "version": "4.18.2", "license": "MIT"}'
GO_MAGIC = b"\xff Go buildinf:"


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def go_binary() -> bytes:
    """An ELF-looking file of `GO_MIN_SIZE` with Go 1.18+ build info 16-byte aligned in it."""
    modinfo = (
        b"path\texample.com/x\nmod\texample.com/x\tv1.0.0\th1:a=\ndep\tgolang.org/x/net\tv0.7.0\n"
    )
    mod = bytes(16) + modinfo + bytes(15) + b"\n"  # the sentinels, as `go_build_info` cuts them
    blob = GO_MAGIC + bytes([8, 2]) + bytes(16)
    blob += _uvarint(8) + b"go1.21.5" + _uvarint(len(mod)) + mod
    data = bytearray(b"\x7fELF\x02\x01\x01\x00" + bytes(layers.GO_MIN_SIZE))
    data[4096 : 4096 + len(blob)] = blob
    return bytes(data)


def jar() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "META-INF/maven/org.example/lib/pom.properties",
            b"groupId=org.example\nartifactId=lib\nversion=1.2.3\n",
        )
    return out.getvalue()


def rpmdb() -> bytes:
    index, store = b"", b""
    for tag, value in ((1000, b"bash"), (1001, b"5.1.8"), (1002, b"6.el9")):
        index += struct.pack(">IIII", tag, 6, len(store), 1)
        store += value + b"\0"
    blob = struct.pack(">II", 3, len(store)) + index + store
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    db.execute("INSERT INTO Packages (blob) VALUES (?)", (blob,))
    db.commit()
    data = db.serialize()
    db.close()
    return data


def _tars() -> dict[str, bytes]:
    long_dir = b"opt/" + b"/".join([b"deeply-nested-directory"] * 6)
    ustar = b"".join(
        [
            member(b"./etc/", kind=b"5", mode=0o755),
            member(b"./etc/os-release", ALPINE_OS),
            member(b"etc/alpine-release", b"3.19.1\n"),
            member(b"usr/bin/run", b"#!/bin/sh\necho hi\n" * 40, mode=0o755),
            member(b"usr/bin/again", kind=b"1", link=b"usr/bin/run"),
            member(b"bin", kind=b"2", link=b"usr/bin"),
            member(b"id_rsa", b"-----BEGIN OPENSSH PRIVATE KEY-----\n", prefix=long_dir),
            member(b"tmp/.wh.gone"),
            member(b"srv/.wh..wh..opq"),
            member(b"dev/null", kind=b"3", mode=0o666),
            member(b"dev/sda", kind=b"4"),
            member(b"run/fifo", kind=b"6"),
            member(b"old-dir/", kind=b"\0"),
            member(b"contig", b"c" * 700, kind=b"7"),
            END,
        ]
    )
    gnu = b"".join(
        [
            gnu_long(b"L", long_dir + b"/etc/passwd"),
            member(b"././@LongLink-trunc", b"root:x:0:0::/root:/bin/sh\n", magic=GNU_MAGIC),
            gnu_long(b"K", b"/" + long_dir + b"/target"),
            gnu_long(b"L", long_dir + b"/link"),
            member(b"link", kind=b"2", magic=GNU_MAGIC),
            gnu_long(b"K", b"etc/os-release"),
            member(b"hard", kind=b"1", magic=GNU_MAGIC),
            member(b"etc/os-release", DEBIAN_OS, magic=GNU_MAGIC),
            member(b"V-label", kind=b"V", magic=GNU_MAGIC),
            END,
        ]
    )
    paxed = b"".join(
        [
            pax([(b"comment", b"global")], kind=b"g"),
            pax([(b"path", "etc/ünïcode".encode()), (b"mtime", b"1704067200.5")]),
            member(b"ignored-name", b"utf8\n"),
            pax([(b"linkpath", b"../../../" + long_dir + b"/x"), (b"path", b"etc/lnk")]),
            member(b"short", kind=b"2", link=b"short-target"),
            pax([(b"size", b"5")]),
            member(b"var/lib/dpkg/status.d/tiny", b"hello", size=0),
            pax(
                [
                    (b"GNU.sparse.major", b"1"),
                    (b"GNU.sparse.minor", b"0"),
                    (b"GNU.sparse.name", b"var/sparse.img"),
                    (b"GNU.sparse.realsize", b"1048576"),
                ]
            ),
            member(b"GNUSparseFile.0/sparse.img", b"1\n0\n16\n".ljust(BLOCK, b"\0") + b"s" * 16),
            pax(
                [
                    (b"GNU.sparse.size", b"65536"),
                    (b"GNU.sparse.numblocks", b"1"),
                    (b"GNU.sparse.offset", b"0"),
                    (b"GNU.sparse.numbytes", b"8"),
                    (b"GNU.sparse.map", b"0,8"),
                ]
            ),
            member(b"old-pax-sparse", b"sparse!!"),
            member(b"etc/.wh.os-release"),
            END,
        ]
    )
    sparse = b"".join(
        [
            sparse_old(b"var/one-ext", b"d" * 64, 1),
            sparse_old(b"var/two-ext", b"e" * 64, 2),
            sparse_old(b"var/no-ext", b"f" * 64, 0),
            member(b"after", b"ok"),
            END,
        ]
    )
    packages = b"".join(
        [
            member(b"etc/os-release", DEBIAN_OS),
            member(b"var/lib/dpkg/status", DPKG_STATUS),
            member(b"lib/apk/db/installed", APK_DB),
            member(
                b"usr/lib/python3/site-packages/requests-2.31.0.dist-info/METADATA", PY_METADATA
            ),
            member(b"app/node_modules/express/package.json", PACKAGE_JSON),
            member(b"app/lib.jar", jar()),
            member(b"var/lib/rpm/rpmdb.sqlite", rpmdb()),
            END,
        ]
    )
    links = b"".join(
        [
            gnu_long(b"K", b"/".join([b"a"] * 600)),
            member(b"etc", kind=b"2", magic=GNU_MAGIC),
            member(b"a", kind=b"2", link=b"."),
            member(b"loop1", kind=b"2", link=b"loop2"),
            member(b"loop2", kind=b"2", link=b"/loop1"),
            member(b"up", kind=b"2", link=b"../../../../.."),
            member(b"self", kind=b"1", link=b"self"),
            member(b"usr/lib/os-release", kind=b"1", link=b"up/etc/os-release"),
            END,
        ]
    )
    go = member(b"usr/local/bin/server", go_binary(), mode=0o755) + END
    return {
        "ustar": ustar,
        "gnu": gnu,
        "pax": paxed,
        "sparse": sparse,
        "packages": packages,
        "links": links,
        "go": go,
        "no-end": ustar[: -len(END)],
    }


# --- compression -----------------------------------------------------------------------------

CODECS = ("plain", "gzip", "gzip-members", "zstd", "zstd-frames", "zstd-skippable")


def _gzip(data: bytes, level: int = 6) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _splits(data: bytes, rng: random.Random, most: int) -> list[bytes]:
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(1, most)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _zstd_frame(data: bytes, rng: random.Random) -> bytes:
    c = zstd.ZstdCompressor(
        options={
            zstd.CompressionParameter.compression_level: rng.choice([1, 3]),
            zstd.CompressionParameter.checksum_flag: rng.random() < 0.5,
            zstd.CompressionParameter.content_size_flag: rng.random() < 0.7,
        }
    )
    if rng.random() < 0.3:  # streamed: no content size, maybe several blocks
        return c.compress(data) + c.flush()
    return c.compress(data, mode=zstd.ZstdCompressor.FLUSH_FRAME)


def _skippable(rng: random.Random) -> bytes:
    body = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 300])))
    return struct.pack("<II", 0x184D2A50 | rng.randrange(16), len(body)) + body


def encode(tar: bytes, codec: str, rng: random.Random) -> bytes:
    if codec == "gzip":
        return _gzip(tar, rng.choice([1, 6]))
    if codec == "gzip-members":
        return b"".join(_gzip(part, 1) for part in _splits(tar, rng, 4))
    if not codec.startswith("zstd"):
        return tar
    if codec == "zstd":
        return _zstd_frame(tar, rng)
    frames = [_zstd_frame(part, rng) for part in _splits(tar, rng, 4)]
    if codec == "zstd-skippable":
        for _ in range(rng.randint(1, 3)):
            frames.insert(rng.randrange(len(frames) + 1), _skippable(rng))
    return b"".join(frames)


def skippable_start(blob: bytes) -> bool:
    """Whether a blob starts with a zstd skippable frame (a zstd stream, as runtimes see it)."""
    return len(blob) >= 4 and int.from_bytes(blob[:4], "little") & ~0xF == 0x184D2A50


def decode(blob: bytes, most: int = 4 << 20) -> tuple[bytes, str] | None:
    """The tar inside a blob and its codec, or None when it does not decompress (whole)."""
    if blob.startswith(b"\x1f\x8b"):
        out, rest = bytearray(), blob
        try:
            while rest:
                d = zlib.decompressobj(wbits=47)
                out += d.decompress(rest, most - len(out))
                if not d.eof or d.unconsumed_tail:
                    return None
                rest = d.unused_data
        except zlib.error:
            return None
        return bytes(out), "gzip"
    if blob.startswith(b"\x28\xb5\x2f\xfd") or skippable_start(blob):
        out, rest = bytearray(), blob
        try:
            while rest:  # frame by frame, as the reader does; at most `most` bytes out
                d = zstd.ZstdDecompressor()
                out += d.decompress(rest, most + 1 - len(out))
                if not d.eof or len(out) > most:
                    return None
                rest = d.unused_data
        except zstd.ZstdError:
            return None
        return bytes(out), "zstd"
    return blob, "plain"


# --- the seeds ---------------------------------------------------------------------------------


def seeds() -> dict[str, bytes]:
    """Seed inputs (option bytes and blob): every tar, plain and in every codec there is."""
    rng = random.Random(13)
    out: dict[str, bytes] = {}
    codecs = CODECS
    for name, tar in _tars().items():
        for n, codec in enumerate(codecs):
            if name == "go" and codec == "plain":
                continue  # 260 KiB: compressed it seeds the same
            options = bytes([(n * 37) & 0xFF, (n * 11 + len(name)) & 0x0F | 0x01])
            out[f"{name}-{codec}"] = options + encode(tar, codec, rng)
    return out


# --- mutation ---------------------------------------------------------------------------------


def _number(field: bytes) -> int | None:
    if field and field[0] & 0x80:
        return None if field[0] == 0xFF else int.from_bytes(bytes([field[0] & 0x7F]) + field[1:])
    text = field.split(b"\0", 1)[0].strip(b" \0")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return None


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156])
    return stored == sum(block[:148]) + 256 + sum(block[156:])


@dataclass
class Member:
    """One tar member as found in a stream: its header offset and the end of its data."""

    start: int
    end: int
    kind: bytes
    data_at: int  # offset of the data (after any sparse extension blocks)


def members(tar: bytes) -> list[Member]:
    """The members of a tar as far as it parses (a bad header or the end stops the walk)."""
    out: list[Member] = []
    at = 0
    pax_size: int | None = None
    while at + BLOCK <= len(tar):
        block = tar[at : at + BLOCK]
        if not block.strip(b"\0") or not _checksum_ok(block):
            break
        kind = block[156:157]
        size = _number(block[124:136]) or 0
        if kind not in (b"x", b"g", b"L", b"K") and pax_size is not None:
            size, pax_size = pax_size, None
        elif kind == b"x":
            found = re.search(rb"(?:^|\n)\d+ size=(\d+)\n", tar[at + BLOCK : at + BLOCK + size])
            pax_size = int(found[1]) if found else None
        if kind in (b"1", b"2", b"3", b"4", b"5", b"6"):
            size = 0
        data_at = at + BLOCK
        if kind == b"S" and block[482]:
            while data_at + BLOCK <= len(tar):
                more = tar[data_at + 504]
                data_at += BLOCK
                if not more:
                    break
        end = data_at + size + (-size % BLOCK)
        if end > len(tar):
            break
        out.append(Member(at, end, kind, data_at))
        at = end
    return out


_TYPEFLAGS = b"0\x001234567LKxgSVDMNXA"
_NAMES = [
    b"",
    b"/",
    b".",
    b"./",
    b"..",
    b"../../../../etc/passwd",
    b"etc",
    b"etc/",
    b"etc/os-release",
    b"usr/lib/os-release",
    b"var/lib/dpkg/status",
    b"lib/apk/db/installed",
    b"var/lib/rpm/rpmdb.sqlite",
    b"usr/local/bin/server",
    b"app/x.jar",
    b"app/node_modules/a/package.json",
    b"x.dist-info/METADATA",
    b".wh..wh..opq",
    b"etc/.wh..wh..opq",
    b"etc/.wh.os-release",
    b".wh.",
    b".wh..wh.aufs",
    b"etc/./../etc//os-release",
    b"a/" * 50,
    b"\xff\xfe\x80not-utf8",
    b"x" * 100,  # no NUL: runs into the next field
    "ünï/çødé".encode(),
    b"loop1",
    b"self",
]
_NUMBERS = [0, 1, 7, 8, 100, 511, 512, 513, 1023, 1024, 4096, 65536, 1 << 20, 1 << 33, 10**15]


def _number_field(rng: random.Random, width: int, current: int | None) -> bytes:
    choice = rng.randrange(8)
    if choice == 0:
        return bytes([0xFF]) + bytes(rng.randrange(256) for _ in range(width - 1))  # negative
    if choice == 1:
        value = rng.choice(_NUMBERS)
        return bytes([0x80]) + value.to_bytes(width - 1, "big")  # base-256
    if choice == 2:
        return rng.choice([b"", b" ", b"8", b"-1", b"0x10", b"1 2", b"\x00\x00"]).ljust(
            width, b"\0"
        )
    if choice == 3 and current is not None:
        value = max(0, current + rng.choice([-513, -512, -1, 1, 511, 512, 4096]))
    else:
        value = rng.choice(_NUMBERS)
    text = b"%o" % value
    if len(text) >= width:
        text = text[-(width - 1) :]
    return text.rjust(width - 1, b"0") + rng.choice([b"\0", b" "])


def _mutate_header(tar: bytearray, m: Member, rng: random.Random) -> None:
    at = m.start
    block = tar[at : at + BLOCK]
    field = rng.choice(
        [
            "size",
            "size",
            "kind",
            "kind",
            "name",
            "link",
            "mode",
            "magic",
            "prefix",
            "sparse",
            "extended",
            "realsize",
            "raw",
        ]
    )
    if field == "size":
        block[124:136] = _number_field(rng, 12, _number(bytes(block[124:136])))
    elif field == "mode":
        block[100:108] = _number_field(rng, 8, None)
    elif field == "kind":
        block[156] = rng.choice(_TYPEFLAGS)
    elif field in ("name", "link", "prefix"):
        start, width = {"name": (0, 100), "link": (157, 100), "prefix": (345, 155)}[field]
        value = rng.choice(_NAMES)[:width]
        block[start : start + width] = value.ljust(width, b"\0")
    elif field == "magic":
        block[257:265] = rng.choice(
            [USTAR, GNU_MAGIC, b"ustar\x00\x00\x00", b"\0" * 8, b"XXXXXXXX"]
        )
    elif field == "sparse":
        slot = 386 + 24 * rng.randrange(4)
        block[slot : slot + 12] = _number_field(rng, 12, None)
        block[slot + 12 : slot + 24] = _number_field(rng, 12, None)
    elif field == "extended":
        block[482] = rng.choice([0, 1, 0xFF])
    elif field == "realsize":
        block[483:495] = _number_field(rng, 12, None)
    else:
        for _ in range(rng.randint(1, 4)):
            block[rng.randrange(BLOCK)] = rng.randrange(256)
    if rng.random() < 0.95:  # the point is to get past the checksum; now and then, do not
        set_checksum(block)
    tar[at : at + BLOCK] = block


_PAX_KEYS = [
    b"path",
    b"linkpath",
    b"size",
    b"GNU.sparse.name",
    b"GNU.sparse.size",
    b"GNU.sparse.realsize",
    b"GNU.sparse.major",
    b"GNU.sparse.minor",
    b"GNU.sparse.map",
    b"GNU.sparse.numblocks",
    b"mtime",
    b"uid",
    b"hdrcharset",
    b"SCHILY.xattr.security.capability",
    b"",
    b"=",
    b"path=",
]
_PAX_VALUES = [
    b"",
    b"0",
    b"1",
    b"-1",
    b"5",
    b"512",
    b"9" * 30,
    b"\xd9\xa3",
    b"1e3",
    b" 7",
    b"etc/os-release",
    b"a/" * 2100,
    b"/" * 5000,
    b"\xff\xfe",
    b"x\ny",
    b"=",
    b"0,8,16,8",
]


def _mutate_pax(tar: bytearray, m: Member, rng: random.Random) -> bytearray:
    size = _number(bytes(tar[m.start + 124 : m.start + 136])) or 0
    data = bytes(tar[m.data_at : m.data_at + size])
    records: list[tuple[bytes, bytes]] = []
    for line in data.split(b"\n"):
        _length, _, rest = line.partition(b" ")
        key, eq, value = rest.partition(b"=")
        if eq:
            records.append((key, value))
    op = rng.randrange(4)
    if op == 0 or not records:
        records.insert(
            rng.randrange(len(records) + 1), (rng.choice(_PAX_KEYS), rng.choice(_PAX_VALUES))
        )
    elif op == 1:
        i = rng.randrange(len(records))
        records[i] = (records[i][0], rng.choice(_PAX_VALUES))
    elif op == 2:
        del records[rng.randrange(len(records))]
    body = pax_records(records)
    if op == 3 and body:  # a record length that lies
        first, _, rest = body.partition(b" ")
        wrong = rng.choice(
            [b"0", b"1", b"99999999", b"x", str(int(first) + rng.choice([-1, 1])).encode()]
        )
        body = wrong + b" " + rest
    block = tar[m.start : m.start + BLOCK]
    block[124:136] = octal(len(body), 12)
    set_checksum(block)
    return tar[: m.start] + block + padded(body) + tar[m.end :]


def _palette(rng: random.Random) -> bytes:
    """One member (or a few that belong together) worth inserting anywhere."""
    name = rng.choice(_NAMES)
    choice = rng.randrange(10)
    if choice == 0:
        return gnu_long(b"L", name or b"x" * 5000) + member(b"short", b"data")
    if choice == 1:
        return gnu_long(b"K", rng.choice([b"/".join([b"a"] * 3000), b"../" * 1500, name])) + member(
            rng.choice([b"etc", b"usr", b"a", b"lib"]), kind=rng.choice([b"1", b"2"])
        )
    if choice == 2:
        return pax([(rng.choice(_PAX_KEYS), rng.choice(_PAX_VALUES))]) + member(name, b"pax'd")
    if choice == 3:
        return sparse_old(name or b"s", b"z" * rng.choice([0, 1, 600]), rng.choice([0, 1, 3]))
    if choice == 4:
        return member(name, kind=b"2", link=rng.choice(_NAMES))
    if choice == 5:
        return member(name, kind=b"1", link=rng.choice(_NAMES))
    if choice == 6:
        content = rng.choice([DEBIAN_OS, ALPINE_OS, DPKG_STATUS, APK_DB, PY_METADATA, PACKAGE_JSON])
        return member(name, content, mode=rng.choice([0o644, 0o755]))
    if choice == 7:
        return member(name, kind=rng.choice([b"5", b"3", b"4", b"6", b"V", b"g", b"D"]))
    if choice == 8:
        return gnu_long(rng.choice([b"L", b"K"]), name)  # with no entry after it
    return member(name, bytes(rng.randrange(256) for _ in range(rng.choice([1, 511, 512, 513]))))


def mutate_tar(tar: bytes, rng: random.Random, byte_mutator: Callable[[bytes], bytes]) -> bytes:
    """One structure-aware change to a tar stream (any bytes: a broken tar is mutated too)."""
    found = members(tar)
    buf = bytearray(tar)
    op = rng.randrange(10)
    if found and op < 4:
        _mutate_header(buf, rng.choice(found), rng)
        return bytes(buf)
    paxes = [m for m in found if m.kind in (b"x", b"g")]
    if paxes and op < 5:
        return bytes(_mutate_pax(buf, rng.choice(paxes), rng))
    bounds = [0, *(m.end for m in found)]
    if op < 7:  # insert
        at = rng.choice(bounds)
        return tar[:at] + _palette(rng) + tar[at:]
    if found and op == 7:  # drop or repeat
        m = rng.choice(found)
        piece = tar[m.start : m.end]
        if rng.random() < 0.5:
            return tar[: m.start] + tar[m.end :]
        return tar[: m.end] + piece * rng.randint(1, 3) + tar[m.end :]
    if op == 8 and tar:  # cut: at a block, inside one, or before the end blocks
        return tar[: rng.choice([rng.randrange(len(tar)), rng.choice(bounds), len(tar) - BLOCK])]
    return byte_mutator(tar)


def random_bytes_mutator(rng: random.Random) -> Callable[[bytes], bytes]:
    def flip(data: bytes) -> bytes:
        if not data:
            return bytes([rng.randrange(256)])
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)

    return flip


def mutate(
    data: bytes,
    rng: random.Random,
    max_size: int,
    byte_mutator: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """One input (option bytes and blob) to another, most often by a change to the tar inside
    the blob, compressed again the same way or (now and then) another."""
    bytes_mut = byte_mutator or random_bytes_mutator(rng)
    options, blob = bytearray(data[:PREFIX].ljust(PREFIX, b"\0")), data[PREFIX:]
    roll = rng.random()
    if roll < 0.08:
        options[rng.randrange(PREFIX)] = rng.randrange(256)
        return bytes(options) + blob
    if roll < 0.18:  # the blob as it is, bytes changed: the compressed stream itself
        return (bytes(options) + bytes_mut(blob))[:max_size]
    decoded = decode(blob)
    if decoded is None:
        return (bytes(options) + bytes_mut(blob))[:max_size]
    tar, codec = decoded
    if codec == "gzip":
        codec = rng.choice(["gzip", "gzip-members"])
    elif codec == "zstd":
        codec = rng.choice(["zstd", "zstd-frames", "zstd-skippable"])
    if rng.random() < 0.15:
        codec = rng.choice(CODECS)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        tar = mutate_tar(tar, rng, bytes_mut)
    out = encode(tar, codec, rng)
    if codec != "plain" and rng.random() < 0.05:
        out = out[: rng.randrange(len(out) + 1)]  # the compressed stream cut short
    return (bytes(options) + out)[:max_size]


# --- the contract -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """From the input's option bytes: byte 0 picks the chunk sizes (low 3 bits the largest
    chunk, the rest seeds their sequence); byte 1 bit 0 `INVENTORY_WANT` (else `DEFAULT_WANT`),
    bit 1 tight caps (so every cap is hit), bits 2-3 the media type given (none, plain, gzip,
    zstd), bit 4 the differential check against one whole-blob feed."""

    largest: int
    seed: int
    inventory: bool
    tight: bool
    media_type: str | None
    differential: bool

    @classmethod
    def parse(cls, raw: bytes) -> Options:
        a, b = (raw + bytes(PREFIX))[:PREFIX]
        media = (None, "", "+gzip", "+zstd")[(b >> 2) & 3]
        return cls(
            largest=(1, 3, 64, 511, 512, 4096, 65536, 1 << 30)[a & 7],
            seed=a >> 3,
            inventory=bool(b & 1),
            tight=bool(b & 2),
            media_type=None if media is None else "application/vnd.oci.image.layer.v1.tar" + media,
            differential=bool(b & 16),
        )

    def caps(self) -> dict[str, Any]:
        want = INVENTORY_WANT if self.inventory else DEFAULT_WANT
        if self.tight:
            return {
                "want": want,
                "max_size": 1 << 20,
                "max_file": 512,
                "max_total": 2048,
                "head_size": 64,
                "max_heads": 128,
                "max_entries": 6,
                "max_path_bytes": 200,
            }
        if self.inventory:
            return {"want": want, "max_total": INVENTORY_MAX_TOTAL}
        return {"want": want}

    def chunks(self, blob: bytes) -> list[bytes]:
        rng = random.Random(self.seed)
        out, at = [], 0
        while at < len(blob):
            n = rng.randint(1, self.largest) if self.largest < len(blob) else len(blob)
            out.append(blob[at : at + n])
            at += n
        return out


class ContractBroken(AssertionError):
    """The reader or what reads its record broke the contract (not a `LayerError`)."""


def read(options: Options, chunks: list[bytes]) -> LayerRecord | LayerError:
    """The record, or the `LayerError` the reader gave; anything else propagates."""
    reader: LayerReader | None = None
    try:
        reader = LayerReader(options.media_type, **options.caps())
        for chunk in chunks:
            reader.feed(chunk)
        reader.close()
    except LayerError as e:
        if reader is not None:  # once failed, failed for good
            for again in (lambda: reader.feed(b"more"), reader.close):
                try:
                    again()
                except LayerError:
                    continue
                raise ContractBroken("a failed LayerReader accepted more") from e
        return e
    return reader.record


def _check_record(record: LayerRecord, options: Options) -> None:
    caps = options.caps()
    max_entries = caps.get("max_entries", layers.DEFAULT_MAX_ENTRIES)
    max_path = caps.get("max_path_bytes", layers.DEFAULT_MAX_PATH_BYTES)
    if len(record.entries) + len(record.whiteouts) > max_entries:
        raise ContractBroken(f"{len(record.entries)} entries kept, cap {max_entries}")
    if sum(len(e.path) + len(e.linkname) for e in record.entries) > max_path:
        raise ContractBroken("path bytes over the cap")
    if record.head_bytes > caps.get("max_heads", layers.DEFAULT_MAX_HEADS):
        raise ContractBroken("head bytes over the cap")
    if record.captured > caps.get("max_total", layers.DEFAULT_MAX_TOTAL):
        raise ContractBroken("captured bytes over the cap")
    for e in record.entries:
        if not e.path or e.path != normalise_path(e.path):
            raise ContractBroken(f"entry path not normalised: {e.path[:80]!r}")
        if len(e.path) > PATH_MAX or len(e.linkname) > PATH_MAX:
            raise ContractBroken("a path over PATH_MAX was kept")
        if e.size < 0 or not isinstance(e.type, EntryType):
            raise ContractBroken(f"bad entry {e!r}")
        if e.head is not None and len(e.head) > caps.get("head_size", layers.DEFAULT_HEAD_SIZE):
            raise ContractBroken("head longer than head_size")


PROBES = (
    "etc/os-release",
    "usr/lib/os-release",
    "etc/passwd",
    "var/lib/dpkg/status",
    "lib/apk/db/installed",
    "etc",
    "",
    "/",
    "../../etc/os-release",
    "loop1/x",
    "a/a/a/a/etc/os-release",
)


def _base() -> LayerRecord:
    reader = LayerReader(want=INVENTORY_WANT, max_total=INVENTORY_MAX_TOTAL)
    reader.feed(
        member(b"etc/", kind=b"5")
        + member(b"etc/os-release", DEBIAN_OS)
        + member(b"var/lib/dpkg/status", DPKG_STATUS)
        + member(b"tmp/gone", b"x")
        + member(b"srv/data/file", b"y")
        + END
    )
    reader.close()
    return reader.record


BASE = _base()


def _use(fs: Filesystem, record: LayerRecord) -> None:
    probes = [*PROBES, *(e.path for e in record.entries[:8])]
    probes += [e.linkname for e in record.entries[:8] if e.linkname]
    for path in probes:
        entry = fs.lookup(path)
        content = fs.read(path)
        if content is not None and (entry is None or entry.content is not content):
            raise ContractBroken(f"read({path[:80]!r}) gave content lookup does not")
        fs.history(path)
    if fs.held < 0 or len(fs.ever) > len(list(fs.versions())):
        raise ContractBroken("ever / held")
    osr = os_release(fs)
    inventory(fs, osr)
    inventory(fs, osr, limit=3)


def exercise(data: bytes) -> None:
    """Check one input against the contract; raises (not `LayerError`) when it is broken."""
    options = Options.parse(data[:PREFIX])
    blob = data[PREFIX:]
    outcome = read(options, options.chunks(blob))
    if options.differential:
        whole = read(options, [blob] if blob else [])
        if isinstance(outcome, LayerError) != isinstance(whole, LayerError):
            raise ContractBroken(f"chunked gave {outcome!r}, one feed {whole!r}")
        if not isinstance(outcome, LayerError) and outcome != whole:
            raise ContractBroken("chunked and whole reads kept different records")
    if isinstance(outcome, LayerError):
        return
    _check_record(outcome, options)
    for stack in ([BASE, outcome], [outcome, outcome]):
        _use(merge(stack), outcome)
