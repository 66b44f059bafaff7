"""Prove the test-support layer against the real registry, skopeo and PostgreSQL.

If these fail, every service-backed test downstream is meaningless, so they check the exact
things those tests rely on: stable digests, a push notification carrying them, manifests served
back byte for byte, and a database that survives an immediate stop and start.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.support.oci import (
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    REF_NAME,
    ImageSpec,
    write_index_layout,
    write_layout,
)
from tests.support.services import (
    Postgres,
    Registry,
    free_port,
    have_services,
    skopeo_push,
    start_postgres,
    start_registry,
)

pytestmark = pytest.mark.services

TOKEN = "test-token"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
MANIFEST_TYPES = {
    MEDIA_OCI_MANIFEST,
    MEDIA_OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


def _require_services() -> None:
    reason = have_services()
    if reason is None:
        return
    if os.environ.get("CROWSNEST_ALLOW_SKIP") == "1":
        pytest.skip(reason)
    pytest.fail(f"{reason} (set CROWSNEST_ALLOW_SKIP=1 to skip instead)")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Listener:
    """Stands in for the bot's webhook: records every delivery and checks the bearer token."""

    url: str
    headers: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401)
        self.events.extend(json.loads(await request.read())["events"])
        return web.Response(status=200)

    async def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if match(event):
                    return event
            if time.monotonic() > deadline:
                seen = [
                    (e["action"], e["target"].get("mediaType"), e["target"].get("tag"))
                    for e in self.events
                ]
                raise AssertionError(f"no matching event within {timeout}s; saw {seen}")
            await asyncio.sleep(0.02)

    async def manifest_push(self, repository: str, tag: str) -> dict[str, Any]:
        return await self.wait_for(
            lambda e: (
                e["action"] == "push"
                and e["target"].get("repository") == repository
                and e["target"].get("tag") == tag
                and e["target"].get("mediaType") in MANIFEST_TYPES
            )
        )


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    _require_services()
    port = free_port()
    lst = Listener(url=f"http://127.0.0.1:{port}/events")
    app = web.Application()
    app.router.add_post("/events", lst.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()  # accepting before the registry runs
    try:
        yield lst
    finally:
        await runner.cleanup()


@pytest.fixture
def registry(listener: Listener, tmp_path: Path) -> Iterator[Registry]:
    with start_registry(tmp_path / "registry", listener.url, token=TOKEN) as reg:
        yield reg


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    _require_services()
    with start_postgres(tmp_path_factory.mktemp("pg")) as pg:
        yield pg


async def get_manifest(
    reg: Registry, repo: str, ref: str, creds: tuple[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    headers = {"Accept": ACCEPT}
    if creds:  # by hand: aiohttp 3.14 deprecates BasicAuth, 3.10 lacks its replacement
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(creds).encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{reg.url}/v2/{repo}/manifests/{ref}", headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.read(), dict(resp.headers)


# --------------------------------------------------------------------------- OCI layouts


def test_layout_is_deterministic_and_merges(tmp_path: Path) -> None:
    spec = ImageSpec(
        user="app",
        labels={"team": "a"},
        entrypoint=["/entry.sh"],
        extra_layers=[{"etc/.wh.alpine-release": b"", "entry.sh": b"#!/bin/sh\n"}],
    )
    first = write_layout(tmp_path / "a", {"1.0": ImageSpec(), "1.1": spec})
    again = write_layout(tmp_path / "b", {"1.0": ImageSpec(), "1.1": spec})
    assert first == again
    assert first["1.0"] != first["1.1"]

    root = tmp_path / "a"
    more = write_layout(root, {"2.0": ImageSpec(cmd=None)})
    index_digest, children = write_index_layout(
        root, "multi", [ImageSpec(), ImageSpec(architecture="arm64", variant="v8")]
    )
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    refs = {m["annotations"][REF_NAME]: m["digest"] for m in index["manifests"]}
    assert refs == {**first, **more, "multi": index_digest}
    assert children[0] == first["1.0"]  # same spec, same manifest blob

    for blob in (root / "blobs" / "sha256").iterdir():
        assert sha256(blob.read_bytes()) == f"sha256:{blob.name}"

    def blob(digest: str) -> bytes:
        return (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()

    manifest = json.loads(blob(first["1.1"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["config"]["User"] == "app"
    assert config["config"]["Labels"] == {"team": "a"}
    assert config["config"]["Entrypoint"] == ["/entry.sh"]
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 2
    assert len(config["history"]) == 2
    assert (
        "User" not in json.loads(blob(json.loads(blob(first["1.0"]))["config"]["digest"]))["config"]
    )
    with tarfile.open(fileobj=io.BytesIO(blob(manifest["layers"][1]["digest"]))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"etc", "etc/.wh.alpine-release", "entry.sh"}
    assert members["entry.sh"].mode == 0o755

    arm = json.loads(blob(index_digest))["manifests"][1]
    assert arm["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}


# --------------------------------------------------------------------------- registry


async def test_push_notifies_with_manifest_digest(
    registry: Registry, listener: Listener, tmp_path: Path
) -> None:
    digests = write_layout(tmp_path / "layout", {"1.0": ImageSpec()})
    skopeo_push(tmp_path / "layout", "1.0", f"{registry.host}/team-a/app:1.0")

    event = await listener.manifest_push("team-a/app", "1.0")
    assert event["target"]["digest"] == digests["1.0"]
    assert event["target"]["mediaType"] == MEDIA_OCI_MANIFEST
    assert listener.headers[-1]["Authorization"] == f"Bearer {TOKEN}"

    body, headers = await get_manifest(registry, "team-a/app", "1.0")
    assert sha256(body) == digests["1.0"] == headers["Docker-Content-Digest"]
    assert headers["Content-Type"] == MEDIA_OCI_MANIFEST


async def test_push_index_with_all(registry: Registry, listener: Listener, tmp_path: Path) -> None:
    index_digest, children = write_index_layout(
        tmp_path / "layout", "multi", [ImageSpec(), ImageSpec(architecture="arm64", variant="v8")]
    )
    skopeo_push(
        tmp_path / "layout", "multi", f"{registry.host}/team-a/app:multi", all_platforms=True
    )

    event = await listener.manifest_push("team-a/app", "multi")
    assert event["target"]["digest"] == index_digest
    assert event["target"]["mediaType"] == MEDIA_OCI_INDEX

    body, headers = await get_manifest(registry, "team-a/app", "multi")
    assert sha256(body) == index_digest
    assert headers["Content-Type"] == MEDIA_OCI_INDEX
    assert [m["digest"] for m in json.loads(body)["manifests"]] == children
    for child in children:  # --all pushed every platform, not just the host's
        child_body, _ = await get_manifest(registry, "team-a/app", child)
        assert sha256(child_body) == child


async def test_push_v2s2_with_auth(listener: Listener, tmp_path: Path) -> None:
    write_layout(tmp_path / "layout", {"1.0": ImageSpec()})
    creds = ("alice", "s3cret")
    with start_registry(tmp_path / "registry", listener.url, token=TOKEN, auth=creds) as reg:
        async with aiohttp.ClientSession() as session, session.get(f"{reg.url}/v2/") as resp:
            assert resp.status == 401
        skopeo_push(
            tmp_path / "layout", "1.0", f"{reg.host}/team-a/legacy:1.0", fmt="v2s2", creds=creds
        )
        event = await listener.manifest_push("team-a/legacy", "1.0")
        body, headers = await get_manifest(reg, "team-a/legacy", "1.0", creds=creds)
    assert event["actor"] == {"name": "alice"}
    assert event["target"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert sha256(body) == event["target"]["digest"] == headers["Docker-Content-Digest"]


# --------------------------------------------------------------------------- PostgreSQL


async def test_postgres_survives_stop_and_start(postgres: Postgres) -> None:
    url = postgres.create_database("support_check")
    assert url == f"postgresql+asyncpg://bot:bot@127.0.0.1:{postgres.port}/support_check"
    dsn = url.replace("+asyncpg", "")

    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_user") == "bot"
        await conn.execute("CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(dsn.replace("bot:bot@", "bot:wrong@"))

    postgres.stop()
    assert postgres.pid is None
    with pytest.raises(OSError):
        await asyncpg.connect(dsn, timeout=2)

    postgres.start()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT v FROM t") == 42  # committed rows survive -m immediate
    finally:
        await conn.close()
