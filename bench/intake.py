"""Intake throughput of POST /hooks/registry/{name} under wrk, beside a bare aiohttp handler.

Absolute numbers drift on a shared machine, so the figure that matters is the ratio to a bare
aiohttp handler measured in the same run. Goal (issue 2): >= 2,000 events/s on SQLite and >= 0.4
of the bare handler. Afterwards the stored row count is compared with the 202s wrk saw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.services import free_port, start_postgres  # noqa: E402

TOKEN = "bench-token"
LUA = r"""
local counter = 0
local tid = 0
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function init(args) tid = tonumber(wrk.thread:get("tid") or 0) end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/vnd.docker.distribution.events.v1+json"
wrk.headers["Authorization"] = "Bearer bench-token"
local head = '{"events":[{"id":"'
local tail = '","timestamp":"2026-12-01T19:50:44.167833934Z","action":"push","target":{'
  .. '"mediaType":"application/vnd.oci.image.manifest.v1+json","size":475,'
  .. '"digest":"sha256:c3ae53901fb40c94dca4688a0ec6037be1e3e2b723cc06af5ba285b98ad254e9",'
  .. '"repository":"team-a/app","tag":"1.0"},"actor":{}}]}'
function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, head .. "bench-" .. tid .. "-" .. counter .. tail)
end
"""

BARE = """
import sys
from aiohttp import web
async def handle(request):
    await request.read()
    return web.json_response({"accepted": 1}, status=202)
app = web.Application()
app.router.add_post("/hooks/registry/{name}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def config(port: int, db_url: str) -> str:
    return f"""
[server]
port = {port}
[database]
url = "{db_url}"
migrate_on_start = true
[worker]
concurrency = 0
[[registries]]
name = "local"
kind = "distribution"
url = "http://127.0.0.1:9"
webhook_secret = "{TOKEN}"
"""


async def wait_up(port: int, path: str = "/healthz", limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


def wrk(port: int, lua: Path, seconds: int, connections: int) -> tuple[float, int, int, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua),
         f"http://127.0.0.1:{port}/hooks/registry/local"],
        capture_output=True, text=True, check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return rate, total, int(bad.group(1)) if bad else 0, p99_ms


def serve(workdir: Path, port: int, db_url: str) -> subprocess.Popen[bytes]:
    cfg = workdir / "crowsnest.toml"
    cfg.write_text(config(port, db_url))
    return subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "--log-level", "warning", "serve", "--config",
         str(cfg)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(workdir / "serve.log").open("w"),
    )


def stored_rows(db_url: str) -> int:
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.split(":///", 1)[1]) as conn:
            return int(conn.execute("select count(*) from inbox_events").fetchone()[0])
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
        try:
            return int(await conn.fetchval("select count(*) from inbox_events"))
        finally:
            await conn.close()

    return asyncio.run(count())


def run_bot(workdir: Path, db_url: str, lua: Path, seconds: int, conns: int) -> dict[str, float]:
    port = free_port()
    proc = serve(workdir, port, db_url)
    try:
        asyncio.run(wait_up(port, "/readyz"))
        rate, total, bad, p99 = wrk(port, lua, seconds, conns)
    finally:
        proc.terminate()
        proc.wait(20)
    accepted = total - bad
    rows = stored_rows(db_url)
    return {"rate": rate, "total": total, "bad": bad, "p99": p99, "rows": rows,
            "lost": max(accepted - rows, 0)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "10")))
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--no-postgres", action="store_true")
    args = p.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed (make bench installs it)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="crowsnest-bench-"))
    lua = workdir / "push.lua"
    lua.write_text(LUA)

    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)])
    try:
        asyncio.run(wait_up(bare_port, "/nothing"))
        bare_rate, *_ = wrk(bare_port, lua, args.seconds, args.connections)
    finally:
        bare.terminate()
        bare.wait(10)
    print(f"bare aiohttp handler: {bare_rate:8.0f} req/s")

    results = {"sqlite": run_bot(workdir, f"sqlite+aiosqlite:///{workdir / 'bench.db'}", lua,
                                 args.seconds, args.connections)}
    if not args.no_postgres:
        pg = start_postgres(workdir / "pg")
        try:
            results["postgresql"] = run_bot(workdir, pg.url("crowsnest"), lua, args.seconds,
                                            args.connections)
        finally:
            pg.close()
    ok = True
    for engine, r in results.items():
        ratio = r["rate"] / bare_rate
        print(
            f"intake on {engine:10}: {r['rate']:8.0f} events/s  ratio {ratio:4.2f} to bare  "
            f"p99 {r['p99']:.1f} ms  non-2xx {r['bad']:.0f}  stored {r['rows']:.0f} "
            f"of {r['total'] - r['bad']:.0f} acknowledged (lost {r['lost']:.0f})"
        )
        ok &= r["lost"] == 0
    sqlite = results["sqlite"]
    print(f"goal sqlite >= 2000 events/s: {'met' if sqlite['rate'] >= 2000 else 'NOT met'}; "
          f"ratio >= 0.4: {'met' if sqlite['rate'] / bare_rate >= 0.4 else 'NOT met'}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
