"""Saying what was wrong with outside input without repeating it.

Pydantic's own message quotes the offending value. That value came from a registry, a feed or
a caller, so it must not reach a log line or an error answer verbatim: it may hold a secret,
or text crafted to mislead whoever reads the log.
"""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation(exc: ValidationError, limit: int = 3) -> str:
    """A short, safe account of what was wrong: field paths and messages, never the input."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
