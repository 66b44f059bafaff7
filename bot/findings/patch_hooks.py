"""Patch hooks: what a Patch click triggers outside Slack (a CI job that bumps the base image).

Two kinds: a GitHub `repository_dispatch` and a generic webhook whose body is signed with
HMAC-SHA256 (`X-Crowsnest-Signature-256: sha256=<hex>`, as GitHub signs its own webhooks).
Only hooks from config are called; nothing in a payload chooses a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import aiohttp

from bot.config import PatchHook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchRequest:
    registry: str
    repository: str
    digest: str
    tag: str | None
    finding: str
    package: str | None
    fixed_version: str | None
    requested_by: str

    def payload(self) -> dict[str, Any]:
        return {
            "image": f"{self.repository}:{self.tag}" if self.tag else self.repository,
            "registry": self.registry,
            "repository": self.repository,
            "digest": self.digest,
            "finding": self.finding,
            "package": self.package,
            "fixed_versions": [self.fixed_version] if self.fixed_version else [],
            "requested_by": self.requested_by,
        }


class PatchHooks:
    def __init__(self, hooks: tuple[PatchHook, ...]) -> None:
        self._hooks = hooks
        self._http: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._http = aiohttp.ClientSession(headers={"User-Agent": "crows-nest/0.1"})

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def for_repository(self, repository: str) -> PatchHook | None:
        return next(
            (h for h in self._hooks if any(fnmatchcase(repository, p) for p in h.repositories)),
            None,
        )

    async def call(self, hook: PatchHook, request: PatchRequest) -> str:
        """Call the hook; the answer is a short line for the message and the audit log."""
        assert self._http is not None
        url, body, headers = _request(hook, request)
        try:
            async with self._http.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=hook.timeout)
            ) as resp:
                ok = 200 <= resp.status < 300
                return f"{'accepted' if ok else 'refused'} (HTTP {resp.status})"
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("patch hook %s failed: %s", url, type(exc).__name__)
            return f"failed ({type(exc).__name__})"


def _request(hook: PatchHook, request: PatchRequest) -> tuple[str, bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if hook.kind == "github":
        assert hook.token is not None
        base = str(hook.url).rstrip("/") if hook.url else "https://api.github.com"
        url = f"{base}/repos/{hook.github_repository}/dispatches"
        body = json.dumps({"event_type": hook.event_type, "client_payload": request.payload()})
        headers |= {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {hook.token.get_secret_value()}",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        return url, body.encode(), headers
    assert hook.url is not None and hook.secret is not None
    raw = json.dumps({"event": hook.event_type, **request.payload()}, sort_keys=True).encode()
    mac = hmac.new(hook.secret.get_secret_value().encode(), raw, hashlib.sha256).hexdigest()
    headers["X-Crowsnest-Signature-256"] = f"sha256={mac}"
    return str(hook.url), raw, headers
