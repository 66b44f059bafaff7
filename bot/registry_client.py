"""An OCI distribution client that only ever talks to configured registries.

Payloads are attacker-controlled (a pusher sets `target.url` through its Host header), so every
URL is built from the configured registry's base, and redirects or token realms are followed only
to that registry's own host or its `trusted_hosts`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from bot.config import Registry
from bot.images import ImageFacts, PlatformConfig

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
MAX_PLATFORMS = 32
MAX_REDIRECTS = 3


class RegistryError(Exception):
    """Fetching failed in a way that may pass (timeout, 5xx, refused): worth retrying."""


class PermanentRegistryError(RegistryError):
    """Retrying will not help: unknown manifest, wrong digest, too large, not allowed."""


@dataclass
class _Token:
    value: str
    expires: float


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` → ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


class RegistryClient:
    """Reads manifests and config blobs; one instance per runtime, sharing one HTTP session."""

    def __init__(self) -> None:
        self._http: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._facts: dict[tuple[str, str, str | None], ImageFacts] = {}

    async def open(self) -> None:
        self._http = aiohttp.ClientSession(
            headers={"User-Agent": "crows-nest/0.1"}, auto_decompress=True, trust_env=False
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("RegistryClient used before open()")
        return self._http

    async def image_facts(
        self, registry: Registry, repository: str, reference: str, tag: str | None
    ) -> ImageFacts:
        """Manifest (every platform of an index) plus each platform's config."""
        cache_key = (registry.name, f"{repository}@{reference}", tag)
        if reference.startswith("sha256:") and cache_key in self._facts:
            return self._facts[cache_key]
        body, media_type, digest = await self._manifest(registry, repository, reference)
        doc = _json(body, "manifest")
        if media_type in INDEX_TYPES:
            platforms = await self._index_platforms(registry, repository, doc)
        elif media_type in MANIFEST_TYPES:
            platforms = [await self._platform(registry, repository, digest, doc, None)]
        else:
            raise PermanentRegistryError(f"unsupported manifest media type {media_type!r}")
        facts = ImageFacts(
            registry=registry.name,
            repository=repository,
            digest=digest,
            tag=tag,
            media_type=media_type,
            platforms=tuple(platforms),
        )
        if len(self._facts) > 2048:
            self._facts.clear()
        self._facts[(registry.name, f"{repository}@{digest}", tag)] = facts
        return facts

    async def _index_platforms(
        self, registry: Registry, repository: str, index: dict[str, Any]
    ) -> list[PlatformConfig]:
        children = [
            m
            for m in index.get("manifests", [])
            if isinstance(m, dict) and m.get("mediaType") in MANIFEST_TYPES and not _attestation(m)
        ][:MAX_PLATFORMS]
        if not children:
            raise PermanentRegistryError("index lists no image manifests")
        results = []
        for child in children:
            digest = _digest(child.get("digest"))
            body, _media, _ = await self._manifest(registry, repository, digest)
            results.append(
                await self._platform(
                    registry, repository, digest, _json(body, "manifest"), child.get("platform")
                )
            )
        return results

    async def _platform(
        self,
        registry: Registry,
        repository: str,
        manifest_digest: str,
        manifest: dict[str, Any],
        platform: Any,
    ) -> PlatformConfig:
        config_desc = manifest.get("config")
        if not isinstance(config_desc, dict):
            raise PermanentRegistryError("manifest has no config descriptor")
        blob = await self.blob(registry, repository, _digest(config_desc.get("digest")))
        config = _json(blob, "image config")
        return _platform_config(config, manifest_digest, platform)

    async def _manifest(
        self, registry: Registry, repository: str, reference: str
    ) -> tuple[bytes, str, str]:
        path = f"/v2/{repository}/manifests/{reference}"
        body, headers = await self._get(registry, repository, path, {"Accept": ACCEPT})
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and actual != reference:
            raise PermanentRegistryError(
                f"manifest digest mismatch: asked {reference}, got {actual}"
            )
        media_type = headers.get("Content-Type", "").split(";")[0].strip()
        if not media_type or media_type == "application/json":
            media_type = str(_json(body, "manifest").get("mediaType", ""))
        return body, media_type, actual

    async def blob(self, registry: Registry, repository: str, digest: str) -> bytes:
        body, _ = await self._get(registry, repository, f"/v2/{repository}/blobs/{digest}", {})
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if actual != digest:
            raise PermanentRegistryError(f"blob digest mismatch: asked {digest}, got {actual}")
        return body

    async def _get(
        self, registry: Registry, repository: str, path: str, headers: Mapping[str, str]
    ) -> tuple[bytes, Mapping[str, str]]:
        url = registry.base_url + path
        scope = f"repository:{repository}:pull"
        auth = await self._auth_header(registry, scope, None)
        for _ in range(MAX_REDIRECTS + 2):
            _check_host(registry, url)
            req_headers = dict(headers)
            if auth and urlsplit(url).netloc == urlsplit(registry.base_url).netloc:
                req_headers["Authorization"] = auth
            try:
                async with self._session.get(
                    url,
                    headers=req_headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=registry.timeout),
                ) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    if resp.status == 401 and "WWW-Authenticate" in resp.headers and not auth:
                        challenge = resp.headers["WWW-Authenticate"]
                        auth = await self._auth_header(registry, scope, challenge)
                        if auth:
                            continue
                    await _raise_for_status(resp, path)
                    body = await _read_capped(resp, registry.max_blob_bytes)
                    return body, resp.headers
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                raise RegistryError(
                    f"{registry.name}: {path}: {type(exc).__name__}: {exc}".rstrip(": ")
                ) from None
        raise PermanentRegistryError(f"{registry.name}: {path}: too many redirects")

    async def _auth_header(
        self, registry: Registry, scope: str, challenge: str | None
    ) -> str | None:
        """The Authorization to send: cached bearer token, basic credentials, or a new token."""
        cached = self._tokens.get((registry.name, scope))
        if cached and cached.expires > time.monotonic():
            return f"Bearer {cached.value}"
        if challenge is None:
            return None
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            return _basic(registry)
        if scheme != "bearer" or "realm" not in params:
            return None
        token = await self._fetch_token(registry, params, scope)
        self._tokens[(registry.name, scope)] = token
        return f"Bearer {token.value}"

    async def _fetch_token(
        self, registry: Registry, params: dict[str, str], default_scope: str
    ) -> _Token:
        """Distribution token spec: GET realm?service=…&scope=…, with credentials when set."""
        realm = params["realm"]
        _check_host(registry, realm)
        query = {"service": params.get("service", ""), "scope": params.get("scope", default_scope)}
        headers = {}
        basic = _basic(registry)
        if basic:
            headers["Authorization"] = basic
        try:
            async with self._session.get(
                f"{realm}?{urlencode(query)}",
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=registry.timeout),
            ) as resp:
                if resp.status != 200:
                    raise PermanentRegistryError(
                        f"{registry.name}: token service answered {resp.status}"
                    )
                doc = _json(await _read_capped(resp, 256 * 1024), "token response")
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise RegistryError(f"{registry.name}: token service: {type(exc).__name__}") from None
        value = doc.get("token") or doc.get("access_token")
        if not isinstance(value, str) or not value:
            raise PermanentRegistryError(f"{registry.name}: token response has no token")
        expires_in = doc.get("expires_in", 60)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 60.0
        return _Token(value, time.monotonic() + max(lifetime - 10, 5))


def _basic(registry: Registry) -> str | None:
    if registry.username is None or registry.password is None:
        return None
    pair = f"{registry.username}:{registry.password.get_secret_value()}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _check_host(registry: Registry, url: str) -> None:
    parts = urlsplit(url)
    base = urlsplit(registry.base_url)
    allowed = {base.netloc, *registry.trusted_hosts}
    if parts.scheme not in ("http", "https") or parts.netloc not in allowed:
        raise PermanentRegistryError(
            f"{registry.name}: refusing to contact {parts.netloc or url!r}: "
            "not this registry's host"
        )
    if parts.scheme == "http" and base.scheme == "https":
        raise PermanentRegistryError(f"{registry.name}: refusing a downgrade to plain http")


async def _raise_for_status(resp: aiohttp.ClientResponse, path: str) -> None:
    if resp.status < 300:
        return
    detail = ""
    try:
        errors = json.loads(await _read_capped(resp, 16 * 1024)).get("errors") or []
        detail = "; ".join(str(e.get("code", "")) for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError, PermanentRegistryError):
        pass
    msg = f"{path}: HTTP {resp.status}" + (f" ({detail})" if detail else "")
    if resp.status == 429 or resp.status >= 500:
        raise RegistryError(msg)
    raise PermanentRegistryError(msg)


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read at most `limit` bytes; a larger body is refused before it fills memory."""
    if resp.content_length is not None and resp.content_length > limit:
        raise PermanentRegistryError(f"body of {resp.content_length} bytes is over {limit}")
    chunks = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise PermanentRegistryError(f"body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise PermanentRegistryError(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise PermanentRegistryError(f"{what} is not a JSON object")
    return doc


def _digest(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        raise PermanentRegistryError(f"bad or unsupported digest {value!r}")
    return value


def _attestation(descriptor: dict[str, Any]) -> bool:
    annotations = descriptor.get("annotations") or {}
    platform = descriptor.get("platform") or {}
    return (
        annotations.get("vnd.docker.reference.type") == "attestation-manifest"
        or platform.get("os") == "unknown"
    )


def _strs(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if isinstance(value, str):
        return (value,)
    return ()


def _platform_config(config: dict[str, Any], manifest_digest: str, platform: Any) -> PlatformConfig:
    inner = config.get("config") or {}
    if not isinstance(inner, dict):
        inner = {}
    plat = platform if isinstance(platform, dict) else config
    name = "/".join(
        str(p) for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p
    )
    labels = inner.get("Labels") or {}
    return PlatformConfig(
        platform=name or "unknown",
        manifest_digest=manifest_digest,
        user=str(inner.get("User") or ""),
        env=_strs(inner.get("Env")),
        entrypoint=_strs(inner.get("Entrypoint")),
        cmd=_strs(inner.get("Cmd")),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items()))
        if isinstance(labels, dict)
        else (),
    )
