"""A Kubernetes API server stand-in: real HTTP on 127.0.0.1, speaking the list/watch protocol.

The watcher's own kubernetes_asyncio `ApiClient`, loaded from the kubeconfig this writes
(:meth:`KubeStandIn.kubeconfig`), talks to it unmodified. What it does the way the API server
does, because those are the details a lenient fake hides:

* one global, increasing `resourceVersion` across all resources; every create, update and
  delete is one revision, kept in a history that :meth:`compact` trims;
* lists (`GET /api/v1/pods`, `/apis/apps/v1/namespaces/{ns}/deployments`, …) return an
  `XList` whose `metadata.resourceVersion` is the revision the list was read at, and whose
  items carry **no** `kind`/`apiVersion` (kubernetes/kubernetes#3030); `limit` pages with a
  `continue` token that reads the same snapshot, and a token older than the history answers
  HTTP 410 `Expired`, as the real server does;
* `?watch=1&resourceVersion=N` streams newline-delimited watch events after N (with no N or
  `0`: a synthetic ADDED per existing object first); an N older than the history gets HTTP 200
  and one `ERROR` event carrying a `Status` with code 410 (or, with `expired_watch_as_http`,
  an HTTP 410 like some proxies return); `timeoutSeconds` ends the stream cleanly;
  BOOKMARK events (`{"kind": …, "apiVersion": …, "metadata": {"resourceVersion": …}}`) go only
  to watches that asked with `allowWatchBookmarks`;
* `fieldSelector` with `metadata.name` / `metadata.namespace` (`=`, `==`, `!=`), 400 for any
  other field; booleans parsed like Go's `strconv.ParseBool` (the generated client sends
  `True`); a missing or wrong bearer token is 401.

Test controls: :meth:`create`, :meth:`update`, :meth:`delete`, :meth:`compact`,
:meth:`drop_connections`, :meth:`bookmark`, :meth:`go_down` / :meth:`come_back`, and
:attr:`requests`, the log of every request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

TOKEN = "standin-token"


@dataclass(frozen=True)
class Resource:
    kind: str
    api_version: str
    plural: str

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"


RESOURCES = (
    Resource("Pod", "v1", "pods"),
    Resource("Deployment", "apps/v1", "deployments"),
    Resource("StatefulSet", "apps/v1", "statefulsets"),
    Resource("DaemonSet", "apps/v1", "daemonsets"),
    Resource("ReplicaSet", "apps/v1", "replicasets"),
    Resource("Job", "batch/v1", "jobs"),
    Resource("CronJob", "batch/v1", "cronjobs"),
)
BY_KIND = {r.kind: r for r in RESOURCES}
BY_PATH = {(r.prefix, r.plural): r for r in RESOURCES}

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class _Fail(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = _status(code, reason, message)


def _bool(value: str | None) -> bool:
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _Fail(400, "BadRequest", f"invalid boolean value {value!r}")


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None

    @property
    def watch(self) -> bool:
        return self.query.get("watch", "") in _TRUE

    @property
    def resource_version(self) -> str | None:
        return self.query.get("resourceVersion")

    @property
    def plural(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def namespace(self) -> str | None:
        parts = self.path.split("/")
        return parts[parts.index("namespaces") + 1] if "namespaces" in parts else None


@dataclass
class _Change:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: Resource
    key: tuple[str, str]  # (namespace, name)
    obj: dict[str, Any]  # the state after (the last state, for DELETED)
    before: dict[str, Any] | None


@dataclass
class _Selector:
    terms: tuple[tuple[str, str, str], ...] = ()  # (field, op, value)

    @classmethod
    def parse(cls, text: str | None) -> _Selector:
        terms = []
        for term in (text or "").split(","):
            term = term.strip()
            if not term:
                continue
            for op in ("!=", "==", "="):
                if op in term:
                    name, value = term.split(op, 1)
                    break
            else:
                raise _Fail(400, "BadRequest", f"invalid field selector: {term!r}")
            if name not in ("metadata.name", "metadata.namespace"):
                raise _Fail(400, "BadRequest", f'field label not supported: "{name}"')
            terms.append((name, "!=" if op == "!=" else "=", value))
        return cls(tuple(terms))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        for name, op, value in self.terms:
            actual = metadata.get(name.removeprefix("metadata."), "")
            if (actual == value) != (op == "="):
                return False
        return True


@dataclass
class _Watch:
    resource: Resource
    namespace: str | None
    selector: _Selector
    bookmarks: bool
    request: web.Request
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def wants(self, change: _Change) -> bool:
        return (
            change.resource == self.resource
            and (self.namespace is None or change.key[0] == self.namespace)
            and self.selector.matches(change.obj)
        )


class KubeStandIn:
    """See the module docstring. Use as `async with KubeStandIn() as kube:`."""

    def __init__(self, *, token: str = TOKEN, first_resource_version: int = 1000) -> None:
        self.token = token
        #: Every request, in arrival order.
        self.requests: list[LoggedRequest] = []
        #: Called with each request before it is served (a test can compact, fail…).
        self.hooks: list[Callable[[LoggedRequest], None]] = []
        #: Answer a watch from an expired version with HTTP 410 instead of an ERROR event.
        self.expired_watch_as_http = False
        #: False: accept `fieldSelector` but ignore it (to test a client's own filtering).
        self.honor_field_selector = True
        #: plural → raw lines: the next watch of that plural sends exactly these, then ends.
        self.canned_watch: dict[str, list[bytes]] = {}
        self._rv = first_resource_version
        #: Versions after this one are in the history; a watch or continue from before is 410.
        self._compacted = first_resource_version
        self._objects: dict[Resource, dict[tuple[str, str], dict[str, Any]]] = {
            r: {} for r in RESOURCES
        }
        self._history: list[_Change] = []
        self._watches: list[_Watch] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("KubeStandIn.start() has not been awaited")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await self._listen(0)

    async def _listen(self, port: int) -> None:
        assert self._runner is not None and self._runner.server is not None
        sock = socket.create_server(("127.0.0.1", port), backlog=128)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        self._server = await asyncio.get_running_loop().create_server(
            self._runner.server, sock=sock
        )

    async def stop(self) -> None:
        self.go_down()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KubeStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def go_down(self) -> None:
        """Refuse new connections (ECONNREFUSED) and reset every open one."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.drop_connections()
        server = self._runner.server if self._runner is not None else None
        for handler in list(server.connections) if server is not None else []:
            if handler.transport is not None:
                handler.transport.abort()

    async def come_back(self) -> None:
        """Listen again, on the same port."""
        if self._server is None:
            await self._listen(self._port or 0)

    def kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig (JSON, which is YAML) for this server and a token user."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": self.token}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
            "current-context": "standin",
        }
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return path

    # ------------------------------------------------------------------ the store

    @property
    def resource_version(self) -> str:
        """The newest revision."""
        return str(self._rv)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._objects[BY_KIND[kind]][(namespace, name)])

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        resource, key = self._locate(obj)
        if key in self._objects[resource]:
            raise ValueError(f"{resource.kind} {key} exists")
        stored = copy.deepcopy(dict(obj))
        stored["kind"], stored["apiVersion"] = resource.kind, resource.api_version
        metadata = stored.setdefault("metadata", {})
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        metadata["generation"] = 1
        return self._commit("ADDED", resource, key, stored, None)

    def update(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Replace an object (PUT): generation goes up only when `spec` changed."""
        resource, key = self._locate(obj)
        before = self._objects[resource].get(key)
        if before is None:
            raise KeyError(f"{resource.kind} {key} does not exist")
        stored = copy.deepcopy(dict(obj))
        stored["kind"], stored["apiVersion"] = resource.kind, resource.api_version
        metadata = stored.setdefault("metadata", {})
        for kept in ("uid", "creationTimestamp"):
            metadata[kept] = before["metadata"][kept]
        generation = before["metadata"]["generation"]
        metadata["generation"] = generation + (stored.get("spec") != before.get("spec"))
        return self._commit("MODIFIED", resource, key, stored, before)

    def delete(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        resource, key = self._locate(obj)
        before = self._objects[resource].get(key)
        if before is None:
            raise KeyError(f"{resource.kind} {key} does not exist")
        return self._commit("DELETED", resource, key, copy.deepcopy(before), before)

    def _locate(self, obj: Mapping[str, Any]) -> tuple[Resource, tuple[str, str]]:
        resource = BY_KIND[obj["kind"]]
        metadata = obj["metadata"]
        return resource, (metadata.get("namespace", "default"), metadata["name"])

    def _commit(
        self,
        type_: str,
        resource: Resource,
        key: tuple[str, str],
        obj: dict[str, Any],
        before: dict[str, Any] | None,
    ) -> dict[str, Any]:
        self._rv += 1
        obj["metadata"]["namespace"] = key[0]
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if type_ == "DELETED":
            del self._objects[resource][key]
        else:
            self._objects[resource][key] = obj
        change = _Change(self._rv, type_, resource, key, obj, before)
        self._history.append(change)
        event = {"type": type_, "object": obj}
        for watch in self._watches:
            if watch.wants(change):
                watch.queue.put_nowait(event)
        return copy.deepcopy(obj)

    def compact(self, keep_last: int = 0) -> None:
        """Forget all but the last `keep_last` changes: older versions now get 410."""
        drop = len(self._history) - keep_last
        if drop <= 0:
            return
        self._compacted = self._history[drop - 1].rv
        del self._history[:drop]

    def _state_at(self, resource: Resource, rv: int) -> dict[tuple[str, str], dict[str, Any]]:
        """The objects of `resource` as of revision `rv` (its changes since must be kept)."""
        state = dict(self._objects[resource])
        for change in reversed(self._history):
            if change.rv <= rv:
                break
            if change.resource != resource:
                continue
            if change.before is None:
                state.pop(change.key, None)
            else:
                state[change.key] = change.before
        return state

    # ------------------------------------------------------------------ watch controls

    def drop_connections(self) -> int:
        """Reset every open watch (the client sees the connection die mid-stream)."""
        watches, self._watches = self._watches, []
        for watch in watches:
            if watch.request.transport is not None:
                watch.request.transport.abort()
            watch.queue.put_nowait(None)
        return len(watches)

    def bookmark(self) -> int:
        """Send a BOOKMARK at the newest revision to each open watch that allows them."""
        sent = 0
        for watch in self._watches:
            if watch.bookmarks:
                r = watch.resource
                obj = {
                    "kind": r.kind,
                    "apiVersion": r.api_version,
                    "metadata": {"resourceVersion": str(self._rv)},
                }
                watch.queue.put_nowait({"type": "BOOKMARK", "object": obj})
                sent += 1
        return sent

    def open_watches(self, plural: str | None = None) -> int:
        return sum(1 for w in self._watches if plural in (None, w.resource.plural))

    async def wait_for_watches(
        self, count: int, plural: str | None = None, timeout: float = 3.0
    ) -> None:
        """Until at least `count` watches (of `plural`) are open."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: self.open_watches(plural) >= count)

    def lists(self, plural: str | None = None) -> list[LoggedRequest]:
        return [r for r in self.requests if not r.watch and plural in (None, r.plural)]

    def watch_requests(self, plural: str | None = None) -> list[LoggedRequest]:
        return [r for r in self.requests if r.watch and plural in (None, r.plural)]

    # ------------------------------------------------------------------ HTTP

    def _route(self, path: str) -> tuple[Resource, str | None]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "v1"]:
            prefix, rest = "/api/v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            prefix, rest = f"/apis/{parts[1]}/{parts[2]}", parts[3:]
        else:
            raise _Fail(404, "NotFound", "the server could not find the requested resource")
        namespace = None
        if len(rest) == 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        resource = BY_PATH.get((prefix, rest[0])) if len(rest) == 1 else None
        if resource is None:
            raise _Fail(404, "NotFound", "the server could not find the requested resource")
        return resource, namespace

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        logged = LoggedRequest(
            request.method,
            request.path,
            dict(request.query),
            request.headers.get("Authorization"),
        )
        self.requests.append(logged)
        try:
            for hook in list(self.hooks):
                hook(logged)
            if logged.authorization != f"Bearer {self.token}":
                raise _Fail(401, "Unauthorized", "Unauthorized")
            resource, namespace = self._route(request.path)
            selector = _Selector.parse(request.query.get("fieldSelector"))
            if not self.honor_field_selector:
                selector = _Selector()
            if _bool(request.query.get("watch")):
                return await self._watch(request, resource, namespace, selector)
            return self._list(request, resource, namespace, selector)
        except _Fail as fail:
            return web.json_response(fail.status, status=fail.status["code"])

    def _list(
        self,
        request: web.Request,
        resource: Resource,
        namespace: str | None,
        selector: _Selector,
    ) -> web.Response:
        limit = int(request.query.get("limit") or 0)
        token = request.query.get("continue")
        rv, after = self._rv, None
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token))
                rv, after = int(decoded["rv"]), tuple(decoded["start"])
            except (ValueError, KeyError, TypeError):
                raise _Fail(400, "BadRequest", "continue key is not valid") from None
            if rv < self._compacted:
                raise _Fail(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                )
        state = self._state_at(resource, rv)
        keys = sorted(
            k
            for k, obj in state.items()
            if (namespace is None or k[0] == namespace) and selector.matches(obj)
        )
        if after is not None:
            keys = [k for k in keys if k > after]
        page, rest = (keys[:limit], keys[limit:]) if limit > 0 else (keys, [])
        items = []
        for key in page:
            item = copy.deepcopy(state[key])
            item.pop("kind", None)
            item.pop("apiVersion", None)
            items.append(item)
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        if rest:
            cont = json.dumps({"rv": rv, "start": list(page[-1])}).encode()
            metadata["continue"] = base64.urlsafe_b64encode(cont).decode()
            metadata["remainingItemCount"] = len(rest)
        body = {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }
        return web.json_response(body)

    async def _watch(
        self,
        request: web.Request,
        resource: Resource,
        namespace: str | None,
        selector: _Selector,
    ) -> web.StreamResponse:
        raw_rv = request.query.get("resourceVersion", "")
        timeout = request.query.get("timeoutSeconds")
        try:
            since = int(raw_rv) if raw_rv not in ("", "0") else None
            seconds = int(timeout) if timeout else None
        except ValueError:
            raise _Fail(400, "BadRequest", "invalid resourceVersion or timeoutSeconds") from None
        expired = since is not None and since < self._compacted
        if expired and self.expired_watch_as_http:
            raise _Fail(410, "Expired", f"too old resource version: {since} ({self._compacted})")
        # Backlog and registration happen with no await between them: no change can slip by.
        backlog: list[dict[str, Any]] = []
        if expired:
            status = _status(
                410, "Expired", f"too old resource version: {since} ({self._compacted})"
            )
            backlog.append({"type": "ERROR", "object": status})
        elif since is None:
            for key, obj in sorted(self._objects[resource].items()):
                if (namespace is None or key[0] == namespace) and selector.matches(obj):
                    backlog.append({"type": "ADDED", "object": obj})
        watch = _Watch(
            resource, namespace, selector, _bool(request.query.get("allowWatchBookmarks")), request
        )
        if not expired:
            for change in self._history:
                if since is not None and change.rv > since and watch.wants(change):
                    backlog.append({"type": change.type, "object": change.obj})
            self._watches.append(watch)
        for event in backlog:
            watch.queue.put_nowait(event)
        if expired:
            watch.queue.put_nowait(None)
        await self._notify()

        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        canned = self.canned_watch.pop(resource.plural, None)
        if canned is not None:
            if watch in self._watches:
                self._watches.remove(watch)
            await response.prepare(request)
            for line in canned:
                await response.write(line)
            await response.write_eof()
            return response
        try:
            await response.prepare(request)
            async with asyncio.timeout(seconds):
                while (event := await watch.queue.get()) is not None:
                    await response.write(json.dumps(event).encode() + b"\n")
        except TimeoutError:
            pass
        except (ConnectionError, RuntimeError):
            return response  # the client went away
        finally:
            if watch in self._watches:
                self._watches.remove(watch)
            await self._notify()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
