"""The streaming layer reader: a layer blob's raw bytes in, in any chunks, a `LayerRecord` out.

A `LayerReader` is fed the raw (compressed) bytes of one layer blob in whatever chunks the
network delivers and hands the uncompressed tar stream to the incremental parser
(`bot.images.layers.tar`) as it comes. Decompression output is bounded per step (256 KiB per
call), so a small, highly compressed blob cannot balloon, and the uncompressed size is capped
(`max_size`).

Compression is recognised from the first bytes, as container runtimes do, whatever the media
type says: gzip (and zlib) through `zlib`, zstd through the optional `zstandard` package, and
anything else is read as a plain tar.
"""

from __future__ import annotations

import importlib
import weakref
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

DEFAULT_MAX_SIZE = 8 * GiB
"""Uncompressed bytes one layer may have before the reader gives up."""

_OUT_STEP = 256 * KiB  # most decompressed bytes produced by one decompression call
_ZSTD_IN_STEP = 4 * KiB  # compressed bytes per zstd write (at most ~128 MiB out)
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


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
