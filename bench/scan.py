"""Checks of a ~100 MB image in 5 layers from the local registry: wall time and peak memory.

Goal (issue 3): under 2 s and under 60 MB of added memory, because layers are streamed and
never held whole. The baseline, measured in the same run, is a bare streaming download of
the same blobs, so the ratio shows what the checks cost over moving the bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.oci import ImageSpec, write_layout  # noqa: E402
from tests.support.services import skopeo_push, start_registry  # noqa: E402

LAYER_MB = 20

MEASURE = r"""
import asyncio, json, sys, time
from datetime import UTC, datetime
import aiohttp
from bot.config import Registry, RegistryKind
from bot.checks.base import HygienePolicy
from bot.checks.hygiene import run_image_checks
from bot.images.registry_client import RegistryClient, ACCEPT

url, repo, tag, mode = sys.argv[1:5]
reg = Registry(name="bench", kind=RegistryKind.DISTRIBUTION, url=url, max_blob_bytes=8 << 20)

def status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(field)

def reset_peak():
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

async def download():
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}) as r:
            manifest = await r.json(content_type=None)
        for layer in manifest["layers"]:
            async with http.get(f"{url}/v2/{repo}/blobs/{layer['digest']}") as r:
                async for _ in r.content.iter_chunked(256 * 1024):
                    pass

async def scan():
    client = RegistryClient()
    await client.open()
    try:
        facts = await client.image_facts(reg, repo, tag, tag)
        return run_image_checks(facts, HygienePolicy(), datetime.now(UTC))
    finally:
        await client.close()

async def main():
    reset_peak()
    base = status_mb("VmRSS")
    start = time.perf_counter()
    found = await (download() if mode == "download" else scan())
    wall = time.perf_counter() - start
    print(json.dumps({"wall": wall, "added_mb": status_mb("VmHWM") - base,
                      "findings": sorted(f.check_id for f in found) if found else []}))

asyncio.run(main())
"""


def measure(url: str, repo: str, tag: str, mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, url, repo, tag, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="crowsnest-scan-bench-"))
    layers = [{f"opt/data/blob{n}.bin": os.urandom(LAYER_MB << 20)} for n in range(4)]
    spec = ImageSpec(
        files={
            "etc/os-release": b"ID=alpine\nVERSION_ID=3.22.1\n",
            "opt/data/blob.bin": os.urandom(LAYER_MB << 20),
        },
        extra_layers=layers,
    )
    write_layout(work / "layout", {"big": spec})
    size = sum(p.stat().st_size for p in (work / "layout" / "blobs" / "sha256").iterdir())
    registry = start_registry(work / "registry", None)
    try:
        skopeo_push(work / "layout", "big", f"{registry.host}/bench/big:big")
        measure(registry.url, "bench/big", "big", "download")  # warm the registry's caches
        base = measure(registry.url, "bench/big", "big", "download")
        scan = measure(registry.url, "bench/big", "big", "scan")
    finally:
        registry.stop()
    print(f"image: {size / 1e6:.0f} MB in 5 layers")
    print(f"bare streaming download: {base['wall']:.2f} s, +{base['added_mb']:.0f} MB")
    print(
        f"scan with all checks:    {scan['wall']:.2f} s, +{scan['added_mb']:.0f} MB "
        f"(ratio {float(scan['wall']) / float(base['wall']):.1f}x the download)"
    )
    print(f"findings: {', '.join(scan['findings'])}")  # type: ignore[arg-type]
    ok = float(scan["wall"]) < 2.0 and float(scan["added_mb"]) < 60
    print(f"goal under 2 s and under 60 MB added: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
