"""What the bot knows about an image once its manifest and config have been read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.images.layers import Filesystem
from bot.images.reference import InvalidReference, parse_reference
from bot.model.events import DIGEST_PATTERN, REPOSITORY_PATTERN


@dataclass(frozen=True)
class ImageRef:
    """`host[:port]/repository[:tag][@sha256:…]`, as operators type it."""

    host: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """The host is the first component, whatever it looks like (`registry/app:1` is the
        repository `app` on the host `registry`); a tag or a sha256 digest is required."""
        try:
            ref = parse_reference(text)
        except InvalidReference:
            ref = None
        if (
            ref is None
            or not ref.domain
            or not (ref.tag or ref.digest)
            or (ref.digest is not None and not re.match(DIGEST_PATTERN, ref.digest))
            or not re.match(REPOSITORY_PATTERN, ref.path)
        ):
            raise ValueError(f"not an image reference host[:port]/repo:tag or @sha256:…: {text!r}")
        return cls(ref.domain, ref.path, ref.tag, ref.digest)

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_created(text: str | None) -> datetime | None:
    """An image config's RFC 3339 `created` (Go writes nanoseconds and `Z`), or None."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip()))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True)
class PlatformConfig:
    """The parts of one platform's image config that the checks read."""

    platform: str
    manifest_digest: str
    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    created: datetime | None = None
    #: The merged layers that could be read, when layers are scanned (None: not scanned).
    filesystem: Filesystem | None = None
    #: Layers that could not be fetched or read: what is known was checked without them.
    unscanned: tuple[UnscannedLayer, ...] = ()
    #: Caps the scan hit (entries, path bytes, image bytes, time), said for a person.
    scan_limits: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnscannedLayer:
    """A layer left out of the scan: its digest, why, and whether asking again may help."""

    digest: str
    reason: str
    transient: bool = False


@dataclass(frozen=True)
class ImageFacts:
    """An image as pushed: where it lives, under which tag, and each platform's config."""

    registry: str
    repository: str
    digest: str
    tag: str | None
    media_type: str
    platforms: tuple[PlatformConfig, ...] = field(default=())

    def __post_init__(self) -> None:
        if not re.match(DIGEST_PATTERN, self.digest):
            raise ValueError(f"bad digest {self.digest!r}")

    @property
    def short_digest(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]
