"""HTTP plumbing shared by every endpoint: JSON error bodies and access logging."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def json_errors(max_body_bytes: int) -> Middleware:
    """Every error answer is `{"error": "…"}`, and an unexpected exception never leaks a trace."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await _answer(request, handler, max_body_bytes)

    return middleware


async def _answer(request: web.Request, handler: Handler, max_body: int) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        response = json_error(413, f"body larger than the limit of {max_body} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = json_error(500, "internal error")
    log.debug(
        "%s %s -> %d in %.1f ms",
        request.method,
        request.path,
        response.status,
        (time.perf_counter() - started) * 1000,
    )
    return response


def same_secret(sent: str, expected: str) -> bool:
    """Constant-time comparison that never raises on odd characters (a 401, never a 500)."""
    return hmac.compare_digest(
        sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
