"""The streaming layer reader: a layer blob's raw bytes in, in any chunks, a `LayerRecord` out.

A `LayerReader` is fed the raw (compressed) bytes of one layer blob in whatever chunks the
network delivers and hands the uncompressed tar stream to the incremental parser
(`bot.images.layers.tar`) as it comes. Decompression output is bounded per step (256 KiB per
call), so a small, highly compressed blob cannot balloon, and the uncompressed size is capped
(`max_size`).

Compression is recognised from the first bytes, as container runtimes do, whatever the media
type says: gzip (and zlib) through `zlib`, zstd through `compression.zstd` (Python
3.14's, or its backport `backports.zstd` before), and anything else is read as a plain tar.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from bot.images.layers.capture import DEFAULT_WANT
from bot.images.layers.tar import (
    DEFAULT_HEAD_SIZE,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_FILE,
    DEFAULT_MAX_HEADS,
    DEFAULT_MAX_PATH_BYTES,
    DEFAULT_MAX_TOTAL,
    GiB,
    KiB,
    LayerError,
    LayerRecord,
    TarParser,
    Want,
)

if sys.version_info >= (3, 14):
    from compression.zstd import ZstdDecompressor, ZstdError
else:
    from backports.zstd import ZstdDecompressor, ZstdError

DEFAULT_MAX_SIZE = 8 * GiB
"""Uncompressed bytes one layer may have before the reader gives up."""

_OUT_STEP = 256 * KiB  # most decompressed bytes produced by one decompression call
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE = 0x184D2A50  # the magic of a skippable frame; its low four bits are free


# --- decompression -----------------------------------------------------------------------------


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


class _Unzstd:
    """zstd frames, one after another (zstd:chunked layers have many; skippable frames may sit
    between them), with bounded output per step, as `_Gunzip` does for gzip members: one
    decompressor per frame, whose `unused_data` starts the next. A stream that stops inside a
    frame (the decompressor has started one and not reached its end) is truncated."""

    def __init__(self, out: Callable[[bytes], None]) -> None:
        self._out = out
        self._d: ZstdDecompressor | None = None  # of the frame in progress

    def feed(self, data: bytes) -> None:
        buf = data
        while True:
            if self._d is None:
                if not buf:
                    return
                self._d = ZstdDecompressor()
            try:
                piece = self._d.decompress(buf, _OUT_STEP)
            except ZstdError as e:
                raise LayerError(f"corrupt zstd data: {e}") from None
            buf = b""  # what was not used is held by the decompressor, or is `unused_data`
            if piece:
                self._out(piece)
            if self._d.eof:  # a frame (a skippable one too) ended: another may follow
                buf = self._d.unused_data
                self._d = None
                continue
            if self._d.needs_input:  # else a full step: there is more output to take
                return

    def close(self) -> None:
        if self._d is not None:
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
        if media_type is not None and not is_layer_media_type(media_type):
            raise LayerError(f"not a layer media type: {media_type!r}")
        self._max_size = max_size
        self._tar = TarParser(
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
            int.from_bytes(start[:4], "little") & ~0xF == _ZSTD_SKIPPABLE  # as runtimes
        ):
            self._compression = "zstd"
            self._codec = _Unzstd(self._tar_bytes)
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
