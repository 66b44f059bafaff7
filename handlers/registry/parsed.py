"""What a provider's parse function returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.events import ImageDeleted, ImagePushed, ScanCompleted
from bot.validation import describe_validation as describe


@dataclass(frozen=True)
class Parsed:
    events: Sequence[ImagePushed | ImageDeleted | ScanCompleted]
    #: Valid events the bot has nothing to do with (pulls, blob uploads, other artifact types).
    ignored: int = 0


__all__ = ["Parsed", "describe"]
