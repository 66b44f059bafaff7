"""An OCI distribution client that only ever talks to configured registries.

Payloads are attacker-controlled (a pusher sets `target.url` through its Host header), so every
URL is built from the configured registry's base, and redirects or token realms are followed only
to that registry's own host or its `trusted_hosts`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import aiohttp
from cachetools import LRUCache

from bot.config import Registry, Scan
from bot.images.facts import ImageFacts, PlatformConfig, UnscannedLayer, parse_created
from bot.images.layers import (
    INVENTORY_MAX_TOTAL,
    INVENTORY_WANT,
    LayerError,
    LayerReader,
    LayerRecord,
    is_layer_media_type,
    merge,
)

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
MAX_PLATFORMS = 32
HARBOR_REPORT = "application/vnd.security.vulnerability.report; version=1.1"
SIGNATURE_TYPES = ("application/vnd.dev.cosign", "application/vnd.dev.sigstore")
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

    def __init__(self, *, scan_layers: bool = True, limits: Scan | None = None) -> None:
        self._http: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._limits = limits or Scan()
        # Sized in bytes held, half each: a few layers of many files weigh what many small
        # images do, so neither can push memory past what the caps were set for.
        half = max(1, self._limits.cache_bytes // 2)
        self._facts: LRUCache[tuple[str, str, str], ImageFacts] = LRUCache(half, _facts_size)
        self._layers: LRUCache[str, LayerRecord] = LRUCache(half, _record_size)
        self._scan_layers = scan_layers
        #: Called with a short progress line while layers stream (the CLI shows it).
        self.progress: Callable[[str], None] | None = None

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
        cached = self._facts.get((registry.name, repository, reference))
        if cached is not None:
            return replace(cached, tag=tag)
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
        # Content-addressed: a digest is read and scanned once, whatever tags point at it. An
        # image with a layer worth asking for again is not kept, so the retry asks.
        if not any(u.transient for p in platforms for u in p.unscanned):
            _cache(self._facts, (registry.name, repository, digest), facts)
        return facts

    async def signed(self, registry: Registry, repository: str, digest: str) -> bool | None:
        """Whether a cosign signature exists: the `sha256-<hex>.sig` tag or an OCI referrer.

        None when the registry could not be asked (so no one is told an image is unsigned
        because the registry had a bad minute).
        """
        tag = digest.replace(":", "-") + ".sig"
        try:
            await self._get(
                registry, repository, f"/v2/{repository}/manifests/{tag}", {"Accept": ACCEPT}
            )
            return True
        except PermanentRegistryError:
            pass
        except RegistryError:
            return None
        try:
            body, _ = await self._get(
                registry, repository, f"/v2/{repository}/referrers/{digest}", {"Accept": OCI_INDEX}
            )
        except PermanentRegistryError:
            return False  # no referrers API, or none: unsigned as far as anyone can tell
        except RegistryError:
            return None
        manifests = _json(body, "referrers index").get("manifests") or []
        return any(
            isinstance(m, dict) and str(m.get("artifactType", "")).startswith(SIGNATURE_TYPES)
            for m in manifests
        )

    async def harbor_report(self, registry: Registry, repository: str, digest: str) -> bytes:
        """Harbor's vulnerability report for an artifact, from the configured Harbor's API.

        Harbor wants the repository inside the project URL-encoded twice when it has a slash.
        """
        project, _, name = repository.partition("/")
        encoded = quote(quote(name, safe=""), safe="")
        path = (
            f"/api/v2.0/projects/{quote(project, safe='')}/repositories/{encoded}"
            f"/artifacts/{digest}/additions/vulnerabilities"
        )
        headers = {"Accept": "application/json", "X-Accept-Vulnerabilities": HARBOR_REPORT}
        basic = _basic(registry)
        if basic:
            headers["Authorization"] = basic  # Harbor's API takes basic auth without a challenge
        body, _ = await self._get(registry, repository, path, headers)
        return body

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
        found = _platform_config(config, manifest_digest, platform)
        if not self._scan_layers:
            return found
        return await self._scan(registry, repository, manifest, found)

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
        try:
            async with self._open(registry, repository, path, headers) as resp:
                return await _read_capped(resp, registry.max_blob_bytes), resp.headers
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _transient(registry, path, exc) from None

    @asynccontextmanager
    async def _open(
        self,
        registry: Registry,
        repository: str,
        path: str,
        headers: Mapping[str, str],
        total_seconds: float | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET from the registry: its auth challenge answered, redirects followed to allowed
        hosts only, errors raised; yields the response with its body unread."""
        url = registry.base_url + path
        scope = f"repository:{repository}:pull"
        auth = await self._auth_header(registry, scope, None)
        client_timeout = (
            aiohttp.ClientTimeout(
                total=total_seconds, sock_read=registry.timeout, sock_connect=registry.timeout
            )
            if total_seconds
            else aiohttp.ClientTimeout(total=registry.timeout)
        )
        for _ in range(MAX_REDIRECTS + 2):
            _check_host(registry, url)
            req_headers = dict(headers)
            same_host = urlsplit(url).netloc == urlsplit(registry.base_url).netloc
            if not same_host:
                req_headers.pop("Authorization", None)  # credentials never leave the registry
            elif auth:
                req_headers["Authorization"] = auth
            async with self._session.get(
                url, headers=req_headers, allow_redirects=False, timeout=client_timeout
            ) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status == 401 and "WWW-Authenticate" in resp.headers and not auth:
                    auth = await self._auth_header(
                        registry, scope, resp.headers["WWW-Authenticate"]
                    )
                    if auth:
                        continue
                await _raise_for_status(resp, path)
                yield resp
                return
        raise PermanentRegistryError(f"{registry.name}: {path}: too many redirects")

    async def _scan(
        self, registry: Registry, repository: str, manifest: dict[str, Any], found: PlatformConfig
    ) -> PlatformConfig:
        """Stream every layer into a reader and merge what could be read.

        A layer that cannot be fetched or read is left out and named (`unscanned`), and the
        rest are still checked: one absent foreign layer must not hide the config's findings.
        Past `max_image_bytes` or `scan_timeout` the remaining layers are not read (a limit).
        """
        descriptors = [d for d in manifest.get("layers") or [] if isinstance(d, dict)]
        budget = _Budget(registry.max_image_bytes, time.monotonic() + registry.scan_timeout)
        room = _Room(self._limits.max_entries_per_image, self._limits.max_path_bytes_per_image)
        records: list[LayerRecord] = []
        unscanned: list[UnscannedLayer] = []
        limits: list[str] = []
        for n, desc in enumerate(descriptors):
            digest = str(desc.get("digest") or "")
            try:
                records.append(
                    room.take(await self._layer(registry, repository, desc, budget, room))
                )
            except _BudgetExceeded as exc:
                limits.append(f"{exc}: {len(descriptors) - n} of {len(descriptors)} layers")
                break
            except PermanentRegistryError as exc:
                unscanned.append(UnscannedLayer(digest[:80], _why(exc)))
            except RegistryError as exc:
                unscanned.append(UnscannedLayer(digest[:80], _why(exc), transient=True))
            except LayerError as exc:
                unscanned.append(UnscannedLayer(digest[:80], _why(exc)))
        filesystem = await asyncio.to_thread(merge, records)
        return replace(
            found,
            filesystem=filesystem,
            unscanned=tuple(unscanned),
            scan_limits=(*filesystem.limits, *limits),
        )

    async def _layer(
        self,
        registry: Registry,
        repository: str,
        desc: dict[str, Any],
        budget: _Budget,
        room: _Room,
    ) -> LayerRecord:
        """One layer, decoded and parsed in a worker thread while the next bytes arrive: the
        event loop only moves bytes, so a hostile layer cannot stall the webhooks."""
        digest = _digest(desc.get("digest"))
        cached = self._layers.get(digest)
        if cached is not None:
            return cached
        media_type = str(desc.get("mediaType") or "")
        if media_type and not is_layer_media_type(media_type):
            raise LayerError(f"layer {digest[:19]} has media type {media_type!r}")
        per_layer = self._limits.max_entries_per_layer
        entries, path_bytes, scope = room.caps(per_layer, self._limits.max_path_bytes_per_image)
        reader = LayerReader(
            media_type or None,
            want=INVENTORY_WANT,
            max_total=INVENTORY_MAX_TOTAL,
            max_entries=entries,
            max_path_bytes=path_bytes,
            scope=scope,
        )
        hasher = hashlib.sha256()

        def take(chunks: list[bytes]) -> None:
            for chunk in chunks:
                hasher.update(chunk)
                reader.feed(chunk)

        path = f"/v2/{repository}/blobs/{digest}"
        working: asyncio.Future[None] | None = None
        batch: list[bytes] = []
        batched = 0
        try:
            async with self._open(registry, repository, path, {}, budget.seconds_left()) as resp:
                read = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    budget.spend(len(chunk))
                    batch.append(chunk)
                    batched += len(chunk)
                    read += len(chunk)
                    if self.progress is not None and read % (4 << 20) < len(chunk):
                        self.progress(f"layer {digest[7:19]}: {read / 1e6:.0f} MB")
                    if batched < _BATCH and (working is None or not working.done()):
                        continue  # the thread is busy: hand it more at once, fewer hops
                    if working is not None:
                        await working
                    working = asyncio.ensure_future(asyncio.to_thread(take, batch))
                    batch, batched = [], 0
                if working is not None:
                    await working
                if batch:
                    await asyncio.to_thread(take, batch)
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _transient(registry, path, exc) from None
        finally:
            if working is not None and not working.done():
                working.add_done_callback(_discard)
        if "sha256:" + hasher.hexdigest() != digest:
            raise PermanentRegistryError(f"layer digest mismatch: asked {digest}")
        await asyncio.to_thread(reader.close)
        record = reader.record
        if scope == "layer":  # cut short by what this image had left: not for other images
            _cache(self._layers, digest, record)
        return record

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
    created = config.get("created")
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
        created=parse_created(created) if isinstance(created, str) else None,
    )


_CHUNK = 256 * 1024
_WHY_MAX = 300
_BATCH = 1024 * 1024  # most bytes waiting for the decoding thread (bounds memory too)


def _why(exc: Exception) -> str:
    """An error, short enough for a finding: its text can quote what the manifest said."""
    text = str(exc)
    return text if len(text) <= _WHY_MAX else text[: _WHY_MAX - 1] + "…"


def _discard(future: asyncio.Future[None]) -> None:
    """Consume a worker-thread result no one waits for any more (the layer was abandoned)."""
    if not future.cancelled():
        future.exception()


def _record_size(record: LayerRecord) -> int:
    return max(1, record.held)


def _facts_size(facts: ImageFacts) -> int:
    return 1024 + sum(p.filesystem.held for p in facts.platforms if p.filesystem is not None)


def _cache(cache: LRUCache[Any, Any], key: Any, value: Any) -> None:
    """Keep `value` unless it alone is bigger than the cache (cachetools raises then)."""
    if cache.getsizeof(value) <= cache.maxsize:
        cache[key] = value


class _Room:
    """What one image may still keep, in entries and path bytes, as its layers are read."""

    def __init__(self, entries: int, path_bytes: int) -> None:
        self.entries = entries
        self.path_bytes = path_bytes
        self._max = (entries, path_bytes)

    def caps(self, per_layer: int, path_bytes: int) -> tuple[int, int, str]:
        """(max entries, max path bytes, scope) for the next layer's reader."""
        if self.entries < per_layer or self.path_bytes < path_bytes:
            return max(0, self.entries), max(0, self.path_bytes), "image"
        return per_layer, path_bytes, "layer"

    def take(self, record: LayerRecord) -> LayerRecord:
        """Charge a layer to the image; a cached layer read for another image may have more
        than this one has left, and is then cut to what is left (and says so)."""
        count = len(record.entries) + len(record.whiteouts)
        path_bytes = sum(len(e.path) + len(e.linkname) for e in record.entries)
        if count <= self.entries and path_bytes <= self.path_bytes:
            self.entries -= count
            self.path_bytes -= path_bytes
            return record
        kept, used = [], 0
        for entry in record.entries[: max(0, self.entries - len(record.whiteouts))]:
            used += len(entry.path) + len(entry.linkname)
            if used > self.path_bytes:
                break
            kept.append(entry)
        dropped = len(record.entries) - len(kept)
        self.entries, self.path_bytes = 0, 0
        note = (
            f"more than {self._max[0]:,} entries or {self._max[1]:,} bytes of paths per image "
            f"(max_entries_per_image, max_path_bytes_per_image): {dropped:,} were not read"
        )
        return replace(record, entries=tuple(kept), limits=(*record.limits, note))


class _BudgetExceeded(Exception):
    pass


@dataclass
class _Budget:
    """What one image may cost to scan: bytes and wall time across all its layers."""

    bytes_left: int
    deadline: float

    def spend(self, n: int) -> None:
        self.bytes_left -= n
        if self.bytes_left < 0:
            raise _BudgetExceeded("layers larger than max_image_bytes were not read")
        if time.monotonic() > self.deadline:
            raise _BudgetExceeded("layers that took longer than scan_timeout were not read")

    def seconds_left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _BudgetExceeded("layers that took longer than scan_timeout were not read")
        return left


def _transient(registry: Registry, path: str, exc: BaseException) -> RegistryError:
    return RegistryError(f"{registry.name}: {path}: {type(exc).__name__}: {exc}".rstrip(": "))
