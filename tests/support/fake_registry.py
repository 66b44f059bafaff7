"""A small OCI registry double for behaviour the real one won't show on demand: bearer-token auth
with a chosen realm, hangs, redirects and bodies that do not match their digest."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeRegistry:
    host: str = "127.0.0.1"
    #: "none", "basic" (user:pass) or "bearer" (token from `realm`)
    auth: str = "none"
    credentials: tuple[str, str] = ("bot", "pw")
    realm: str | None = None
    hang: bool = False
    corrupt: bool = False
    redirect_blobs_to: str | None = None
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # ref -> (type, body)
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    #: Harbor API: vulnerability report bodies by artifact digest, and the raw paths asked.
    harbor_reports: dict[str, bytes] = field(default_factory=dict)
    harbor_requests: list[tuple[str, str | None]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_image(self, repository: str, tag: str, config: dict[str, Any]) -> str:
        blob = json.dumps(config).encode()
        self.blobs[digest_of(blob)] = blob
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest_of(blob),
                    "size": len(blob),
                },
                "layers": [],
            }
        ).encode()
        digest = digest_of(manifest)
        for ref in (tag, digest):
            self.manifests[f"{repository}:{ref}"] = (OCI_MANIFEST, manifest)
        return digest

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v2/{repo:.+}/manifests/{ref}", self._manifest)
        app.router.add_get("/v2/{repo:.+}/blobs/{digest}", self._blob)
        app.router.add_get("/token", self._token)
        app.router.add_get("/api/v2.0/{rest:.+}", self._harbor)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            import base64

            want = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if header != want:
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        if self.auth == "bearer" and header != "Bearer good-token":
            realm = self.realm or f"{self.url}/token"
            challenge = f'Bearer realm="{realm}",service="fake",scope="repository:x:pull"'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        return None

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        if denied := self._authorized(request):
            return denied
        if self.hang:
            await asyncio.sleep(3600)
        key = f"{request.match_info['repo']}:{request.match_info['ref']}"
        if key not in self.manifests:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        media_type, body = self.manifests[key]
        if self.corrupt:
            body = body + b" "
        return web.Response(
            body=body,
            headers={"Content-Type": media_type, "Docker-Content-Digest": digest_of(body)},
        )

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        if denied := self._authorized(request):
            return denied
        if self.redirect_blobs_to:
            raise web.HTTPTemporaryRedirect(self.redirect_blobs_to + request.path)
        digest = request.match_info["digest"]
        if digest not in self.blobs:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        return web.Response(body=self.blobs[digest], content_type="application/octet-stream")

    async def _harbor(self, request: web.Request) -> web.Response:
        self.harbor_requests.append((request.raw_path, request.headers.get("Authorization")))
        digest = request.raw_path.split("/artifacts/", 1)[-1].split("/", 1)[0]
        if digest not in self.harbor_reports:
            return web.json_response({"errors": [{"code": "NOT_FOUND"}]}, status=404)
        return web.Response(body=self.harbor_reports[digest], content_type="application/json")

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query))
        return web.json_response({"token": "good-token", "expires_in": 300})
