"""Layer checks: miners, credentials, end-of-life base OS and stale images."""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.checks.files import (
    LayerFacts,
    LayerPolicy,
    eol_base_os,
    load_eol_table,
    mask,
    miner_in_layers,
    miner_name,
    run_layer_checks,
    secret_in_layers,
    stale_image,
)
from bot.images.facts import parse_created
from bot.images.layers import LayerRecord, read_layer
from bot.model.findings import Severity
from tests.support.oci import DEFAULT_FILES, build_layer_tar

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
AWS_KEY_ID = "AKIA" + "Q3EGRTZ7NKWX2VBL"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYz8Qw3Lk9Tz"
ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 100


def layer(files: Mapping[str, bytes]) -> LayerRecord:
    return read_layer(gzip.compress(build_layer_tar(files), mtime=0))


def facts(
    *files: Mapping[str, bytes], created: datetime | None = None, now: datetime = NOW
) -> LayerFacts:
    return LayerFacts.from_records([layer(f) for f in files], created, now)


def os_release(distro: str, version: str, name: str = "") -> dict[str, bytes]:
    text = f'NAME="{name or distro}"\nID={distro}\nVERSION_ID="{version}"\n'
    return {"etc/os-release": text.encode()}


# --- miner-in-layers ---------------------------------------------------------------------------


def test_xmrig_deleted_in_a_later_layer_is_still_reported() -> None:
    f = facts(
        DEFAULT_FILES,
        {"usr/local/bin/xmrig": ELF},
        {"usr/local/bin/.wh.xmrig": b""},
    )
    assert "usr/local/bin/xmrig" not in f.filesystem.present
    [finding] = miner_in_layers(f)
    assert finding.check_id == "miner-in-layers"
    assert finding.severity is Severity.CRITICAL
    assert "`/usr/local/bin/xmrig`" in finding.detail
    assert "xmrig miner" in finding.detail
    assert "in layer 2 of 3, deleted in layer 3, still in the image history" in finding.detail
    assert finding.title and finding.remediation


def test_miner_strings_in_an_executable_are_reported() -> None:
    script = b"#!/bin/sh\nexec ./kworker -o stratum+tcp://pool.example:3333 -u wallet\n"
    [finding] = miner_in_layers(facts(DEFAULT_FILES, {"opt/app/bin/start": script}))
    assert "`/opt/app/bin/start`" in finding.detail
    assert "stratum+tcp://" in finding.detail
    assert "in layer 2 of 2" in finding.detail and "deleted" not in finding.detail


def test_miner_config_is_reported() -> None:
    config = json.dumps(
        {"donate-level": 1, "pools": [{"url": "stratum+ssl://pool.example:443", "user": "x"}]}
    ).encode()
    [finding] = miner_in_layers(facts(DEFAULT_FILES, {"opt/.cache/config.json": config}))
    assert "miner pool configuration" in finding.detail


def test_one_miner_finding_lists_every_path() -> None:
    [finding] = miner_in_layers(
        facts({"tmp/kinsing": ELF, "tmp/kdevtmpfsi": ELF, "opt/t-rex-0.26.8-linux.tar.gz": b"x"})
    )
    for path in ("tmp/kinsing", "tmp/kdevtmpfsi", "opt/t-rex-0.26.8-linux.tar.gz"):
        assert f"`/{path}`" in finding.detail


def test_ordinary_image_has_no_miner() -> None:
    app_config = json.dumps({"server": {"url": "https://api.example"}}).encode()
    f = facts(
        DEFAULT_FILES,
        {
            "usr/bin/python3": ELF,
            "usr/bin/entry.sh": b"#!/bin/sh\nexec python3 -m app --random-seed 4\n",
            "app/config.json": app_config,
            "usr/lib/randomx-docs/README": b"",  # a directory name, not a miner
        },
    )
    assert miner_in_layers(f) == []


@pytest.mark.parametrize(
    ("name", "miner"),
    [
        ("xmrig", "xmrig"),
        ("XMRig.exe", "xmrig"),
        ("xmrig-6.21.0-linux-static-x64.tar.gz", "xmrig"),
        ("xmr-stak-rx", "xmr-stak-rx"),
        ("t-rex", "t-rex"),
        ("lolMiner", "lolminer"),
        ("python3", None),
        ("miner.py", None),
        ("xmrigger", None),
    ],
)
def test_miner_names(name: str, miner: str | None) -> None:
    assert miner_name(name) == miner


# --- secret-in-layers --------------------------------------------------------------------------


def test_aws_credentials_in_lower_layer_reported_masked() -> None:
    creds = (
        f"[default]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
    ).encode()
    f = facts(DEFAULT_FILES, {"root/.aws/credentials": creds}, {"root/.aws/.wh.credentials": b""})
    [finding] = secret_in_layers(f)
    assert finding.check_id == "secret-in-layers"
    assert finding.severity is Severity.CRITICAL
    assert finding.package == "root/.aws/credentials"
    assert "`/root/.aws/credentials`" in finding.detail
    assert "AKIA…(20 chars)" in finding.detail
    assert "wJal…(40 chars)" in finding.detail
    assert "in layer 2 of 3, deleted in layer 3, still in the image history" in finding.detail
    text = finding.title + finding.detail + finding.remediation
    assert AWS_KEY_ID not in text and AWS_SECRET not in text
    assert AWS_KEY_ID[4:] not in text and AWS_SECRET[4:12] not in text


def test_aws_documentation_example_key_is_not_reported() -> None:
    creds = b"[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
    assert secret_in_layers(facts({"root/.aws/credentials": creds})) == []


def test_private_keys() -> None:
    pem = b"-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n"
    [finding] = secret_in_layers(facts({"app/certs/server.pem": pem}))
    assert finding.severity is Severity.CRITICAL
    assert finding.title == "Private key in the image layers"
    assert "RSA private key" in finding.detail and "MIIEow" not in finding.detail


def test_passphrase_protected_keys_are_high() -> None:
    blob = b"openssh-key-v1\0" + len(b"aes256-ctr").to_bytes(4, "big") + b"aes256-ctr" + b"\0" * 30
    body = base64.b64encode(blob)
    key = b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + body + b"\n-----END OPENSSH PRIVATE KEY-----\n"
    pkcs8 = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----\n"
    findings = secret_in_layers(facts({"home/dev/.ssh/id_ed25519": key, "srv/tls.key": pkcs8}))
    assert [f.severity for f in findings] == [Severity.HIGH, Severity.HIGH]
    assert "passphrase-protected OPENSSH private key" in findings[0].detail


def test_unencrypted_openssh_key_is_critical() -> None:
    blob = b"openssh-key-v1\0" + (4).to_bytes(4, "big") + b"none" + b"\0" * 30
    key = (
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
        + base64.b64encode(blob)
        + b"\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    [finding] = secret_in_layers(facts({"root/.ssh/id_rsa": key}))
    assert finding.severity is Severity.CRITICAL


def test_certificates_are_not_secrets() -> None:
    cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert secret_in_layers(facts({"etc/ssl/certs/ca.pem": cert})) == []


@pytest.mark.parametrize(
    ("path", "content", "shown"),
    [
        (
            "home/app/.npmrc",
            b"//registry.npmjs.org/:_authToken=npm_Q3EGRTZ7NKWX2VBLabcdefghij0123456789\n",
            "npm_…(40 chars)",
        ),
        (
            "root/.git-credentials",
            b"https://ci-bot:ghp_Q3EGRTZ7NKWX2VBLabcd@github.com\n",
            "git credential for github.com",
        ),
        (
            "root/.pypirc",
            b"[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmcCJGQ\n",
            "PyPI password pypi…(24 chars)",
        ),
        (
            "root/.docker/config.json",
            json.dumps(
                {"auths": {"ghcr.io": {"auth": base64.b64encode(b"u:p4ssw0rd-long-one").decode()}}}
            ).encode(),
            "registry credential for ghcr.io",
        ),
    ],
)
def test_credential_files_are_high(path: str, content: bytes, shown: str) -> None:
    [finding] = secret_in_layers(facts({path: content}))
    assert finding.severity is Severity.HIGH
    assert finding.title == "Credentials in the image layers"
    assert shown in finding.detail
    assert "still in the image history" not in finding.detail  # nothing deleted it


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("home/app/.npmrc", b"//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n"),
        ("root/.docker/config.json", b'{"credsStore": "desktop", "auths": {"ghcr.io": {}}}'),
        ("root/.pypirc", b"[pypi]\nusername = __token__\n"),
    ],
)
def test_credential_files_without_credentials(path: str, content: bytes) -> None:
    assert secret_in_layers(facts({path: content})) == []


def test_overwritten_credential_is_still_reported() -> None:
    f = facts(
        {"home/app/.npmrc": b"_authToken=npm_Q3EGRTZ7NKWX2VBLabcdefghij0123456789\n"},
        {"home/app/.npmrc": b"registry=https://registry.npmjs.org/\n"},
    )
    [finding] = secret_in_layers(f)
    assert "replaced in layer 2, the old content still in the image history" in finding.detail


def test_mask() -> None:
    assert mask("AKIAQ3EGRTZ7NKWX2VBL") == "AKIA…(20 chars)"
    assert mask("hunter2") == "…(7 chars)"


# --- eol-base-os -------------------------------------------------------------------------------


def test_alpine_3_12_is_end_of_life() -> None:
    [finding] = eol_base_os(facts(os_release("alpine", "3.12.0", "Alpine Linux")))
    assert finding.check_id == "eol-base-os"
    assert finding.severity is Severity.HIGH
    assert "Alpine Linux 3.12" in finding.title
    assert "2022-05-01" in finding.detail and "endoflife.date" in finding.detail
    assert "3.22" in finding.remediation  # a supported release to move to


def test_debian_12_is_supported() -> None:
    assert eol_base_os(facts(os_release("debian", "12"))) == []


def test_debian_11_via_symlinked_os_release_is_end_of_life() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n'
        info = tarfile.TarInfo("usr/lib/os-release")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("etc/os-release")
        link.type, link.linkname = tarfile.SYMTYPE, "../usr/lib/os-release"
        t.addfile(link)
    f = LayerFacts.from_records([read_layer(buf.getvalue())], None, NOW)
    [finding] = eol_base_os(f)
    assert finding.severity is Severity.HIGH and "2026-08-31" in finding.detail


def test_within_90_days_of_end_of_life_is_medium() -> None:
    [finding] = eol_base_os(
        facts(os_release("alpine", "3.22.1"), now=datetime(2027, 3, 1, tzinfo=UTC))
    )
    assert finding.severity is Severity.MEDIUM
    assert "in 61 days" in finding.detail


@pytest.mark.parametrize(
    ("distro", "version", "name", "severity"),
    [
        ("ubuntu", "18.04", "Ubuntu", Severity.HIGH),
        ("ubuntu", "24.04", "Ubuntu", None),
        ("rhel", "7.9", "Red Hat Enterprise Linux", Severity.HIGH),
        ("rhel", "9.4", "Red Hat Enterprise Linux", None),
        ("amzn", "2", "Amazon Linux", Severity.HIGH),
        ("amzn", "2023", "Amazon Linux", None),
        ("centos", "7", "CentOS Linux", Severity.HIGH),
        ("centos", "9", "CentOS Stream", None),
        ("alpine", "3.21.3", "Alpine Linux", Severity.HIGH),
    ],
)
def test_eol_by_distro(distro: str, version: str, name: str, severity: Severity | None) -> None:
    found = eol_base_os(facts(os_release(distro, version, name)))
    assert [f.severity for f in found] == ([severity] if severity else [])


def test_unknown_distro_gives_no_finding() -> None:
    assert eol_base_os(facts(os_release("gentoo", "2.15"))) == []
    assert eol_base_os(facts(os_release("alpine", "9.99.0"))) == []
    assert eol_base_os(facts(os_release("alpine", "3.21_alpha20240807"))) == []
    assert eol_base_os(facts({"app/main.py": b"print()"})) == []


def test_fallback_release_file() -> None:
    [finding] = eol_base_os(facts({"etc/alpine-release": b"3.12.12\n"}))
    assert finding.severity is Severity.HIGH


def test_eol_table() -> None:
    table = load_eol_table()
    assert table.as_of == date(2026, 12, 1)
    assert table.source.startswith("endoflife.date, checked 2026-12-01")
    assert all(url.startswith("https://endoflife.date/") for url in table.urls)
    expected = {
        ("alpine", "3.12"): "2022-05-01",
        ("alpine", "3.19"): "2025-11-01",
        ("alpine", "3.20"): "2026-04-01",
        ("alpine", "3.21"): "2026-11-01",
        ("alpine", "3.22"): "2027-05-01",
        ("debian", "10"): "2024-06-30",
        ("debian", "11"): "2026-08-31",
        ("debian", "12"): "2028-06-30",
        ("debian", "13"): "2030-06-30",
        ("ubuntu", "18.04"): "2023-05-31",
        ("ubuntu", "20.04"): "2025-05-31",
        ("ubuntu", "22.04"): "2027-06-01",
        ("ubuntu", "24.04"): "2029-05-31",
        ("centos", "7"): "2024-06-30",
        ("centos", "8"): "2021-12-31",
        ("amzn", "2"): "2026-06-30",
        ("amzn", "2023"): "2029-06-30",
        ("rhel", "7"): "2024-06-30",
        ("rhel", "8"): "2029-05-31",
        ("rhel", "9"): "2032-05-31",
    }
    for (distro, version), eol in expected.items():
        assert table.distros[distro].releases[version].eol.isoformat() == eol, (distro, version)


# --- stale-image -------------------------------------------------------------------------------


def test_image_created_400_days_ago_is_stale() -> None:
    [finding] = stale_image(facts(DEFAULT_FILES, created=NOW - timedelta(days=400)))
    assert finding.check_id == "stale-image"
    assert finding.severity is Severity.MEDIUM
    assert "400 days ago" in finding.detail


def test_image_created_200_days_ago_is_a_little_stale() -> None:
    [finding] = stale_image(facts(DEFAULT_FILES, created=NOW - timedelta(days=200)))
    assert finding.severity is Severity.LOW


@pytest.mark.parametrize(
    "created",
    [None, NOW - timedelta(days=100), datetime(1970, 1, 1, tzinfo=UTC), NOW + timedelta(days=3)],
)
def test_fresh_unknown_or_placeholder_created_is_not_stale(created: datetime | None) -> None:
    assert stale_image(facts(DEFAULT_FILES, created=created)) == []


def test_max_age_is_a_parameter() -> None:
    f = facts(DEFAULT_FILES, created=NOW - timedelta(days=40))
    assert stale_image(f) == []
    assert [x.severity for x in stale_image(f, max_age_days=30)] == [Severity.LOW]


def test_parse_created() -> None:
    assert parse_created("2024-01-01T00:00:00.123456789Z") == datetime(
        2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC
    )
    assert parse_created("2024-01-01T02:00:00+02:00") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_created("") is None
    assert parse_created("yesterday") is None


# --- all together ------------------------------------------------------------------------------


def test_run_layer_checks() -> None:
    f = facts(
        os_release("alpine", "3.12.0"),
        {"usr/bin/xmrig": ELF, "root/.git-credentials": b"https://u:tok3n-abcdefgh@git.example\n"},
        created=NOW - timedelta(days=400),
    )
    ids = sorted(x.check_id for x in run_layer_checks(f))
    assert ids == ["eol-base-os", "miner-in-layers", "secret-in-layers", "stale-image"]
    policy = LayerPolicy(max_age_days=1000, disabled=frozenset({"miner-in-layers"}))
    assert sorted(x.check_id for x in run_layer_checks(f, policy)) == [
        "eol-base-os",
        "secret-in-layers",
    ]
