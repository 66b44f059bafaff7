"""Intake of POST /hooks/registry/{name} under wrk, beside a bare aiohttp handler, then a drain.

Absolute numbers drift on a shared machine, so the figure that matters is the ratio to a bare
aiohttp handler measured in the same run, for as long (`--seconds`, default 60, or
BENCH_SECONDS). Per engine (SQLite, then a throwaway PostgreSQL):

1. intake alone: `crowsnest serve` with no workers, so the figure is the webhook path itself.
   Goal (issue 2): >= 2,000 events/s on SQLite and >= 0.4 of the bare handler.
2. as deployed: workers on, processing while wrk pushes (each event a new tag of one image in a
   stand-in registry), which is the sustained rate a push storm meets.
3. the drain: wrk stops, the bot goes on until its inbox is empty; then every event wrk got a
   202 for must be stored once and processed (`done`), none failed.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
local run = "RUN"
local head = '{"events":[{"id":"'
local middle = '","timestamp":"2026-12-01T19:50:44.167833934Z","action":"push","target":{'
  .. '"mediaType":"application/vnd.oci.image.manifest.v1+json","size":475,'
  .. '"digest":"DIGEST","repository":"team-a/app","tag":"'
local tail = '"},"actor":{}}]}'
function request()
  counter = counter + 1
  local n = run .. "-" .. tid .. "-" .. counter
  return wrk.format(nil, nil, nil, head .. n .. middle .. n .. tail)
end
"""

#: The stand-in registry: one clean image (a non-root user, so pushes raise no finding and the
#: drain measures the pipeline, not Slack), served until stdin closes.
REGISTRY = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from tests.support.fake_registry import FakeRegistry
async def main():
    fake = FakeRegistry()
    digest = fake.add_image("team-a/app", "base", {"config": {"User": "app"}})
    await fake.start()
    print(fake.url, digest, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await fake.stop()
asyncio.run(main())
"""

#: On the event loop `crowsnest serve` runs on (uvloop where installed), so the ratio compares
#: the bot's work with the bare minimum on equal terms.
BARE = """
import asyncio, sys
from aiohttp import web
try:
    import uvloop
    loop = uvloop.new_event_loop()
except ImportError:
    loop = asyncio.new_event_loop()
async def handle(request):
    await request.read()
    return web.json_response({"accepted": 1}, status=202)
app = web.Application()
app.router.add_post("/hooks/registry/{name}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, loop=loop)
"""


def config(port: int, db_url: str, registry_url: str, workers: int) -> str:
    return f"""
[server]
port = {port}
[database]
url = "{db_url}"
migrate_on_start = true
[worker]
concurrency = {workers}
[admission]
token = "admission-token"
[falco]
token = "falco-token"
[[registries]]
name = "local"
kind = "distribution"
url = "{registry_url}"
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
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}/hooks/registry/local",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return rate, total, int(bad.group(1)) if bad else 0, p99_ms


def serve(
    workdir: Path, port: int, db_url: str, registry_url: str, workers: int
) -> subprocess.Popen[bytes]:
    cfg = workdir / "crowsnest.toml"
    cfg.write_text(config(port, db_url, registry_url, workers))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "handlers.cli",
            "--log-level",
            "warning",
            "serve",
            "--config",
            str(cfg),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "serve.log").open("a"),
    )


def inbox_counts(db_url: str) -> dict[str, int]:
    """Rows by status, and how many distinct dedup keys (each must be one row)."""
    sql = "select status, count(*), count(distinct dedup_key) from inbox_events group by status"
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.split(":///", 1)[1]) as conn:
            rows = conn.execute(sql).fetchall()
    else:
        import asyncpg

        async def fetch() -> list[Any]:
            conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
            try:
                return list(await conn.fetch(sql))
            finally:
                await conn.close()

        rows = asyncio.run(fetch())
    counts = {str(status): int(n) for status, n, _ in rows}
    counts["rows"] = sum(int(n) for _, n, _ in rows)
    counts["keys"] = sum(int(k) for _, _, k in rows)
    return counts


@dataclass
class Phase:
    rate: float
    total: int
    bad: int
    p99: float

    @property
    def accepted(self) -> int:
        return self.total - self.bad


def load(
    workdir: Path, db_url: str, registry_url: str, lua: Path, seconds: int, conns: int, workers: int
) -> tuple[Phase, subprocess.Popen[bytes]]:
    """wrk against a fresh `crowsnest serve`; the server is left running for the caller."""
    port = free_port()
    proc = serve(workdir, port, db_url, registry_url, workers)
    try:
        asyncio.run(wait_up(port, "/readyz"))
        return Phase(*wrk(port, lua, seconds, conns)), proc
    except BaseException:
        proc.terminate()
        raise


def drain(db_url: str, limit: float) -> tuple[dict[str, int], float]:
    """Wait until nothing is pending or processing; the counts, and how long it took."""
    start = time.monotonic()
    while True:
        counts = inbox_counts(db_url)
        if not counts.get("pending") and not counts.get("processing"):
            return counts, time.monotonic() - start
        if time.monotonic() - start > limit:
            return counts, time.monotonic() - start
        time.sleep(1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)


def run_engine(
    engine: str,
    db_url: str,
    fresh: Any,
    workdir: Path,
    registry_url: str,
    lua: Path,
    args: argparse.Namespace,
    bare_rate: float,
) -> tuple[bool, float]:
    """The three phases on one engine; `fresh()` gives an empty database for each."""
    alone, proc = load(
        workdir, db_url, registry_url, lua, args.intake_seconds, args.connections, workers=0
    )
    stop(proc)
    stored = inbox_counts(db_url)
    print(
        f"{engine:10} intake alone ({args.intake_seconds} s, no workers): {alone.rate:7.0f} "
        f"events/s, ratio {alone.rate / bare_rate:4.2f} to bare, p99 {alone.p99:.1f} ms, "
        f"non-2xx {alone.bad}, stored {stored['rows']} rows for {alone.accepted} 202s"
    )
    ok = stored["rows"] >= alone.accepted and stored["keys"] == stored["rows"]

    db_url = fresh()
    deployed, proc = load(
        workdir, db_url, registry_url, lua, args.seconds, args.connections, workers=args.workers
    )
    try:
        at_end = inbox_counts(db_url)
        counts, took = drain(db_url, args.drain_limit)
    finally:
        stop(proc)
    processed_during = at_end.get("done", 0)
    print(
        f"{engine:10} as deployed ({args.seconds} s, {args.workers} workers): "
        f"{deployed.rate:7.0f} events/s, ratio {deployed.rate / bare_rate:4.2f} to bare, "
        f"p99 {deployed.p99:.1f} ms, non-2xx {deployed.bad}; processed meanwhile "
        f"{processed_during} ({processed_during / args.seconds:.0f}/s)"
    )
    done, failed = counts.get("done", 0), counts.get("failed", 0)
    left = counts["rows"] - done - failed
    drained = left == 0
    print(
        f"{engine:10} drain: {took:.0f} s more; {counts['rows']} stored ({counts['keys']} "
        f"distinct ids) for {deployed.accepted} 202s: {done} done, {failed} failed, "
        f"{left} left{'' if drained else ' (drain limit reached)'}"
    )
    ok &= drained and failed == 0 and counts["keys"] == counts["rows"] and done >= deployed.accepted
    return ok, alone.rate


def event_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio's event loop"
    return "uvloop"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--seconds",
        type=int,
        default=int(os.environ.get("BENCH_SECONDS", "60")),
        help="wrk's run for the bare handler and the deployed bot",
    )
    p.add_argument("--intake-seconds", type=int, default=15, help="the intake-alone run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument(
        "--drain-limit",
        type=float,
        default=1800,
        help="seconds the drain may take; PostgreSQL works ~100 events/s per replica",
    )
    p.add_argument("--no-postgres", action="store_true")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # minutes-long phases
    if not shutil.which("wrk"):
        print("wrk is not installed (make bench installs it)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="crowsnest-bench-"))
    registry = subprocess.Popen(
        [sys.executable, "-c", REGISTRY, str(ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pg = None
    try:
        assert registry.stdout is not None
        registry_url, digest = registry.stdout.readline().split()
        lua = workdir / "push.lua"
        lua.write_text(LUA.replace("DIGEST", digest).replace("RUN", f"r{os.getpid()}"))

        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)])
        try:
            asyncio.run(wait_up(bare_port, "/nothing"))
            bare_rate, _, _, bare_p99 = wrk(bare_port, lua, args.seconds, args.connections)
        finally:
            bare.terminate()
            bare.wait(10)
        print(
            f"bare aiohttp handler ({args.seconds} s, {event_loop()}): {bare_rate:7.0f} "
            f"req/s, p99 {bare_p99:.1f} ms"
        )

        counter = iter(range(1000))

        def fresh_sqlite() -> str:
            return f"sqlite+aiosqlite:///{workdir / f'bench-{next(counter)}.db'}"

        ok, sqlite_rate = run_engine(
            "sqlite", fresh_sqlite(), fresh_sqlite, workdir, registry_url, lua, args, bare_rate
        )
        ratio = sqlite_rate / bare_rate
        print(
            f"goal (issue 2) sqlite intake >= 2000 events/s: "
            f"{'met' if sqlite_rate >= 2000 else 'NOT met'}; ratio >= 0.4: "
            f"{'met' if ratio >= 0.4 else 'NOT met'} ({ratio:.2f})"
        )
        if not args.no_postgres:
            pg = server = start_postgres(workdir / "pg")

            def fresh_pg() -> str:  # `server`, not `pg`: that one may be None for the checker
                return server.create_database(f"bench{next(counter)}")

            pg_ok, _ = run_engine(
                "postgresql", fresh_pg(), fresh_pg, workdir, registry_url, lua, args, bare_rate
            )
            ok &= pg_ok
    finally:
        if registry.stdin:
            registry.stdin.close()
        registry.wait(10)
        if pg is not None:
            pg.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print("every acknowledged event stored once and processed: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
