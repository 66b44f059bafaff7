"""List-then-watch of a cluster's Pods and workloads → `WorkloadObserved`.

One loop per resource (and per namespace when `namespaces` is set), the way client-go's
reflector does it:

1. list (paged with `limit`/`continue`), keep the list's `metadata.resourceVersion`;
2. watch from it with `allowWatchBookmarks=true` and `timeoutSeconds`, and take the
   resourceVersion of every event, BOOKMARK included, so a reconnect resumes where the last
   event left off instead of relisting;
3. when the server ends the watch (its timeout) watch again at once from the last version; on
   `410 Gone`, whether an ERROR event (what the API server sends on a watch) or an HTTP 410
   (an expired `continue` token, some proxies) list again; on any other failure wait with
   exponential backoff (jittered, capped) and reconnect.

An event is emitted only when `spec_fingerprint` of an object changed since the last one for its
uid, so status churn stays quiet; a deletion is emitted once, also when a relist (after a 410
or the periodic resync) finds an object gone. A failing `emit` raises out of the event's
handling before the resourceVersion moves past it, so the reconnect delivers it again.

The kubernetes_asyncio `Watch` helper is not used: it opens an `ApiClient` of its own per
`Watch()` (from the global default configuration), deserialises every object into a V1 model
(objects here stay the API server's camelCase dicts, which is what the fingerprint hashes),
and, without `timeout_seconds`, "retries" a 410 by reconnecting with the same expired version.
Requests go through `ApiClient.call_api(..., _preload_content=False)`, which keeps the client's
authentication (bearer token, exec plugins, client certificates) and returns the raw aiohttp
response; with `_preload_content=False` it does *not* raise for a non-2xx status, so every
response's status is checked here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from bot.cluster.observe import (
    ClusterConfig,
    WorkloadKind,
    WorkloadObserved,
    as_deleted,
    observe,
    spec_fingerprint,
)

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

log = logging.getLogger(__name__)

Emit = Callable[[WorkloadObserved], Awaitable[None]]


@dataclass(frozen=True)
class Resource:
    kind: WorkloadKind
    api_version: str
    plural: str

    def path(self, namespace: str | None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if namespace is None:
            return f"{prefix}/{self.plural}"
        return f"{prefix}/namespaces/{quote(namespace, safe='')}/{self.plural}"


RESOURCES: tuple[Resource, ...] = (
    Resource("Pod", "v1", "pods"),
    Resource("Deployment", "apps/v1", "deployments"),
    Resource("StatefulSet", "apps/v1", "statefulsets"),
    Resource("DaemonSet", "apps/v1", "daemonsets"),
    Resource("Job", "batch/v1", "jobs"),
    Resource("CronJob", "batch/v1", "cronjobs"),
)


class KubeApiError(Exception):
    """The API server answered with a failure `Status` (HTTP or as a watch ERROR event)."""

    def __init__(self, code: int, reason: str, message: str = "") -> None:
        super().__init__(f"{code} {reason}: {message}" if message else f"{code} {reason}")
        self.code = code
        self.reason = reason
        self.message = message

    @classmethod
    def from_status(cls, status: Any, http_status: int) -> KubeApiError:
        body = status if isinstance(status, Mapping) else {}
        code = body.get("code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else http_status
        error_cls = Expired if code == 410 else cls
        return error_cls(code, str(body.get("reason") or ""), str(body.get("message") or ""))


class Expired(KubeApiError):
    """410 Gone: the resourceVersion (or continue token) is older than the server keeps."""


def backoff_delay(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """`min(cap, base·2^attempt)`, jittered down by up to half so that reconnects spread out."""
    delay = min(cap, base * 2.0 ** min(attempt, 64))
    return delay / 2 + rand() * delay / 2


async def load_api_client(config: ClusterConfig) -> ApiClient:
    """A new `ApiClient` for `config`: its kubeconfig file, or the in-cluster service account.

    The kubeconfig is never written back (`persist_config=False`): it is often a read-only
    mounted Secret, and refreshed tokens live in the returned client's configuration only.
    kubernetes_asyncio is imported here, not at the top: its client costs about 50 MB, which
    a bot watching no cluster should not carry.
    """
    from kubernetes_asyncio import client as k8s_client
    from kubernetes_asyncio.client import ApiClient
    from kubernetes_asyncio.config import incluster_config, kube_config

    configuration = k8s_client.Configuration()
    if config.kubeconfig is not None:
        await kube_config.load_kube_config(
            config_file=config.kubeconfig,
            client_configuration=configuration,
            persist_config=False,
        )
    else:
        incluster_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    return ApiClient(configuration)


@dataclass
class _Known:
    fingerprint: str
    event: WorkloadObserved


@dataclass
class _Stream:
    """One list-then-watch loop's state: one resource, cluster-wide or in one namespace."""

    resource: Resource
    namespace: str | None
    resource_version: str | None = None
    listed_at: float = 0.0
    #: Bumped by every successful list and every watch event: tells a healthy connection from
    #: one that keeps failing, for the backoff.
    progress: int = 0
    known: dict[str, _Known] = field(default_factory=dict)

    @property
    def label(self) -> str:
        where = self.namespace if self.namespace is not None else "*"
        return f"{self.resource.plural}@{where}"


class ClusterWatcher:
    """Watches one cluster and calls `emit` with each change worth a look.

    `api_client_factory` defaults to `load_api_client(config)`. The other keyword arguments are
    tunables that tests shrink: `watch_seconds` (the server-side `timeoutSeconds`; a resync due
    sooner shortens it), `read_margin` (how long past it a silent connection is given before it
    counts as dead), per-request timeouts, the list page size, and the backoff's base, cap,
    sleep and random source.
    """

    def __init__(
        self,
        config: ClusterConfig,
        emit: Emit,
        *,
        api_client_factory: Callable[[], Awaitable[ApiClient]] | None = None,
        watch_seconds: int = 300,
        read_margin: float = 30.0,
        request_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        list_page_size: int = 500,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self._emit = emit
        self._factory = api_client_factory
        self._watch_seconds = max(1, watch_seconds)
        self._read_margin = read_margin
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._page_size = list_page_size
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._rand = rand
        self._streams: dict[tuple[str, str | None], _Stream] = {}

    def resource_version(self, kind: str, namespace: str | None = None) -> str | None:
        """Where the loop for `kind` (in `namespace`, None: cluster-wide) would resume."""
        stream = self._streams.get((kind, namespace))
        return stream.resource_version if stream is not None else None

    # ------------------------------------------------------------------ scope

    def scopes(self) -> list[tuple[Resource, str | None]]:
        """(resource, namespace or None for cluster-wide) for each loop `run` starts."""
        excluded = set(self.config.exclude_namespaces)
        namespaces: tuple[str | None, ...] = tuple(
            ns for ns in dict.fromkeys(self.config.namespaces) if ns not in excluded
        )
        if not self.config.namespaces:
            namespaces = (None,)
        return [(r, ns) for r in RESOURCES for ns in namespaces]

    def _wanted(self, namespace: Any) -> bool:
        if not isinstance(namespace, str) or namespace in self.config.exclude_namespaces:
            return False
        return not self.config.namespaces or namespace in self.config.namespaces

    def _field_selector(self, stream: _Stream) -> list[tuple[str, str]]:
        """Excluded namespaces filtered by the server too (`metadata.namespace` is a field
        selector every resource supports); `_wanted` still checks each object."""
        if stream.namespace is not None or not self.config.exclude_namespaces:
            return []
        terms = [
            f"metadata.namespace!={ns}" for ns in dict.fromkeys(self.config.exclude_namespaces)
        ]
        return [("fieldSelector", ",".join(terms))]

    # ------------------------------------------------------------------ loops

    async def run(self) -> None:
        """Watch until cancelled; connection problems are retried, never raised."""
        factory = self._factory or (lambda: load_api_client(self.config))
        scopes = self.scopes()
        api = await factory()
        try:
            if not scopes:  # ClusterConfig refuses this; nothing to watch is not an exit
                await asyncio.Event().wait()
            async with asyncio.TaskGroup() as tg:
                for resource, namespace in scopes:
                    stream = _Stream(resource, namespace)
                    self._streams[resource.kind, namespace] = stream
                    tg.create_task(self._run_stream(api, stream), name=f"k8s-watch {stream.label}")
        finally:
            await api.close()

    async def _run_stream(self, api: ApiClient, stream: _Stream) -> None:
        attempt = 0
        # 410s in a row with no watch event between them: the first relists at once, the rest
        # wait, so a server that answers every watch with 410 is not hammered.
        expired_streak = 0
        while True:
            progress = stream.progress
            listed = False
            try:
                if stream.resource_version is None or self._resync_due(stream):
                    await self._list(api, stream)
                    listed = True
                await self._watch(api, stream)
                attempt = expired_streak = 0
                continue
            except Expired as exc:
                log.info("%s %s: %s; relisting", self.config.name, stream.label, exc)
                stream.resource_version = None
                watch_events = stream.progress - progress - (1 if listed else 0)
                if watch_events > 0:
                    expired_streak = 0
                expired_streak += 1
                if expired_streak == 1:
                    continue
            except Exception as exc:
                log.warning(
                    "%s %s: %s: %s", self.config.name, stream.label, type(exc).__name__, exc
                )
                if stream.progress != progress:
                    attempt = expired_streak = 0
            delay = backoff_delay(
                attempt, base=self._backoff_base, cap=self._backoff_cap, rand=self._rand
            )
            attempt += 1
            await self._sleep(delay)

    def _resync_due(self, stream: _Stream) -> bool:
        resync = self.config.resync_seconds
        return resync > 0 and time.monotonic() - stream.listed_at >= resync

    # ------------------------------------------------------------------ HTTP

    async def _get(
        self, api: ApiClient, path: str, query: list[tuple[str, str]], read_timeout: float
    ) -> aiohttp.ClientResponse:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout, sock_read=read_timeout
        )
        resp: aiohttp.ClientResponse = await api.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )
        if resp.status != 200:
            try:
                body = await resp.read()
            finally:
                resp.close()
            try:
                status = json.loads(body)
            except ValueError:
                status = {
                    "reason": resp.reason or "",
                    "message": body[:200].decode(errors="replace"),
                }
            raise KubeApiError.from_status(status, resp.status)
        return resp

    async def _list(self, api: ApiClient, stream: _Stream) -> None:
        path = stream.resource.path(stream.namespace)
        seen: set[str] = set()
        continue_token: str | None = None
        while True:
            query = [("limit", str(self._page_size)), *self._field_selector(stream)]
            if continue_token:
                query.append(("continue", continue_token))
            resp = await self._get(api, path, query, self._request_timeout)
            try:
                page = await resp.json(content_type=None)
            finally:
                resp.release()
            if not isinstance(page, Mapping):
                raise ValueError(f"list {path}: not a JSON object")
            for item in page.get("items") or ():
                if isinstance(item, Mapping):
                    uid = _uid(item)
                    if uid is not None:
                        seen.add(uid)
                    await self._seen(stream, item)
            metadata = page.get("metadata")
            metadata = metadata if isinstance(metadata, Mapping) else {}
            continue_token = metadata.get("continue") or None
            if continue_token is None:
                break
        for uid in [uid for uid in stream.known if uid not in seen]:
            await self._gone(stream, None, uid)
        resource_version = metadata.get("resourceVersion")
        if not isinstance(resource_version, str) or not resource_version:
            raise ValueError(f"list {path}: no metadata.resourceVersion")
        stream.resource_version = resource_version
        stream.listed_at = time.monotonic()
        stream.progress += 1

    def _watch_timeout(self, stream: _Stream) -> int:
        seconds = float(self._watch_seconds)
        resync = self.config.resync_seconds
        if resync > 0:
            seconds = min(seconds, stream.listed_at + resync - time.monotonic())
        return max(1, int(seconds))

    async def _watch(self, api: ApiClient, stream: _Stream) -> None:
        """One watch request, until the server ends it; raises on anything else."""
        assert stream.resource_version is not None
        timeout_seconds = self._watch_timeout(stream)
        query = [
            ("watch", "true"),
            ("resourceVersion", stream.resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
            *self._field_selector(stream),
        ]
        path = stream.resource.path(stream.namespace)
        resp = await self._get(api, path, query, timeout_seconds + self._read_margin)
        clean = False
        try:
            while True:
                line = await resp.content.readline()
                if not line:
                    clean = True
                    return
                if line.strip():
                    await self._handle(stream, json.loads(line))
        finally:
            if clean:
                resp.release()
            else:
                resp.close()

    # ------------------------------------------------------------------ events

    async def _handle(self, stream: _Stream, event: Any) -> None:
        if not isinstance(event, Mapping):
            raise ValueError("watch event is not a JSON object")
        kind = event.get("type")
        obj = event.get("object")
        obj = obj if isinstance(obj, Mapping) else {}
        if kind == "ERROR":
            raise KubeApiError.from_status(obj, 500)
        if kind in ("ADDED", "MODIFIED"):
            await self._seen(stream, obj)
        elif kind == "DELETED":
            await self._gone(stream, obj, _uid(obj))
        elif kind != "BOOKMARK":
            log.debug("%s %s: ignoring watch event %r", self.config.name, stream.label, kind)
        metadata = obj.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        if isinstance(version, str) and version:
            stream.resource_version = version
        stream.progress += 1

    def _typed(self, stream: _Stream, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        """List items come without kind/apiVersion; every object gets its resource's."""
        resource = stream.resource
        if obj.get("kind") == resource.kind and obj.get("apiVersion") == resource.api_version:
            return obj
        return {**obj, "kind": resource.kind, "apiVersion": resource.api_version}

    async def _seen(self, stream: _Stream, obj: Mapping[str, Any]) -> None:
        obj = self._typed(stream, obj)
        metadata = obj.get("metadata")
        uid = _uid(obj)
        if uid is None or not isinstance(metadata, Mapping):
            return
        if not self._wanted(metadata.get("namespace")):
            return
        fingerprint = spec_fingerprint(obj)
        known = stream.known.get(uid)
        if known is not None and known.fingerprint == fingerprint:
            return
        event = observe(self.config.name, obj)
        if event is None:
            return
        await self._emit(event)
        stream.known[uid] = _Known(fingerprint, event)

    async def _gone(self, stream: _Stream, obj: Mapping[str, Any] | None, uid: str | None) -> None:
        """Emit the deletion of `uid`, once, if it was ever reported."""
        known = stream.known.get(uid) if uid is not None else None
        if known is None:
            return
        event = observe(self.config.name, self._typed(stream, obj), deleted=True) if obj else None
        if event is None:
            event = as_deleted(known.event)
        await self._emit(event)
        del stream.known[known.event.uid]


def _uid(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
    return uid if isinstance(uid, str) and uid else None
