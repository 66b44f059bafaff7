"""Real PostgreSQL and Docker Distribution registry processes for tests and scripts.

Each service runs on a free loopback port with its files under a work dir, is tracked by its
own PID (never found by name) and has an idempotent stop that is also registered with atexit,
so an interrupted run does not leave daemons behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

REGISTRY_BIN = "docker-registry"
SKOPEO_BIN = "skopeo"
PG_SUPERUSER = "postgres"
# Linux sun_path is 108 bytes; postgres appends "/.s.PGSQL.NNNNN" to the socket directory.
_MAX_SOCKET_PATH = 100
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# urllib honours *_proxy variables; loopback probes must never go through a proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceError(RuntimeError):
    """A service failed to start, stop or run a command; the message carries its output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry on a bind clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env_without(*prefixes: str) -> dict[str, str]:
    """The current environment minus variables that would silently reconfigure a child."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _is_root() -> bool:
    return os.geteuid() == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin, else wherever initdb is on PATH."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    found.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else -1, reverse=True)
    if found:
        return found[0]
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether uid (primary group gid) can reach path: pytest's tmp dirs are 0700 root."""
    for p in (path, *path.parents):
        st = p.stat()
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid == gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


@dataclass
class Postgres:
    """A throwaway cluster: scram passwords over TCP, trust on its private unix socket."""

    workdir: Path
    cluster_dir: Path  # data/, sock/, server.log
    port: int
    bin_dir: Path
    run_as: str | None  # "postgres" when we are root (initdb refuses to run as root)
    user: str = "bot"
    password: str = "bot"
    scratch: Path | None = None  # cluster_dir when it had to live outside workdir
    _closed: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def sock_dir(self) -> Path:
        return self.cluster_dir / "sock"

    @property
    def log_path(self) -> Path:
        return self.cluster_dir / "server.log"

    @property
    def pid(self) -> int | None:
        """The postmaster PID from postmaster.pid, or None when the cluster is down."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def url(self, database: str) -> str:
        """SQLAlchemy URL for the bot role, e.g. postgresql+asyncpg://bot:bot@127.0.0.1:P/db."""
        return f"postgresql+asyncpg://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        """Plain libpq/asyncpg DSN (no "+asyncpg") for the same database."""
        return self.url(database).replace("postgresql+asyncpg://", "postgresql://", 1)

    def _tool(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / tool), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        proc = subprocess.run(
            cmd,
            cwd=self.cluster_dir,
            env=_env_without("PG"),
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(
                f"{tool} {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}\n--- {self.log_path}:\n"
                f"{_tail(self.log_path)}"
            )
        return proc

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run sql as the superuser over the unix socket; return unaligned output."""
        return self._tool(
            "psql",
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.sock_dir),
            "-p",
            str(self.port),
            "-U",
            PG_SUPERUSER,
            "-d",
            database,
            "-c",
            sql,
        ).stdout.strip()

    def create_database(self, name: str) -> str:
        """Create database name owned by the bot role (no-op if it exists); return its url."""
        if not _IDENT.fullmatch(name):
            raise ValueError(f"database name must be a plain identifier: {name!r}")
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists:
            self.psql(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return self.url(name)

    def start(self) -> None:
        """Start the cluster (again, after stop) on the same port and data dir."""
        if self._closed:
            raise ServiceError("this Postgres was closed")
        if self.pid is not None and _alive(self.pid):
            return
        self._tool(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "30",
            "-s",
            "start",
        )

    def stop(self) -> None:
        """Stop at once (pg_ctl -m immediate), killing the postmaster by PID if that fails."""
        pid = self.pid
        if pid is None:
            return
        try:
            self._tool(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
                "-s",
                "stop",
                timeout=20,
            )
        except (ServiceError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def close(self) -> None:
        """Stop for good and delete a scratch cluster dir; safe to call twice (atexit too)."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        atexit.unregister(self.close)
        if self.scratch is not None:
            link = self.workdir / "pg"
            if link.is_symlink():
                link.unlink()
            with contextlib.suppress(OSError):  # keep the server log for post-mortems
                shutil.copyfile(self.log_path, self.workdir / "pg-server.log")
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_postgres(workdir: Path, *, database: str = "crowsnest") -> Postgres:
    """initdb a fresh cluster, start it on a free port, create the bot role and database.

    The cluster lives in workdir/pg. As root it runs as the postgres user; if that user cannot
    reach workdir (pytest tmp dirs are 0700) or the socket path would be too long, the cluster
    goes to a scratch dir under the system temp dir, workdir/pg becomes a symlink to it, and
    close() deletes it after copying the server log to workdir/pg-server.log.
    """
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        raise ServiceError("PostgreSQL initdb not found")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / "pg"
    if target.exists() or target.is_symlink():
        raise ServiceError(f"{target} already exists; use a fresh workdir")

    run_as: str | None = None
    uid, gid = os.geteuid(), os.getegid()
    if _is_root():
        pw = pwd.getpwnam(PG_SUPERUSER)
        run_as, uid, gid = PG_SUPERUSER, pw.pw_uid, pw.pw_gid
    sock_len = len(str(target / "sock" / ".s.PGSQL.65535"))
    scratch: Path | None = None
    if sock_len > _MAX_SOCKET_PATH or not _traversable_by(workdir, uid, gid):
        scratch = Path(tempfile.mkdtemp(prefix="crowsnest-pg-"))
        os.chown(scratch, uid, gid)
        target.symlink_to(scratch)
        cluster_dir = scratch
    else:
        target.mkdir(mode=0o700)
        os.chown(target, uid, gid)
        cluster_dir = target
    (cluster_dir / "sock").mkdir(mode=0o700)
    os.chown(cluster_dir / "sock", uid, gid)

    pg = Postgres(
        workdir=workdir,
        cluster_dir=cluster_dir,
        port=0,
        bin_dir=bin_dir,
        run_as=run_as,
        scratch=scratch,
    )
    atexit.register(pg.close)
    try:
        pwfile = cluster_dir / "pwfile"
        pwfile.write_text("postgres\n")
        os.chown(pwfile, uid, gid)
        pg._tool(
            "initdb",
            "-D",
            str(pg.data_dir),
            "-U",
            PG_SUPERUSER,
            "-E",
            "UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "--no-instructions",
        )
        pwfile.unlink()
        with (pg.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'crowsnest.conf'\n")
        _start_on_free_port(pg)
        pg.psql(f"CREATE ROLE \"{pg.user}\" LOGIN CREATEDB PASSWORD '{pg.password}'")
        pg.create_database(database)
    except BaseException:
        pg.close()
        raise
    return pg


def _start_on_free_port(pg: Postgres, attempts: int = 3) -> None:
    """Pick a port, write it into crowsnest.conf and start; retry if another process won it."""
    for attempt in range(attempts):
        pg.port = free_port()
        conf = pg.data_dir / "crowsnest.conf"
        conf.write_text(
            "listen_addresses = '127.0.0.1'\n"
            f"port = {pg.port}\n"
            f"unix_socket_directories = '{pg.sock_dir}'\n"
            # fsync off only: synchronous_commit=off would lose commits on an immediate stop.
            "fsync = off\n"
            "max_connections = 50\n"
        )
        conf.chmod(0o644)
        try:
            pg.start()
            return
        except ServiceError:
            if attempt == attempts - 1 or "already in use" not in _tail(pg.log_path, 10):
                raise


# --------------------------------------------------------------------------- registry


@dataclass
class Registry:
    """A running docker-registry (Docker Distribution 2.8) on loopback."""

    url: str  # "http://127.0.0.1:PORT"
    host: str  # "127.0.0.1:PORT", the part skopeo and image references use
    process: subprocess.Popen[bytes]
    workdir: Path
    config_path: Path
    log_path: Path
    notify_url: str | None = None
    auth: tuple[str, str] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after timeout; it takes ~2 s while a sink is retrying."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def bcrypt_hash(password: str, cost: int = 5) -> str:
    """A bcrypt hash the registry's htpasswd accepts; low cost because only tests use it."""
    try:
        import bcrypt

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode())
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated and gone in 3.13; fine on 3.11

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2**cost))


def _registry_config(
    workdir: Path, addr: str, notify_url: str | None, token: str, htpasswd: Path | None
) -> dict[str, object]:
    config: dict[str, object] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "registry-data")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": addr,
            "secret": "crowsnest-test-http-secret",
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        # Foreign layers (blobs the registry does not hold, fetched from their `urls`) are
        # accepted, as on registries that serve Windows bases: the bot must cope with them.
        "validation": {"manifests": {"urls": {"allow": ["^https?://"]}}},
    }
    if notify_url:
        config["notifications"] = {
            "events": {"includereferences": True},
            "endpoints": [
                {
                    "name": "crowsnest",
                    "url": notify_url,
                    "headers": {"Authorization": [f"Bearer {token}"]},
                    "timeout": "2s",
                    "threshold": 3,
                    "backoff": "1s",
                }
            ],
        }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "crowsnest-test", "path": str(htpasswd)}}
    return config


def _wait_registry(reg: Registry, deadline: float) -> bool:
    """Poll GET /v2/ until it answers (401 counts when auth is on); False if the process died."""
    while time.monotonic() < deadline:
        if reg.process.poll() is not None:
            return False
        try:
            with _DIRECT.open(f"{reg.url}/v2/", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except urllib.error.HTTPError as err:
            if err.code == 401 and reg.auth is not None:
                return True
        except OSError:
            pass
        time.sleep(0.02)
    raise ServiceError(f"registry not ready in time:\n{_tail(reg.log_path)}")


def start_registry(
    workdir: Path,
    notify_url: str | None,
    token: str = "test-token",
    auth: tuple[str, str] | None = None,
) -> Registry:
    """Start docker-registry with storage in workdir and one notification endpoint.

    Start the notification listener first: events sent before it accepts connections make
    the sink back off for a second. REGISTRY_* variables are dropped from the environment
    because the registry would let them override the config.
    """
    binary = shutil.which(REGISTRY_BIN)
    if binary is None:
        raise ServiceError("docker-registry not found")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd: Path | None = None
    if auth is not None:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(f"{auth[0]}:{bcrypt_hash(auth[1])}\n")
    config_path = workdir / "registry.yml"
    log_path = workdir / "registry.log"

    for _attempt in range(3):
        port = free_port()
        host = f"127.0.0.1:{port}"
        # JSON is valid YAML, so no YAML library is needed.
        config = _registry_config(workdir, host, notify_url, token, htpasswd)
        config_path.write_text(json.dumps(config, indent=2))
        log = log_path.open("ab")
        proc = subprocess.Popen(
            [binary, "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env_without("REGISTRY_"),
            cwd=workdir,
        )
        reg = Registry(
            url=f"http://{host}",
            host=host,
            process=proc,
            workdir=workdir,
            config_path=config_path,
            log_path=log_path,
            notify_url=notify_url,
            auth=auth,
            _log=log,
        )
        atexit.register(reg.stop)
        try:
            if _wait_registry(reg, time.monotonic() + 10):
                return reg
        except BaseException:
            reg.stop()
            raise
        reg.stop()
        if "address already in use" not in _tail(log_path, 5):
            break
    raise ServiceError(f"docker-registry exited at start:\n{_tail(log_path)}")


# --------------------------------------------------------------------------- skopeo

_private_dir: Path | None = None


def _skopeo_home() -> Path:
    """A per-process dir for skopeo's auth file (and its blob-info cache when not root)."""
    global _private_dir
    if _private_dir is None:
        _private_dir = Path(tempfile.mkdtemp(prefix="crowsnest-skopeo-"))
        (_private_dir / "auth.json").write_text('{"auths":{}}')
        atexit.register(shutil.rmtree, _private_dir, True)
    return _private_dir


def skopeo_push(
    layout: Path,
    tag: str,
    dest: str,
    *,
    all_platforms: bool = False,
    fmt: str | None = None,
    creds: tuple[str, str] | None = None,
) -> None:
    """skopeo copy oci:LAYOUT:TAG docker://DEST over plain http; raise with stderr on failure.

    dest is "HOST:PORT/repo:tag" (a "docker://" prefix is allowed). skopeo 1.9 has no flag or
    variable for the blob-info cache when run as root (it is always
    /var/lib/containers/cache), so blob events may differ between runs; assert on manifests.
    """
    layout = Path(layout).resolve()
    if ":" in str(layout):
        raise ValueError(f"skopeo cannot parse a layout path containing ':': {layout}")
    home = _skopeo_home()
    cmd = [SKOPEO_BIN]
    if not Path("/etc/containers/policy.json").exists():
        cmd.append("--insecure-policy")
    cmd += ["copy", "--quiet", "--dest-tls-verify=false"]
    if all_platforms:
        cmd.append("--all")
    if fmt:
        cmd += ["--format", fmt]
    if creds:
        cmd += ["--dest-creds", f"{creds[0]}:{creds[1]}"]
    else:
        cmd += ["--dest-authfile", str(home / "auth.json")]
    cmd += [f"oci:{layout}:{tag}", dest if dest.startswith("docker://") else f"docker://{dest}"]
    env = _env_without("REGISTRY_AUTH_FILE")
    env["XDG_DATA_HOME"] = str(home)  # honoured for the blob-info cache only when not root
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        secret = f"{creds[0]}:{creds[1]}" if creds else None
        shown = ["USER:***" if c == secret else c for c in cmd]
        raise ServiceError(f"{' '.join(shown)} failed ({proc.returncode}):\n{proc.stderr}")


# --------------------------------------------------------------------------- discovery


def have_services(tools: Sequence[str] = ("docker-registry", "skopeo", "initdb")) -> str | None:
    """None when the service binaries exist, else why not (tests skip only if allowed to)."""
    missing: list[str] = []
    for tool in tools:
        if tool in ("initdb", "pg_ctl", "psql"):
            bin_dir = _pg_bin_dir()
            if bin_dir is None or not (bin_dir / tool).exists():
                missing.append(tool)
        elif shutil.which(tool) is None:
            missing.append(tool)
    if "initdb" in tools and _is_root():
        if shutil.which("runuser") is None:
            missing.append("runuser (initdb cannot run as root)")
        try:
            pwd.getpwnam(PG_SUPERUSER)
        except KeyError:
            missing.append(f"user {PG_SUPERUSER!r} (initdb cannot run as root)")
    return f"missing: {', '.join(missing)}" if missing else None
