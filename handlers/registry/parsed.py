"""What a provider's parse function returns."""

from __future__ import annotations

from dataclasses import dataclass

from bot.events import ImageDeleted, ImagePushed
from bot.web import describe_validation as describe


@dataclass(frozen=True)
class Parsed:
    events: list[ImagePushed | ImageDeleted]
    #: Valid events the bot has nothing to do with (pulls, blob uploads, other artifact types).
    ignored: int = 0


__all__ = ["Parsed", "describe"]
