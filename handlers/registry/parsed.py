"""What a provider's parse function returns."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from bot.events import ImageDeleted, ImagePushed


@dataclass(frozen=True)
class Parsed:
    events: list[ImagePushed | ImageDeleted]
    #: Valid events the bot has nothing to do with (pulls, blob uploads, other artifact types).
    ignored: int = 0


def describe(exc: ValidationError, limit: int = 3) -> str:
    """A short, safe account of what was wrong: field paths and messages, never the input."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
