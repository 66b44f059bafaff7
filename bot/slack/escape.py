"""The one way outside text reaches Slack mrkdwn.

Slack gives `<…>` meaning (`<!channel>`, `<@U123>`, `<https://x|label>`) and `&` starts an
entity, so these three are escaped; that is all Slack's own formatting guide asks for. Formatting
characters (`*_~` and backticks) are harmless and left alone except inside code spans, where a
backtick would end the span early.
"""

from __future__ import annotations

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def mrkdwn(text: str) -> str:
    """Escape text from outside (payloads, registries, users) for a mrkdwn field."""
    return text.translate(_ESCAPES)


def code(text: str) -> str:
    """Escaped text inside an inline code span."""
    return "`" + mrkdwn(text).replace("`", "'") + "`"


def truncate(text: str, limit: int) -> str:
    """Cut to at most `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"
