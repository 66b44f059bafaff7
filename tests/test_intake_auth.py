"""Who may file events: every intake endpoint needs credentials, unless its section says
`allow_unauthenticated = true` (and then every start warns about it).

The admission webhook and the Falco endpoint are always served, so they always need a token (or,
for admission, a client CA); each configured registry needs its webhook_secret. A config that
leaves one open fails `check-config` and `serve` refuses it; an app built from such settings
anyway (in process) refuses every request to that endpoint, so an open door is never the default.
"""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import handlers
from bot.app import Runtime, build, web_app
from bot.config import Settings
from bot.store import inbox
from handlers.cli import main
from tests.conftest import (
    ADMISSION_AUTH,
    FALCO_AUTH,
    FIXTURES,
    make_settings,
)
from tests.support.serve import REPO_ROOT, serve, wait_ready
from tests.support.services import free_port

REVIEW = json.loads((FIXTURES / "kubernetes/kube-review-deployment-create.json").read_text())
FALCO_ALERT = {
    "rule": "Terminal shell in container",
    "priority": "Critical",
    "output": "A shell was spawned",
    "time": "2024-05-01T12:00:00.000000000Z",
    "output_fields": {"k8s.ns.name": "payments", "k8s.pod.name": "web-7d9f8b6c5d-x2x9z"},
}


def privileged_review(uid: str) -> dict[str, Any]:
    review: dict[str, Any] = copy.deepcopy(REVIEW)
    review["request"]["uid"] = uid
    review["request"]["namespace"] = "payments"
    spec = review["request"]["object"]["spec"]["template"]["spec"]
    spec["containers"][0]["securityContext"] = {"privileged": True}
    return review


async def stored_rows(runtime: Runtime) -> int:
    async with runtime.core.db.transaction() as s:
        return sum((await inbox.counts(s)).values())


async def until_stored(runtime: Runtime, rows: int) -> None:
    for _ in range(200):
        if await stored_rows(runtime) >= rows:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never {rows} stored events")


@pytest.fixture
async def start(aiohttp_client: Callable[..., Any]) -> Callable[[Settings], Any]:
    async def started(settings: Settings) -> tuple[Any, Runtime]:
        runtime = build(settings, handlers.EDGES)
        return await aiohttp_client(web_app(runtime)), runtime

    return started


# --------------------------------------------------------------------------- refused, nothing kept

WRONG = [
    pytest.param({}, id="no-authorization"),
    pytest.param({"Authorization": "Bearer wrong"}, id="wrong-token"),
    pytest.param({"Authorization": "test-admission-token"}, id="token-without-bearer"),
    pytest.param({"Authorization": "Bearer test-falco-token"}, id="the-other-endpoints-token"),
]


@pytest.mark.parametrize("headers", WRONG)
async def test_unauthenticated_admission_review_is_401_and_stores_nothing(
    start: Any, sqlite_url: str, headers: dict[str, str]
) -> None:
    client, runtime = await start(make_settings(sqlite_url, worker={"concurrency": 0}))
    for n in range(3):
        resp = await client.post(
            "/hooks/k8s/admission", json=privileged_review(f"forged-{n}"), headers=headers
        )
        assert resp.status == 401 and "error" in await resp.json()
    # The same review with the token is heard and stored: the only row there is.
    ok = await client.post(
        "/hooks/k8s/admission", json=privileged_review("real"), headers=ADMISSION_AUTH
    )
    assert ok.status == 200 and (await ok.json())["response"]["uid"] == "real"
    await until_stored(runtime, 1)
    await asyncio.sleep(0.1)
    assert await stored_rows(runtime) == 1


@pytest.mark.parametrize("headers", WRONG)
async def test_unauthenticated_falco_alert_is_401_and_stores_nothing(
    start: Any, sqlite_url: str, headers: dict[str, str]
) -> None:
    client, runtime = await start(make_settings(sqlite_url, worker={"concurrency": 0}))
    if headers.get("Authorization") == "Bearer test-falco-token":
        headers = {"Authorization": "Bearer test-admission-token"}
    for n in range(3):
        alert = {**FALCO_ALERT, "output": f"forged {n}"}
        resp = await client.post("/hooks/falco", json=alert, headers=headers)
        assert resp.status == 401 and "error" in await resp.json()
    assert await stored_rows(runtime) == 0
    ok = await client.post("/hooks/falco", json=FALCO_ALERT, headers=FALCO_AUTH)
    assert ok.status == 202
    assert await stored_rows(runtime) == 1


async def test_an_app_built_without_intake_credentials_refuses_reviews_and_alerts(
    start: Any, sqlite_url: str
) -> None:
    """Settings that `serve` would refuse still fail closed when built in process."""
    settings = make_settings(
        sqlite_url,
        admission={"token": None},
        falco={"token": None},
        registries=[{"name": "local", "kind": "distribution", "url": "http://127.0.0.1:9"}],
        worker={"concurrency": 0},
    )
    client, runtime = await start(settings)
    resp = await client.post("/hooks/k8s/admission", json=privileged_review("u"))
    assert resp.status == 401
    assert "no [admission] token" in (await resp.json())["error"]
    resp = await client.post("/hooks/falco", json=FALCO_ALERT, headers=FALCO_AUTH)
    assert resp.status == 401
    resp = await client.post("/hooks/registry/local", json={"events": []})
    assert resp.status == 401
    assert await stored_rows(runtime) == 0


# --------------------------------------------------------------------------- check-config

GOOD = """
[database]
url = "sqlite+aiosqlite:///{db}"
[slack]
fallback_channel = "#sec"
[admission]
token = "admission-secret"
[falco]
token = "falco-secret"
[[registries]]
name = "local"
kind = "distribution"
url = "http://127.0.0.1:9"
webhook_secret = "registry-secret"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "crowsnest.toml"
    path.write_text(GOOD.format(db=tmp_path / "bot.db"))
    return path


def test_a_config_with_every_endpoint_authenticated_passes_check_config(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "warning" not in out


@pytest.mark.parametrize(
    ("removed", "line"),
    [
        ('token = "admission-secret"\n', "admission.token: not set, so /hooks/k8s/admission"),
        ('token = "falco-secret"\n', "falco.token: not set, so /hooks/falco"),
        (
            'webhook_secret = "registry-secret"\n',
            "registries.0.webhook_secret: not set for registry 'local'",
        ),
    ],
    ids=["admission", "falco", "registry"],
)
def test_check_config_fails_for_each_endpoint_left_open(
    config: Path, capsys: pytest.CaptureFixture[str], removed: str, line: str
) -> None:
    config.write_text(config.read_text().replace(removed, ""))
    assert main(["check-config", "--config", str(config)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), lines
    assert "allow_unauthenticated = true" in lines[0]


def test_check_config_of_the_defaults_names_both_endpoints_always_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./crowsnest.toml
    monkeypatch.delenv("CROWSNEST_CONFIG", raising=False)
    assert main(["check-config"]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["admission.token", "falco.token"]


def test_token_files_are_credentials_too(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "adm").write_text("from-a-file\n")
    (tmp_path / "falco").write_text("also-from-a-file\n")
    text = config.read_text()
    text = text.replace('token = "admission-secret"', f'token_file = "{tmp_path / "adm"}"')
    text = text.replace('token = "falco-secret"', f'token_file = "{tmp_path / "falco"}"')
    config.write_text(text)
    assert main(["check-config", "--config", str(config)]) == 0, capsys.readouterr().out


def test_client_ca_needs_tls_and_then_counts_as_admission_credentials(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    text = config.read_text().replace('token = "admission-secret"', f'client_ca = "{ca}"')
    config.write_text(text)
    assert main(["check-config", "--config", str(config)]) == 2
    assert capsys.readouterr().out.startswith("admission: client_ca (mutual TLS) needs tls_cert")
    config.write_text(
        text.replace("[admission]\n", f'[admission]\ntls_cert = "{ca}"\ntls_key = "{ca}"\n')
    )
    assert main(["check-config", "--config", str(config)]) == 0, capsys.readouterr().out


def test_allow_unauthenticated_passes_check_config_with_a_warning_per_endpoint(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config.read_text()
    text = text.replace('token = "admission-secret"', "allow_unauthenticated = true")
    text = text.replace('token = "falco-secret"', "allow_unauthenticated = true")
    text = text.replace('webhook_secret = "registry-secret"', "allow_unauthenticated = true")
    config.write_text(text)
    assert main(["check-config", "--config", str(config)]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert [w.split()[1] for w in warnings] == [
        "/hooks/k8s/admission",
        "/hooks/falco",
        "/hooks/registry/local",
    ]


# --------------------------------------------------------------------------- the escape hatch


async def test_allow_unauthenticated_serves_each_endpoint_open(start: Any, sqlite_url: str) -> None:
    settings = make_settings(
        sqlite_url,
        admission={"token": None, "allow_unauthenticated": True},
        falco={"token": None, "allow_unauthenticated": True},
        registries=[
            {
                "name": "local",
                "kind": "distribution",
                "url": "http://127.0.0.1:9",
                "allow_unauthenticated": True,
            }
        ],
        worker={"concurrency": 0},
    )
    client, runtime = await start(settings)
    resp = await client.post("/hooks/k8s/admission", json=privileged_review("open"))
    assert resp.status == 200 and (await resp.json())["response"]["uid"] == "open"
    assert (await client.post("/hooks/falco", json=FALCO_ALERT)).status == 202
    event = {
        "id": "ev-1",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "repository": "team-a/app",
            "digest": "sha256:" + "a" * 64,
            "tag": "1.0",
        },
    }
    resp = await client.post("/hooks/registry/local", json={"events": [event]})
    assert resp.status == 202
    await until_stored(runtime, 3)


async def test_a_token_still_binds_when_allow_unauthenticated_is_also_set(
    start: Any, sqlite_url: str
) -> None:
    settings = make_settings(
        sqlite_url,
        admission={"allow_unauthenticated": True},
        falco={"allow_unauthenticated": True},
        worker={"concurrency": 0},
    )
    client, _ = await start(settings)
    assert (await client.post("/hooks/k8s/admission", json=privileged_review("u"))).status == 401
    assert (await client.post("/hooks/falco", json=FALCO_ALERT)).status == 401


# --------------------------------------------------------------------------- serve


def test_serve_refuses_to_start_with_an_endpoint_left_open(tmp_path: Path) -> None:
    config = tmp_path / "crowsnest.toml"
    port = free_port()
    config.write_text(
        f"[server]\nport = {port}\n"
        + GOOD.format(db=tmp_path / "bot.db").replace('token = "falco-secret"\n', "")
    )
    done = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "serve", "--config", str(config)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("falco.token: not set"), lines
    assert lines[-1] == "serve: refusing to start with unauthenticated intake"
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "bot.db").exists()  # refused before touching anything


async def test_serve_with_allow_unauthenticated_starts_warns_and_answers_unauthenticated(
    tmp_path: Path,
) -> None:
    config, log = tmp_path / "crowsnest.toml", tmp_path / "serve.log"
    port = free_port()
    text = f"[server]\nport = {port}\n" + GOOD.format(db=tmp_path / "bot.db")
    text = text.replace('token = "admission-secret"', "allow_unauthenticated = true")
    text = text.replace('token = "falco-secret"', "allow_unauthenticated = true")
    config.write_text(text)
    proc = serve(config, log)
    try:
        await wait_ready(port, proc, log)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/hooks/k8s/admission"
            async with http.post(url, json=privileged_review("open")) as resp:
                assert resp.status == 200
                assert (await resp.json())["response"]["uid"] == "open"
            async with http.post(f"http://127.0.0.1:{port}/hooks/falco", json=FALCO_ALERT) as r:
                assert r.status == 202
    finally:
        proc.terminate()
        proc.wait(20)
    warnings = [
        json.loads(line)["msg"]
        for line in log.read_text().splitlines()
        if line.startswith("{") and json.loads(line)["level"] == "warning"
    ]
    assert any(w.startswith("/hooks/k8s/admission ([admission] allow") for w in warnings)
    assert any(w.startswith("/hooks/falco ([falco] allow") for w in warnings)
    assert not any("/hooks/registry/local" in w for w in warnings)  # that one has its secret


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _issue(directory: Path, name: str, ca: str | None, san: str | None = None) -> None:
    """`name`.key and `name`.crt: self-signed when `ca` is None, else signed by `ca`."""
    key, crt = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    if ca is None:
        _openssl(
            "req", "-x509", "-new", "-key", key, "-out", crt, "-days", "1", "-subj", f"/CN={name}"
        )
        return
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", directory / f"{ca}.crt", "-CAkey",
        directory / f"{ca}.key", "-CAcreateserial", "-out", crt, "-days", "1", "-extfile", ext,
    )  # fmt: skip


async def _wait_https(port: int, context: ssl.SSLContext, proc: Any, log: Path) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                async with http.get(f"https://127.0.0.1:{port}/readyz", ssl=context) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"not ready: {log.read_text()[-2000:]}")


async def test_admission_over_mutual_tls_needs_a_client_certificate_from_client_ca(
    tmp_path: Path,
) -> None:
    for name, ca, san in (
        ("ca", None, None),
        ("rogue-ca", None, None),
        ("server", "ca", "IP:127.0.0.1"),
        ("apiserver", "ca", None),
        ("intruder", "rogue-ca", None),
    ):
        _issue(tmp_path, name, ca, san)
    config, log = tmp_path / "crowsnest.toml", tmp_path / "serve.log"
    port = free_port()
    text = f"[server]\nport = {port}\n" + GOOD.format(db=tmp_path / "bot.db")
    text = text.replace(
        'token = "admission-secret"',
        f'tls_cert = "{tmp_path / "server.crt"}"\ntls_key = "{tmp_path / "server.key"}"\n'
        f'client_ca = "{tmp_path / "ca.crt"}"',
    )
    config.write_text(text)

    def client(name: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=tmp_path / "ca.crt")
        if name is not None:
            context.load_cert_chain(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
        return context

    proc = serve(config, log)
    url = f"https://127.0.0.1:{port}/hooks/k8s/admission"
    try:
        await _wait_https(port, client(None), proc, log)  # probes need no certificate
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=privileged_review("m"), ssl=client("apiserver")) as r:
                assert r.status == 200 and (await r.json())["response"]["uid"] == "m"
            async with http.post(url, json=privileged_review("n"), ssl=client(None)) as r:
                assert r.status == 401
                assert "client certificate" in (await r.json())["error"]
            with pytest.raises(aiohttp.ClientError):
                async with http.post(url, json=privileged_review("o"), ssl=client("intruder")) as r:
                    await r.read()
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_example_config_names_each_credential_to_set_and_passes_once_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = (REPO_ROOT / "config.example.toml").read_text()
    config = tmp_path / "crowsnest.toml"
    config.write_text(example)
    assert main(["check-config", "--config", str(config)]) == 2
    named = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert named == ["admission.token", "falco.token", "registries.0.webhook_secret"]
    for key, path in (
        ("token_file", "/run/secrets/falco-token"),
        ("token_file", "/run/secrets/admission-token"),
        ("webhook_secret_file", "/run/secrets/registry-webhook"),
    ):
        secret = tmp_path / path.rsplit("/", 1)[1]
        secret.write_text("s3cret\n")
        assert f'# {key} = "{path}"' in example
        example = example.replace(f'# {key} = "{path}"', f'{key} = "{secret}"')
    config.write_text(example)
    assert main(["check-config", "--config", str(config)]) == 0, capsys.readouterr().out
