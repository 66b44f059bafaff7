"""What a provider's parse function returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.infra.validation import describe_validation as describe
from bot.model.events import ImageDeleted, ImagePushed, ScanCompleted


@dataclass(frozen=True)
class Parsed:
    events: Sequence[ImagePushed | ImageDeleted | ScanCompleted]
    #: Valid events the bot has nothing to do with (pulls, blob uploads, other artifact types).
    ignored: int = 0


__all__ = ["Parsed", "describe"]
