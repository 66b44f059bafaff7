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
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import BOT_TOKEN, SIGNING_SECRET, WEBHOOK_SECRET
from tests.support.oci import FIXED_EPOCH, ImageSpec, write_layout
from tests.support.serve import serve, wait_ready
from tests.support.services import free_port, skopeo_push, start_registry
from tests.support.slack_standin import SlackStandIn

pytestmark = pytest.mark.services

ADMISSION_TOKEN = "admission-test-token"
FALCO_TOKEN = "falco-test-token"
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


def _config(path: Path, port: int, db: Path, registry_url: str, slack_url: str) -> None:
    path.write_text(
        f"""
[server]
port = {port}
[database]
url = "sqlite+aiosqlite:///{db}"
[slack]
api_url = "{slack_url}"
bot_token = "{BOT_TOKEN}"
signing_secret = "{SIGNING_SECRET}"
fallback_channel = "#fallback"
channel_interval = 0
coalesce_seconds = 0
[worker]
poll_interval = 0.1
[admission]
token = "{ADMISSION_TOKEN}"
[falco]
token = "{FALCO_TOKEN}"
[[registries]]
name = "local"
kind = "distribution"
url = "{registry_url}"
webhook_secret = "{WEBHOOK_SECRET}"
scan_timeout = 300
[scan]
max_packages_per_image = 20000
"""
    )


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


async def test_hostile_layers_neither_stall_nor_bloat_the_bot_and_each_is_reported_once(
    tmp_path: Path,
) -> None:
    slack = SlackStandIn(bot_token=BOT_TOKEN, epoch=time.time())
    await slack.start()
    port = free_port()
    registry = start_registry(
        tmp_path / "registry", f"http://127.0.0.1:{port}/hooks/registry/local", WEBHOOK_SECRET
    )
    write_layout(tmp_path / "layout", _attacks())
    config, log, db = tmp_path / "crowsnest.toml", tmp_path / "serve.log", tmp_path / "bot.db"
    _config(config, port, db, registry.url, slack.api_url)
    proc = serve(config, log)
    try:
        await wait_ready(port, proc, log)
        pushed = [t for t in ATTACKS if os.environ.get("HOSTILE_ONLY", t) == t]
        for tag in pushed:
            skopeo_push(tmp_path / "layout", tag, f"{registry.host}/team-a/{tag}:1")
        probe = Probe(port)
        deadline = time.monotonic() + 240
        async with aiohttp.ClientSession() as http:
            while not all(_posted(slack, tag) for tag in pushed):
                assert time.monotonic() < deadline, f"not all posted: {log.read_text()[-3000:]}"
                assert proc.poll() is None, f"serve died: {log.read_text()[-3000:]}"
                await probe.round(http)
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)  # a second post of the same image would come now
        peak = _peak_rss_kb(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
        registry.stop()
        await slack.stop()

    posts = {tag: _posted(slack, tag) for tag in pushed}
    print(f"slowest answers {probe.slowest}, peak RSS {peak / 1024:.0f} MB")
    assert {tag: len(calls) for tag, calls in posts.items()} == dict.fromkeys(pushed, 1)
    for tag, [call] in posts.items():
        assert "scan-limit" in _text(call), f"{tag}: {_text(call)[:1500]}"
    assert probe.statuses == {"healthz": {200}, "admission": {200}, "intake": {202}}
    assert max(probe.slowest.values()) < PROBE_BUDGET, probe.slowest
    assert peak < RSS_BUDGET_KB, f"peak RSS {peak / 1024:.0f} MB"


def _posted(slack: SlackStandIn, tag: str) -> list[Any]:
    """The messages (not thread replies) about the image pushed as `tag`."""
    return [
        c
        for c in slack.calls_to("chat.postMessage")
        if f"team-a/{tag}:1" in _text(c) and "thread_ts" not in c.args
    ]


def _text(call: Any) -> str:
    return str(call.args.get("text", "")) + json.dumps(call.args.get("blocks"))
