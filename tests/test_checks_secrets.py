"""`secret-in-config`: credentials baked into env, labels, entrypoint and cmd are reported, masked.

Every token here is fake. They are built from pieces so that secret scanners reading this file
do not take them for leaked credentials; the check sees them whole.
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.checks.base import HygienePolicy
from bot.checks.secrets import CHECK_ID, entropy, mask, redact, secret_in_config
from bot.images.facts import ImageFacts, PlatformConfig
from bot.model.findings import Finding, Severity

POLICY = HygienePolicy()
INDEX = "sha256:" + "1" * 64

GITHUB = "ghp" + "_" + "Zx81bQ4TnV0sL3kW9yR2mJ6pH5cD7fA1eG8u"
GITHUB_PAT = "github" + "_pat_" + "11ABCDEFG0123456789abc_" + "Qw3rTy7uI0oP4aS8dF2gH6jK" * 2
GITLAB = "glpat" + "-" + "Xq7vR2mN9bT4kL8wZ3yP"
SLACK_BOT = "xoxb" + "-" + "1234567890123-2345678901234-aBcDeFgHiJkLmNoPqRsTuVwX"
SLACK_APP = "xapp" + "-1-" + "A0123BCDE4F-5678901234567-0a1b2c3d4e5f6a7b8c9d"
SLACK_HOOK = (
    "https://hooks.slack.com/services/" + "T0ABC1DEF/B0GHI2JKL/" + "mN3oP4qR5sT6uV7wX8yZ9aB0"
)
GOOGLE = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
STRIPE = "sk" + "_live_" + "51Hq2kLmN3pQ4rS5tU6vW7xY8z"
NPM = "npm" + "_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
AWS_ID = "AKIA" + "Z7QW3ERT5YUI8OPA"
AWS_SECRET = "9dJ3kL0pQ2rS4tU6vW8x" + "Y0zA1bC3dE5fG7hI9jK1"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH " + "PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDl0mHq8FCsbX5DUjjm0WFXmkzkoUj8JCtqGoqOYoTSqQAAAJgK1nQWCtZ0\n"
    "-----END OPENSSH " + "PRIVATE KEY-----"
)


def platform(name: str = "linux/amd64", **config: Any) -> PlatformConfig:
    return PlatformConfig(name, "sha256:" + str(len(name) % 10) * 64, **config)


def image(*platforms: PlatformConfig) -> ImageFacts:
    return ImageFacts(
        registry="harbor",
        repository="team-a/payments-api",
        digest=INDEX,
        tag="2.4.1",
        media_type="application/vnd.oci.image.index.v1+json",
        platforms=platforms or (platform(),),
    )


def check(**config: Any) -> list[Finding]:
    return list(secret_in_config(image(platform(**config)), POLICY))


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def everything_shown(f: Finding) -> str:
    return " ".join((f.title, f.detail, f.remediation, f.package or ""))


# --- known shapes ------------------------------------------------------------------------


def test_github_token_in_env_is_reported_masked() -> None:
    f = only(check(env=("PATH=/usr/local/bin:/usr/bin", f"GITHUB_TOKEN={GITHUB}")))

    assert f.check_id == CHECK_ID == "secret-in-config"
    assert f.severity is Severity.HIGH
    assert "GitHub token" in f.title
    assert "`GITHUB_TOKEN`" in f.detail
    assert "ghp_…(40 chars)" in f.detail
    assert GITHUB not in everything_shown(f)
    assert GITHUB[4:12] not in everything_shown(f)
    assert f.package == "env GITHUB_TOKEN"


@pytest.mark.parametrize(
    ("value", "kind", "severity"),
    [
        (GITHUB_PAT, "GitHub token", Severity.HIGH),
        (GITLAB, "GitLab token", Severity.HIGH),
        (SLACK_BOT, "Slack token", Severity.HIGH),
        (SLACK_APP, "Slack token", Severity.HIGH),
        (SLACK_HOOK, "Slack webhook URL", Severity.HIGH),
        (STRIPE, "Stripe live key", Severity.HIGH),
        (NPM, "npm token", Severity.HIGH),
        (GOOGLE, "Google API key", Severity.CRITICAL),
        (AWS_ID, "AWS access key id", Severity.CRITICAL),
    ],
)
def test_known_credential_shapes_are_reported_whatever_the_name(
    value: str, kind: str, severity: Severity
) -> None:
    f = only(check(env=(f"SETTING_{len(value)}={value}",)))

    assert f.severity is severity
    assert kind in f.detail
    assert mask(value) in f.detail
    assert value not in everything_shown(f)


def test_aws_access_key_pair_is_critical_and_two_findings() -> None:
    findings = check(env=(f"AWS_ACCESS_KEY_ID={AWS_ID}", f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}"))

    assert {f.package for f in findings} == {"env AWS_ACCESS_KEY_ID", "env AWS_SECRET_ACCESS_KEY"}
    assert all(f.severity is Severity.CRITICAL for f in findings)
    assert len({f.key for f in findings}) == 2, "two locations must stay two stored findings"
    secret = next(f for f in findings if f.package == "env AWS_SECRET_ACCESS_KEY")
    assert "AWS secret access key" in secret.detail
    assert "9dJ3…(40 chars)" in secret.detail


def test_forty_char_value_under_a_non_aws_name_is_not_an_aws_secret() -> None:
    # The official python images set GPG_KEY to the release manager's key fingerprint.
    assert check(env=("GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D",)) == []
    assert check(env=(f"BUILD_CHECKSUM={AWS_SECRET}",)) == []


def test_aws_documentation_example_keys_are_not_reported() -> None:
    example = (
        "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7" + "EXAMPLE",
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    )
    assert check(env=example) == []


def test_private_key_in_a_label_is_critical_and_never_quoted() -> None:
    f = only(check(labels=(("com.acme.deploy-key", PRIVATE_KEY),)))

    assert f.severity is Severity.CRITICAL
    assert "private key" in f.detail
    assert "label `com.acme.deploy-key`" in f.detail
    assert "b3BlbnNz" not in everything_shown(f)
    assert f"({len(PRIVATE_KEY)} chars)" in f.detail


def test_secret_in_a_label_key_is_masked_in_the_location_too() -> None:
    f = only(check(labels=((f"ci.token.{GITHUB}", "used by the release job"),)))

    assert GITHUB not in everything_shown(f)
    assert "in the key" in f.detail


# --- secret-looking names ------------------------------------------------------------------


def test_real_looking_password_is_reported_without_showing_any_of_a_short_value() -> None:
    f = only(check(env=("DB_HOST=postgres", "DB_USER=payments", "DB_PASSWORD=s3cr3tP4ss")))

    assert f.severity is Severity.HIGH
    assert f.title == "Hard-coded password in the image config"
    assert "`DB_PASSWORD`" in f.detail
    assert "`…(10 chars)`" in f.detail
    assert "s3cr" not in f.detail


@pytest.mark.parametrize(
    "entry",
    [
        "db_password=Zq8mLp2vRw",
        "DbPassword=Zq8mLp2vRw",
        "MYSQL_ROOT_PASS=Zq8mLp2vRw",
        "Client_Secret=Zq8mLp2vRw",
        "SENTRY_AUTH_TOKEN=Zq8mLp2vRw",
        "OPENAI_API_KEY=Zq8mLp2vRw",
        "apiKey=Zq8mLp2vRw",
        "JWT_SIGNING_KEY=Zq8mLp2vRw",
    ],
)
def test_secret_names_are_matched_case_insensitively_on_their_words(entry: str) -> None:
    f = only(check(env=(entry,)))
    assert f.severity is Severity.HIGH
    assert "Zq8mLp2vRw" not in f.detail


@pytest.mark.parametrize(
    "value",
    [
        "",
        "changeme",
        "CHANGE_ME",
        "changeit",
        "postgres",
        "password",
        "${DB_PASSWORD}",
        "${DB_PASSWORD:-postgres}",
        "$DB_PASSWORD",
        "$(cat /run/secrets/db_password)",
        "{{ .Values.db.password }}",
        "<your-password-here>",
        "/run/secrets/db_password",
        "./secrets/db_password",
        "xxxxxxxxxxxx",
        "************",
        "your_password_here",
        "example-password-1234",
        "REPLACE_ME_IN_PRODUCTION",
        "true",
        "disabled",
    ],
)
def test_password_placeholder_is_not_a_finding(value: str) -> None:
    assert check(env=(f"DB_PASSWORD={value}",)) == []


@pytest.mark.parametrize(
    "entry",
    [
        "POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password",
        "GITHUB_TOKEN_FILE=token.txt",
        "VAULT_TOKEN_PATH=/var/run/vault/token",
        "OAUTH_TOKEN_URL=https://auth.internal/oauth/token",
        "SESSION_SECRET_NAME=payments-session",
        "TOKEN_TTL=3600",
        "PASSWORD_MIN_LENGTH=12",
        "ADMIN_PASSWORD_HASH=abcDEF0123456789ghiJKL",
        "SECRETS_DIR=/etc/app/secrets",
    ],
)
def test_names_that_point_at_or_describe_a_secret_are_not_read(entry: str) -> None:
    assert check(env=(entry,)) == []


def test_short_or_repetitive_values_are_below_the_threshold() -> None:
    assert entropy("abcabcabc") < 2.5
    assert check(env=("API_TOKEN=abcabcabcabc", "DB_PASSWORD=Xy7#q2")) == []


def test_inline_setting_in_java_opts_is_reported_with_its_setting_name() -> None:
    opts = (
        "JAVA_OPTS=-Xmx1g -Djavax.net.ssl.trustStorePassword=changeit "
        "-Dspring.datasource.password=Zq8mLp2vRw"
    )
    f = only(check(env=(opts,)))

    assert "`JAVA_OPTS`" in f.detail
    assert "setting `spring.datasource.password`" in f.detail
    assert "Zq8mLp2vRw" not in f.detail


def test_password_in_a_database_url_is_reported() -> None:
    f = only(check(env=("DATABASE_URL=postgres://payments:Hx7pQ2mZ9k@db:5432/payments",)))

    assert "password in a URL" in f.detail
    assert "Hx7pQ2mZ9k" not in everything_shown(f)
    assert check(env=("DATABASE_URL=postgres://payments:${DB_PASSWORD}@db:5432/payments",)) == []


def test_bearer_token_and_api_key_headers_in_curl_arguments_are_reported() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiJjaSJ9.c2lnbmF0dXJlMTIz"
    cmd = ("-H", f"Authorization: Bearer {jwt}", "-H", "X-Api-Key: 8d7f6e5d4c3b2a19", "https://x")
    findings = check(entrypoint=("curl", "-fsS"), cmd=cmd)

    assert {f.package for f in findings} == {"cmd[1]", "cmd[3]"}
    assert not any(jwt[:8] in f.detail or "8d7f6e5d4c3b2a19" in f.detail for f in findings)
    assert check(cmd=("-H", 'Authorization: Bearer "$TOKEN"')) == []


# --- argv ------------------------------------------------------------------------------------


def test_export_inside_sh_c_is_reported_at_its_argv_position() -> None:
    script = (
        f'export API_KEY=f3Kd9sLq0Wz7Xc2V GH_TOKEN={GITHUB} && exec /app/server --token "$TOKEN"'
    )
    f = only(check(entrypoint=("/bin/sh", "-c", script)))

    assert f.package == "entrypoint[2]"
    assert "argument entrypoint[2]" in f.detail
    assert "GitHub token" in f.detail
    assert "setting `API_KEY`" in f.detail
    assert GITHUB not in f.detail
    assert "f3Kd9sLq0Wz7Xc2V" not in f.detail


def test_value_after_a_password_flag_is_reported() -> None:
    f = only(
        check(entrypoint=("/app/server",), cmd=("--listen", ":8080", "--db-password", "Hx7pQ2mZ9k"))
    )

    assert f.package == "cmd[3]"
    assert "value of `--db-password`" in f.detail


def test_flag_with_a_reference_is_not_a_finding() -> None:
    cmd = ("--db-password", "$(DB_PASSWORD)", "--api-key=${API_KEY}", "--token-file", "/run/token")
    assert check(cmd=cmd) == []


# --- dedup and shape of findings -------------------------------------------------------------


def test_one_finding_per_location_across_platforms() -> None:
    env = (f"GITHUB_TOKEN={GITHUB}",)
    facts = image(platform("linux/amd64", env=env), platform("linux/arm64", env=env))

    f = only(list(secret_in_config(facts, POLICY)))
    assert "(every platform)" in f.detail


def test_a_location_on_only_some_platforms_names_them() -> None:
    facts = image(
        platform("linux/amd64", env=(f"NPM_TOKEN={NPM}",)),
        platform("linux/arm64", env=("NPM_TOKEN=${NPM_TOKEN}",)),
        platform("linux/s390x"),
    )

    f = only(list(secret_in_config(facts, POLICY)))
    assert "(linux/amd64)" in f.detail


def test_remediation_says_rotate_pass_at_run_time_and_rebuild() -> None:
    f = only(check(env=(f"SLACK_BOT_TOKEN={SLACK_BOT}",)))

    assert "Rotate" in f.remediation
    assert "run time" in f.remediation
    assert "rebuild" in f.remediation


def test_a_clean_realistic_config_has_no_findings() -> None:
    nginx = platform(
        env=(
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "NGINX_VERSION=1.27.3",
            "NJS_VERSION=0.8.7",
            "PKG_RELEASE=1~bookworm",
            "GPG_KEY=7169605F62C751356D054A26A821E680E5FA6305",
            "PYTHON_SHA256=bfb249609990220491a1b92850a07135ed0831e41738cf681d63cf01b2a8fbd1",
            "POSTGRES_PASSWORD_FILE=/run/secrets/pg",
        ),
        labels=(
            ("maintainer", "NGINX Docker Maintainers <docker-maint@nginx.com>"),
            ("org.opencontainers.image.source", "https://github.com/acme/payments-api"),
            ("org.opencontainers.image.revision", "3f2c1a9e0b7d4c6f8a1e2b3c4d5e6f708192a3b4"),
        ),
        entrypoint=("/docker-entrypoint.sh",),
        cmd=("nginx", "-g", "daemon off;"),
    )
    assert list(secret_in_config(image(nginx), POLICY)) == []


def test_mask_shows_four_characters_only_of_long_values() -> None:
    assert mask(GITHUB) == "ghp_…(40 chars)"
    assert mask("Hx7pQ2mZ9k") == "…(10 chars)"


# --- property: never crash, never show an inserted secret -------------------------------------

ALNUM = string.ascii_letters + string.digits
SEPARATORS = st.sampled_from([" ", "=", ":", '"', "'", "/", "\n", ",", ";", "(", "@"])
texts = st.text(max_size=30)
env_entries = st.tuples(texts, texts).map("=".join)
github_tokens = st.text(ALNUM, min_size=36, max_size=36).map(lambda s: "ghp" + "_" + s)


@st.composite
def embedded(draw: st.DrawFn, token: str) -> str:
    return draw(texts) + draw(SEPARATORS) + token + draw(SEPARATORS) + draw(texts)


@settings(max_examples=300, deadline=None)
@given(
    env=st.lists(env_entries, max_size=5),
    labels=st.lists(st.tuples(texts, texts), max_size=5),
    entrypoint=st.lists(texts, max_size=4),
    cmd=st.lists(texts, max_size=4),
    token=github_tokens,
    where=st.sampled_from(["env", "env name", "label key", "label value", "entrypoint", "cmd"]),
    data=st.data(),
)
def test_random_configs_never_crash_and_an_inserted_token_is_found_but_never_shown(
    env: list[str],
    labels: list[tuple[str, str]],
    entrypoint: list[str],
    cmd: list[str],
    token: str,
    where: str,
    data: st.DataObject,
) -> None:
    text = data.draw(embedded(token))
    if where == "env":
        env.append(data.draw(texts) + "=" + text)
    elif where == "env name":
        env.append(text.replace("=", " ") + "=" + data.draw(texts))
    elif where == "label key":
        labels.append((text, data.draw(texts)))
    elif where == "label value":
        labels.append((data.draw(texts), text))
    elif where == "entrypoint":
        entrypoint.insert(data.draw(st.integers(0, len(entrypoint))), text)
    else:
        cmd.insert(data.draw(st.integers(0, len(cmd))), text)
    p = platform(env=tuple(env), labels=tuple(labels), entrypoint=tuple(entrypoint), cmd=tuple(cmd))

    findings = list(secret_in_config(image(p, platform("linux/arm64", env=tuple(env))), POLICY))

    assert any("GitHub token" in f.detail for f in findings)
    for f in findings:
        assert f.check_id == CHECK_ID
        assert token not in everything_shown(f)
        assert len(f.package or "") <= 255
    assert len({f.key for f in findings}) == len(findings)


@given(token=github_tokens, data=st.data())
def test_redact_never_leaves_an_inserted_token(token: str, data: st.DataObject) -> None:
    text = data.draw(embedded(token))
    assert token not in redact(text)
    assert token not in redact(text + " Authorization: token " + token)
