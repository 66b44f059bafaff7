"""The streaming layer reader, the layer merge and os-release parsing."""

from __future__ import annotations

import contextlib
import gc
import gzip
import io
import random
import sys
import tarfile
import tracemalloc
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bot.images.layers as layers
import bot.images.layers.reader as layer_reader
from bot.images.layers import (
    DEFAULT_HEAD_SIZE,
    DEFAULT_WANT,
    EntryType,
    LayerError,
    LayerReader,
    LayerRecord,
    Removal,
    Whiteout,
    merge,
    normalise_path,
    os_release,
    parse_os_release,
    read_layer,
)
from tests.support import tarfuzz
from tests.support.oci import build_layer_tar

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

LONG_DIR = "opt/" + "/".join(["deeply-nested-directory-name"] * 5)  # > 100 characters
OS_RELEASE = b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n'


@dataclass(frozen=True)
class M:
    """One tar member for `tar()`."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    mode: int = 0o644
    link: str = ""


def tar(members: Sequence[M], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.type
            info.mode = m.mode
            info.linkname = m.link
            info.mtime = 1_704_067_200
            if m.type == tarfile.REGTYPE:
                info.size = len(m.data)
                t.addfile(info, io.BytesIO(m.data))
            else:
                t.addfile(info)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def feed_in(data: bytes, sizes: Sequence[int], **kwargs: object) -> LayerRecord:
    reader = LayerReader(**kwargs)  # type: ignore[arg-type]
    at, i = 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        reader.feed(data[at : at + n])
        at += n
        i += 1
    reader.close()
    return reader.record


def _sample(fmt: int) -> bytes:
    script = b"#!/bin/sh\n" + b"echo hello\n" * 1000  # executable, longer than the head
    return tar(
        [
            M("./etc/", type=tarfile.DIRTYPE, mode=0o755),
            M("./etc/os-release", OS_RELEASE),
            M("./usr/lib/os-release", OS_RELEASE),
            M("usr/bin/run", script, mode=0o755),
            M("usr/share/big.bin", bytes(range(256)) * 200),
            M(f"{LONG_DIR}/id_rsa", b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"),
            M(f"{LONG_DIR}/link", type=tarfile.SYMTYPE, link=f"/{LONG_DIR}/target-" + "x" * 90),
            M("usr/bin/again", type=tarfile.LNKTYPE, link="usr/bin/run"),
            M("var/lib/dpkg/status", b"Package: base-files\nStatus: install ok installed\n"),
            M("tmp/.wh.gone"),
            M("srv/.wh..wh..opq"),
            M("dev/null", type=tarfile.CHRTYPE, mode=0o666),
        ],
        fmt,
    )


SAMPLES = {
    "pax": _sample(tarfile.PAX_FORMAT),
    "gnu": _sample(tarfile.GNU_FORMAT),
}
WHOLE = {name: read_layer(data) for name, data in SAMPLES.items()}


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 1500), min_size=1, max_size=40),
    sample=st.sampled_from(sorted(SAMPLES)),
    compressed=st.booleans(),
)
def test_any_chunking_gives_the_same_record(
    sizes: list[int], sample: str, compressed: bool
) -> None:
    data = SAMPLES[sample]
    record = feed_in(gz(data) if compressed else data, sizes)
    expected = WHOLE[sample]
    assert record.entries == expected.entries
    assert record.whiteouts == expected.whiteouts
    assert (record.size, record.captured, record.head_bytes) == (
        expected.size,
        expected.captured,
        expected.head_bytes,
    )
    assert record.compression == ("gzip" if compressed else "none")


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_record_contents(sample: str) -> None:
    record = WHOLE[sample]
    by_path = {e.path: e for e in record.entries}
    assert "etc" in by_path and by_path["etc"].type is EntryType.DIR
    assert by_path["etc/os-release"].content == OS_RELEASE
    run = by_path["usr/bin/run"]
    assert run.executable and run.content is None
    assert run.head is not None and len(run.head) == DEFAULT_HEAD_SIZE
    assert run.head.startswith(b"#!/bin/sh")
    assert by_path["usr/share/big.bin"].content is None
    assert by_path["usr/share/big.bin"].size == 256 * 200
    key = by_path[f"{LONG_DIR}/id_rsa"]
    assert len(key.path) > 100 and key.content is not None
    link = by_path[f"{LONG_DIR}/link"]
    assert link.type is EntryType.SYMLINK and link.linkname.endswith("x" * 90)
    assert len(link.linkname) > 100
    hard = by_path["usr/bin/again"]
    assert hard.type is EntryType.HARDLINK and hard.linkname == "usr/bin/run"
    assert by_path["dev/null"].type is EntryType.CHAR
    assert "tmp/.wh.gone" not in by_path and "tmp/gone" not in by_path
    assert record.whiteouts == (Whiteout("tmp/gone"), Whiteout("srv", opaque=True))
    assert by_path["var/lib/dpkg/status"].content is not None


def test_gnu_long_names_use_gnu_headers() -> None:
    data = SAMPLES["gnu"]
    assert b"././@LongLink" in data  # the sample really exercises `L` / `K` records
    assert b"path=" in SAMPLES["pax"]  # and the pax one `x` records


def test_pax_utf8_names_and_ustar_prefix() -> None:
    name = "srv/" + "ü" * 60 + "/.npmrc"  # non-ASCII: pax even though short enough for ustar
    ustar_long = "a" * 120 + "/b.pem"  # fits ustar's prefix + name split
    data = tar([M(name, b"x"), M(ustar_long, b"y")], tarfile.PAX_FORMAT)
    data_ustar = tar([M(ustar_long, b"y")], tarfile.USTAR_FORMAT)
    assert [e.path for e in read_layer(data).entries] == [name, ustar_long]
    assert [e.path for e in read_layer(data_ustar).entries] == [ustar_long]


def test_pax_size_overrides_the_header() -> None:
    data = tar([M("etc/os-release", OS_RELEASE)], tarfile.PAX_FORMAT)
    # Hand-made: a pax record `size=` for the next entry whose header says 0.
    pax_body = b"%d size=%d\n" % (len(b"00 size=%d\n" % len(OS_RELEASE)), len(OS_RELEASE))
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(pax_body)
    info = tarfile.TarInfo("etc/os-release")
    info.size = 0
    raw = (
        pax.tobuf(tarfile.USTAR_FORMAT)
        + pax_body.ljust(512, b"\0")
        + info.tobuf(tarfile.USTAR_FORMAT)
        + OS_RELEASE.ljust(512, b"\0")
        + b"\0" * 1024
    )
    assert read_layer(raw).entries == read_layer(data).entries


@pytest.mark.parametrize("bad", [b"-5", b"1_0", b" 7", b"x"])
def test_bad_pax_size(bad: bytes) -> None:
    record = b"size=" + bad + b"\n"
    body = b"%d " % (len(record) + 3) + record
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(body)
    raw = pax.tobuf(tarfile.USTAR_FORMAT) + body.ljust(512, b"\0")
    raw += tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024
    with pytest.raises(LayerError, match="pax"):
        read_layer(raw)


def test_plain_and_gzip_and_multi_member_gzip_agree() -> None:
    data = SAMPLES["pax"]
    half = len(data) // 1024 * 512
    multi = gz(data[:half]) + gz(data[half:])
    assert read_layer(multi).entries == read_layer(gz(data)).entries == read_layer(data).entries


def test_archive_without_end_blocks_is_accepted() -> None:
    data = build_layer_tar({"etc/os-release": OS_RELEASE})
    stripped = data.rstrip(b"\0")
    stripped += b"\0" * (-len(stripped) % 512)
    assert read_layer(stripped).entries == read_layer(data).entries


def test_media_types() -> None:
    LayerReader("application/vnd.oci.image.layer.v1.tar+gzip")
    LayerReader("application/vnd.docker.image.rootfs.diff.tar.gzip")
    LayerReader("application/vnd.oci.image.layer.v1.tar")
    with pytest.raises(LayerError, match="not a layer"):
        LayerReader("application/vnd.in-toto+json")


def test_zstd_layers_need_no_optional_package() -> None:
    """zstd comes with the bot (`compression.zstd`, or its backport before Python 3.14): a
    zstd media type is accepted and a zstd blob read, where both failed without `zstandard`."""
    reader = LayerReader("application/vnd.oci.image.layer.v1.tar+zstd")
    reader.feed(zstd.compress(SAMPLES["pax"]))
    reader.close()
    assert reader.record.compression == "zstd"
    assert reader.record.entries == WHOLE["pax"].entries


def test_zstd() -> None:
    data = SAMPLES["pax"]
    half = len(data) // 1024 * 512
    zc = zstd.ZstdCompressor()
    streamed = zc.compress(data) + zc.flush()  # no content size in the frame header
    whole = zstd.compress
    for blob in (whole(data), whole(data[:half]) + whole(data[half:]), streamed):
        assert feed_in(blob, [777]).entries == WHOLE["pax"].entries
    reader = LayerReader()
    reader.feed(streamed[: len(streamed) // 2])
    with pytest.raises(LayerError, match="truncated"):
        reader.close()
    bomb = zstd.compress(build_layer_tar({"srv/zeros": b"\0" * 20_000_000}))
    tracemalloc.start()
    try:
        feed_in(bomb, [65536])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024
    with pytest.raises(LayerError, match="bigger than"):
        feed_in(bomb, [65536], max_size=1_000_000)


def _raw_zstd_frame(payload: bytes) -> bytes:
    """A zstd frame of one raw (stored) block: magic, single-segment header with a one-byte
    content size, last-block header, the bytes."""
    assert len(payload) < 256
    block = (len(payload) << 3) | 1
    return b"\x28\xb5\x2f\xfd\x20" + bytes([len(payload)]) + block.to_bytes(3, "little") + payload


def test_zstd_frame_boundaries() -> None:
    """A zstd stream may stop between frames (a skippable one included), not inside one."""
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello"
    blob = _raw_zstd_frame(b"x" * 200) + skippable + _raw_zstd_frame(b"")
    assert len(blob) == 209 + 13 + 9
    for cut in range(len(blob) + 1):
        out: list[bytes] = []
        frames = layer_reader._Unzstd(out.append)
        for byte in blob[:cut]:
            frames.feed(bytes([byte]))
        if cut in (0, 209, 222, 231):
            frames.close()
            assert b"".join(out) == (b"x" * 200 if cut else b""), cut
        else:
            with pytest.raises(LayerError, match="truncated layer: the zstd stream ends early"):
                frames.close()
    with pytest.raises(LayerError, match="corrupt zstd data"):
        layer_reader._Unzstd(out.append).feed(_raw_zstd_frame(b"x") + b"PK\x03\x04")


def test_a_zstd_bomb_is_read_in_bounded_steps() -> None:
    """1 GiB of zeros in about 32 KB of zstd: the reader stops at `max_size` having held no
    more than a few decompression steps (256 KiB each), and a reader allowed the whole GiB
    reads it through in bounded memory too (the tar ends at its first zero block)."""
    zc = zstd.ZstdCompressor()
    zeros = bytes(16 * 1024 * 1024)
    bomb = b"".join(zc.compress(zeros) for _ in range(64)) + zc.flush()
    assert len(bomb) < 64 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(LayerError, match="bigger than"):
            feed_in(bomb, [4096], max_size=8 * 1024 * 1024)
        _, peak_stopped = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        record = feed_in(bomb, [65536], max_size=2 * 1024**3)
        _, peak_through = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record.size == 1024**3 and record.entries == ()
    assert peak_stopped < 2 * 1024 * 1024, peak_stopped
    assert peak_through < 2 * 1024 * 1024, peak_through


# --- bad input ---------------------------------------------------------------------------------


def test_bad_header_checksum() -> None:
    data = bytearray(SAMPLES["pax"])
    data[10] ^= 0x01
    with pytest.raises(LayerError, match="checksum"):
        read_layer(bytes(data))


def test_not_a_tar_at_all() -> None:
    with pytest.raises(LayerError):
        read_layer(b'{"this": "is json, not a layer"}' * 40)


def test_corrupt_gzip() -> None:
    data = bytearray(gz(SAMPLES["pax"]))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(LayerError, match=r"gzip|checksum|truncated|tar"):
        read_layer(bytes(data))


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated(compressed: bool) -> None:
    data = SAMPLES["pax"]
    blob = gz(data) if compressed else data
    cut = blob[: len(blob) * 2 // 3 + 7]
    reader = LayerReader()
    reader.feed(cut)
    with pytest.raises(LayerError, match="truncated"):
        reader.close()


def test_truncated_after_a_header() -> None:
    data = build_layer_tar({"etc/os-release": OS_RELEASE * 10})
    with pytest.raises(LayerError, match="truncated"):
        read_layer(data[: 1024 + 100])


def test_size_cap() -> None:
    data = gz(build_layer_tar({"srv/blob": b"\0" * 200_000}))
    reader = LayerReader(max_size=100_000)
    with pytest.raises(LayerError, match="bigger than 100000"):
        reader.feed(data)
    with pytest.raises(LayerError):  # a failed reader stays failed
        reader.feed(b"more")
    with pytest.raises(LayerError):
        reader.close()


def test_entries_past_the_cap_are_read_past_and_the_cap_is_named() -> None:
    data = build_layer_tar({f"f{i:02}": b"" for i in range(20)})
    record = feed_in(data, [4096], max_entries=10)
    assert [e.path for e in record.entries] == [f"f{i:02}" for i in range(10)]
    assert record.limits == (
        "more than 10 entries per layer (max_entries_per_layer): 10 were not read",
    )


def test_a_wanted_file_after_the_entry_cap_is_not_kept_but_the_cap_is_said() -> None:
    files = {f"a/f{i:02}": b"" for i in range(20)} | {"etc/os-release": OS_RELEASE}
    record = feed_in(build_layer_tar(files), [4096], max_entries=5)
    assert "etc/os-release" not in {e.path for e in record.entries}
    assert record.limits and "max_entries_per_layer" in record.limits[0]


def test_names_longer_than_path_max_are_not_kept() -> None:
    long_name = "d/" * 2100 + "x"
    data = tar(
        [
            M(long_name, b"data"),
            M("etc", type=tarfile.SYMTYPE, link="a/" * 2100),
            M("ok", b"kept"),
        ]
    )
    record = read_layer(data)
    assert [e.path for e in record.entries] == ["ok"]
    assert record.limits == (
        "2 entries with a path or link name over 4,096 bytes (PATH_MAX) not read",
    )


def test_a_single_entry_over_a_cap_is_said_in_the_singular() -> None:
    record = read_layer(tar([M("etc", type=tarfile.SYMTYPE, link="a/" * 2100), M("ok", b"")]))
    assert record.limits == (
        "1 entry with a path or link name over 4,096 bytes (PATH_MAX) not read",
    )


def test_path_bytes_cap_bounds_what_a_layer_keeps() -> None:
    data = build_layer_tar({f"dir/{'n' * 90}{i:03}": b"" for i in range(100)})
    record = feed_in(data, [4096], max_path_bytes=2000)
    assert sum(len(e.path) for e in record.entries) <= 2000
    assert "max_path_bytes_per_layer" in record.limits[0]


def test_a_layer_without_caps_hit_says_no_limit() -> None:
    assert read_layer(build_layer_tar({"etc/os-release": OS_RELEASE})).limits == ()


def test_record_only_after_close() -> None:
    reader = LayerReader()
    with pytest.raises(RuntimeError):
        reader.record  # noqa: B018


# --- what is kept ------------------------------------------------------------------------------


def test_unwanted_bodies_are_not_kept() -> None:
    five_mb = 5 * 1024 * 1024
    data = gz(
        tar(
            [
                M("srv/blob.bin", b"\0" * five_mb),  # not wanted
                M("srv/big.pem", b"-" * five_mb),  # wanted, over the per-file cap
                M("usr/bin/tool", b"\x7fELF" + b"\1" * five_mb, mode=0o755),  # executable
                M("etc/os-release", OS_RELEASE),
            ]
        )
    )
    tracemalloc.start()
    try:
        reader = LayerReader()
        view = memoryview(data)
        for at in range(0, len(view), 64 * 1024):
            reader.feed(bytes(view[at : at + 64 * 1024]))
        reader.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    record = reader.record
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while reading"
    assert record.size > 3 * five_mb
    assert record.captured == len(OS_RELEASE)
    assert record.head_bytes == DEFAULT_HEAD_SIZE
    assert record.skipped == ("srv/big.pem",)
    kept = sum(len(e.content or b"") + len(e.head or b"") for e in record.entries)
    assert kept == len(OS_RELEASE) + DEFAULT_HEAD_SIZE


def test_per_layer_total_cap() -> None:
    files = {f"home/u{i}/.npmrc": b"x" * 1000 for i in range(10)}
    record = feed_in(build_layer_tar(files), [10_000], max_total=3500)
    kept = [e.path for e in record.entries if e.content is not None]
    assert len(kept) == 3 and record.captured == 3000
    assert len(record.skipped) == 7


def test_custom_want_predicate() -> None:
    seen: list[tuple[str, int]] = []

    def want(path: str, size: int) -> bool:
        seen.append((path, size))
        return path.endswith(".txt")

    data = build_layer_tar({"a/b.txt": b"hi", "a/c.bin": b"no"})
    record = feed_in(data, [100], want=want)
    assert seen == [("a/b.txt", 2), ("a/c.bin", 2)]  # files only, not directories
    assert {e.path: e.content for e in record.entries if e.type is EntryType.FILE} == {
        "a/b.txt": b"hi",
        "a/c.bin": None,
    }


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("etc/os-release", True),
        ("usr/lib/os-release", True),
        ("lib/apk/db/installed", True),
        ("var/lib/dpkg/status", True),
        ("var/lib/dpkg/status.d/libc6", True),
        ("var/lib/dpkg/status.d/libc6.md5sums", False),
        ("root/.aws/credentials", True),
        ("home/app/.npmrc", True),
        (".npmrc", True),
        ("root/.git-credentials", True),
        ("root/.docker/config.json", True),
        ("etc/ssl/private/server.key", True),
        ("app/certs/tls.pem", True),
        ("home/dev/.ssh/id_rsa", True),
        ("home/dev/.ssh/id_ed25519", True),
        ("home/dev/.ssh/id_rsa.pub", False),
        ("opt/miner/config.json", True),
        ("usr/local/lib/python3.11/site-packages/tornado/test/test.key", False),
        ("app/node_modules/x/config.json", False),
        ("usr/bin/python3", False),
        ("etc/passwd", False),
    ],
)
def test_default_want(path: str, wanted: bool) -> None:
    assert DEFAULT_WANT(path, 100) is wanted


def test_paths_are_normalised() -> None:
    assert normalise_path("./a//b/./c/") == "a/b/c"
    assert normalise_path("/../../etc/passwd") == "etc/passwd"
    assert normalise_path("a/../b") == "b"


# --- merge -------------------------------------------------------------------------------------


def layer(files: dict[str, bytes]) -> LayerRecord:
    return read_layer(gz(build_layer_tar(files)))


def test_merge_applies_whiteouts_and_opaque_dirs() -> None:
    fs = merge(
        [
            layer({"a/x": b"1", "a/y": b"2", "b/z": b"3", "b/sub/w": b"4", "c/keep": b"5"}),
            layer({"a/.wh.x": b"", "b/.wh..wh..opq": b"", "b/new": b"6", "c/keep": b"7"}),
            layer({"a/.wh.y": b"", "a/x": b"8"}),
        ]
    )
    assert set(fs.present) == {"a", "a/x", "b", "b/new", "c", "c/keep"}
    assert fs.layer_count == 3
    assert [layer_index for layer_index, _ in fs.ever["a/x"]] == [0, 2]
    assert [v.removed for v in fs.history("a/x")] == [Removal(1, "deleted"), None]
    assert [v.removed for v in fs.history("/b/sub/w")] == [Removal(1, "deleted")]
    assert "b/sub" in fs.ever and "b/sub" not in fs.present
    assert [v.removed for v in fs.history("c/keep")] == [Removal(1, "replaced"), None]
    assert fs.read("c/keep") is None  # not a wanted file: no content kept
    assert len(list(fs.versions())) == sum(len(v) for v in fs.ever.values())


def test_whiteout_only_hides_lower_layers() -> None:
    fs = merge([layer({"a/x": b"1"}), layer({"a/.wh.x": b"", "a/x/inner": b"2"})])
    assert "a/x/inner" in fs.present
    assert fs.history("a/x")[0].removed == Removal(1, "deleted")


def test_whiteout_of_a_directory_removes_what_is_under_it() -> None:
    fs = merge([layer({"opt/tool/bin/x": b"1", "opt/other": b"2"}), layer({"opt/.wh.tool": b""})])
    assert set(fs.present) == {"opt", "opt/other"}
    assert fs.history("opt/tool/bin/x")[0].removed == Removal(1, "deleted")


def test_opaque_root() -> None:
    fs = merge([layer({"a/x": b"1"}), read_layer(tar([M(".wh..wh..opq"), M("b", b"")]))])
    assert set(fs.present) == {"b"}


def test_file_replacing_a_directory() -> None:
    lower = layer({"srv/data/file": b"1"})
    upper = read_layer(tar([M("srv/data", b"now a file")]))
    fs = merge([lower, upper])
    assert set(fs.present) == {"srv", "srv/data"}
    assert fs.present["srv/data"].type is EntryType.FILE
    assert fs.history("srv/data/file")[0].removed == Removal(1, "deleted")


def test_read_follows_symlinks_and_hardlinks() -> None:
    fs = merge(
        [
            read_layer(
                tar(
                    [
                        M("usr/lib/os-release", OS_RELEASE),
                        M("etc/os-release", type=tarfile.SYMTYPE, link="../usr/lib/os-release"),
                        M("lib", type=tarfile.SYMTYPE, link="usr/lib"),
                        M("root/.npmrc", b"token"),
                        M("home/.npmrc", type=tarfile.LNKTYPE, link="root/.npmrc"),
                        M("loop", type=tarfile.SYMTYPE, link="loop"),
                    ]
                )
            )
        ]
    )
    assert fs.read("etc/os-release") == OS_RELEASE
    assert fs.read("/lib/os-release") == OS_RELEASE
    assert fs.read("home/.npmrc") == b"token"
    assert fs.read("loop") is None
    assert fs.read("missing") is None
    assert fs.resolve("etc/../lib/os-release") == "usr/lib/os-release"


def _symlink_fs(links: dict[str, str]) -> layers.Filesystem:
    members = [M(path, type=tarfile.SYMTYPE, link=link) for path, link in links.items()]
    return merge([read_layer(tar([M("a", type=tarfile.DIRTYPE), *members]))])


def test_a_link_chain_walking_back_and_forth_is_bounded_by_the_hop_limit() -> None:
    """Each link adds 1,600 `a/..` parts: resolved, the path stays short, so only the count
    of links followed stops it (as the kernel's 40)."""
    back_and_forth = "/".join(["a", ".."] * 800)
    links = {f"l{i}": f"{back_and_forth}/l{i + 1}" for i in range(45)}
    fs = _symlink_fs(links)
    with pytest.raises(LayerError, match="too many levels"):
        fs.resolve("l0/etc/os-release")
    assert fs.read("l0/etc/os-release") is None


def test_a_path_growing_past_path_max_is_refused() -> None:
    fs = _symlink_fs({"etc": "b/" * 2040})
    assert len(fs.resolve("etc/os-release")) == 4080 + len("os-release")
    with pytest.raises(LayerError, match="longer than 4096"):
        fs.resolve("etc/" + "x" * 100)


# --- os-release --------------------------------------------------------------------------------


def test_parse_os_release() -> None:
    text = (
        "# a comment\n"
        'NAME="Debian GNU/Linux"\n'
        "VERSION_ID='12'\n"
        "ID=debian\n"
        'PRETTY_NAME="Say \\"hi\\" \\$x"\n'
        "\n"
        "not a line\n"
    )
    assert parse_os_release(text) == {
        "NAME": "Debian GNU/Linux",
        "VERSION_ID": "12",
        "ID": "debian",
        "PRETTY_NAME": 'Say "hi" $x',
    }


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"etc/os-release": OS_RELEASE}, ("alpine", "3.19.1")),
        ({"usr/lib/os-release": b'ID=ubuntu\nVERSION_ID="22.04"\n'}, ("ubuntu", "22.04")),
        ({"etc/alpine-release": b"3.12.0\n"}, ("alpine", "3.12.0")),
        ({"etc/debian_version": b"11.9\n"}, ("debian", "11.9")),
        ({"etc/debian_version": b"trixie/sid\n"}, ("debian", None)),
        ({"etc/centos-release": b"CentOS Linux release 7.9.2009 (Core)\n"}, ("centos", "7.9.2009")),
        ({"etc/hostname": b"x\n"}, None),
    ],
)
def test_os_release(files: dict[str, bytes], expected: tuple[str, str | None] | None) -> None:
    found = os_release(merge([layer(files)]))
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found["ID"], found.get("VERSION_ID")) == expected


def test_os_release_deleted_in_a_later_layer_falls_back() -> None:
    fs = merge(
        [
            layer({"etc/os-release": OS_RELEASE, "etc/alpine-release": b"3.20.0\n"}),
            layer({"etc/.wh.os-release": b""}),
        ]
    )
    found = os_release(fs)
    assert found is not None and found["VERSION_ID"] == "3.20.0"


@settings(max_examples=80, deadline=None)
@given(
    sample=st.sampled_from(sorted(SAMPLES)),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4),
    compressed=st.booleans(),
)
def test_damaged_layers_fail_only_with_layer_error(
    sample: str, flips: list[tuple[int, int]], compressed: bool
) -> None:
    data = bytearray(gz(SAMPLES[sample]) if compressed else SAMPLES[sample])
    for at, xor in flips:
        data[at % len(data)] ^= xor
    with contextlib.suppress(LayerError):
        feed_in(bytes(data), [997])


# --- found by fuzzing (tests/fuzz_layers.py) ---------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("field", ["size", "mode"])
@pytest.mark.parametrize("number", [b"-1000", b"-1", b"+17", b"0o17", b"1_0", b"17 "])
def test_tar_numbers_are_octal_digits_only(field: str, number: bytes) -> None:
    """`int(text, 8)` also takes a sign, `0o` and underscores. A size of "-1000" (-512) made
    the parser step back over the header it had just read and read it again, forever: a
    1.5 KB layer hung its worker thread. Like Go's archive/tar, only octal digits (and the
    padding spaces and NULs) are a number."""
    block = tarfuzz.header(b"loop")
    at = {"size": 124, "mode": 100}[field]
    width = {"size": 12, "mode": 8}[field]
    block[at : at + width] = number.ljust(width, b"\0")
    tarfuzz.set_checksum(block)
    data = bytes(block) + tarfuzz.END
    if number == b"17 ":  # trailing padding is fine
        assert read_layer(data).entries[0].path == "loop"
        return
    with pytest.raises(LayerError, match=f"bad {field}"):
        read_layer(data)


def test_zstd_starting_with_a_skippable_frame_is_zstd() -> None:
    """containerd and moby take a blob that starts with a zstd skippable frame for zstd;
    the reader took it for a plain tar and failed, so the layer went unscanned."""
    skippable = (0x184D2A5A).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    blob = skippable + zstd.compress(SAMPLES["pax"])
    record = feed_in(blob, [3])
    assert record.compression == "zstd"
    assert record.entries == WHOLE["pax"].entries


FUZZ_SEEDS = tarfuzz.seeds()


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.sampled_from(sorted(FUZZ_SEEDS)),
    rnd=st.randoms(use_true_random=False),
    rounds=st.integers(1, 4),
)
def test_structured_mutations_of_real_layers_fail_only_with_layer_error(
    seed: str, rnd: random.Random, rounds: int
) -> None:
    """The atheris target's contract (`tarfuzz.exercise`) on real layers (ustar, GNU long
    names, pax, old GNU sparse, whiteouts, links, package databases; plain, gzip, zstd)
    changed where the parser decides things: header fields with the checksum recomputed, pax
    records and their lengths, members inserted, dropped or repeated, the stream cut, the
    compression changed. Only `LayerError` may come out of the reader, the record keeps its
    caps and equals a whole-blob read, and merge, lookup, read and inventory never raise."""
    data = FUZZ_SEEDS[seed]
    for _ in range(rounds):
        data = tarfuzz.mutate(data, rnd, 1 << 16)
    tarfuzz.exercise(data)


@pytest.mark.parametrize("how", ["closed", "failed", "tar-failed", "abandoned"])
def test_a_zstd_reader_is_freed(how: str) -> None:
    """Found with the `zstandard` package, whose stream writer (which the reader fed) held the
    reader where the cycle collector could not see it: every reader is freed, however its
    reading ended."""
    blob = zstd.compress(SAMPLES["pax"])
    reader = LayerReader()
    if how == "failed":
        with pytest.raises(LayerError):
            reader.feed(blob[:8] + b"\xff" * 64)
    elif how == "tar-failed":  # the LayerError is raised while a frame is decompressed
        with pytest.raises(LayerError, match="checksum"):
            reader.feed(zstd.compress(b"x" * 2048))
    else:
        reader.feed(blob if how == "closed" else blob[: len(blob) // 2])
        if how == "closed":
            reader.close()
    gone = weakref.ref(reader)
    del reader
    gc.collect()
    assert gone() is None


def test_a_bad_tar_inside_zstd_leaks_nothing() -> None:
    blob = zstd.compress(b"x" * 2_000_000)  # not a tar: fails at once
    tracemalloc.start()
    try:
        for _ in range(200):  # 200 x 256 KiB = 50 MiB if each leaks its buffer
            with pytest.raises(LayerError, match="checksum"):
                LayerReader().feed(blob)
        gc.collect()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 4 * 1024 * 1024


def test_a_wanted_file_too_large_to_keep_is_named_shortly_in_the_limits() -> None:
    deep = "d/" * 200 + ".npmrc"
    record = read_layer(tar([M(deep, b"x" * 300_000)]))
    [limit] = record.limits
    assert limit.startswith("1 file too large to read whole: d/d/")
    assert limit.endswith("…") and len(limit) < 200
