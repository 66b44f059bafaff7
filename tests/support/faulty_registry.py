"""A FakeRegistry whose repositories can misbehave one by one, so a healthy push can be checked
beside a bad one: hang forever, answer after a delay, or trickle the manifest out slowly."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.fake_registry import FakeRegistry, digest_of


@dataclass
class FaultyRegistry(FakeRegistry):
    #: repository -> "hang" | "delay" | "trickle" | "corrupt" (a body that is not its digest)
    faults: dict[str, str] = field(default_factory=dict)
    #: "delay": seconds before the answer. "trickle": seconds between two bytes of the body.
    delay: float = 0.5
    manifest_hits: dict[str, int] = field(default_factory=dict)

    def corrupt_config_blob(self, repository: str, tag: str) -> None:
        """Serve other bytes under the config blob's digest (the manifest stays valid)."""
        import json

        _media_type, body = self.manifests[f"{repository}:{tag}"]
        digest = json.loads(body)["config"]["digest"]
        self.blobs[digest] = self.blobs[digest] + b" "
        assert digest_of(self.blobs[digest]) != digest

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        repository = request.match_info["repo"]
        self.manifest_hits[repository] = self.manifest_hits.get(repository, 0) + 1
        fault = self.faults.get(repository)
        if fault == "hang":
            self.requests.append(request.path)
            await asyncio.sleep(3600)
        if fault == "delay":
            await asyncio.sleep(self.delay)
        if fault == "trickle":
            self.requests.append(request.path)
            key = f"{repository}:{request.match_info['ref']}"
            media_type, body = self.manifests[key]
            resp = web.StreamResponse(
                headers={
                    "Content-Type": media_type,
                    "Docker-Content-Digest": digest_of(body),
                    "Content-Length": str(len(body)),
                }
            )
            await resp.prepare(request)
            for i in range(len(body)):
                await resp.write(body[i : i + 1])
                await asyncio.sleep(self.delay)
            await resp.write_eof()
            return resp
        if fault == "corrupt":
            self.requests.append(request.path)
            media_type, body = self.manifests[f"{repository}:{request.match_info['ref']}"]
            return web.Response(body=body + b" ", headers={"Content-Type": media_type})
        return await super()._manifest(request)
