"""Configuration: TOML plus environment, secrets from files, unknown keys are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, SlackMode, load_settings
from handlers.cli import main

GOOD = """
[server]
port = 9000
[slack]
fallback_channel = "#sec"
[admission]
token = "admission-token"
[falco]
token = "falco-token"
[[registries]]
name = "local"
kind = "distribution"
url = "http://127.0.0.1:5000"
webhook_secret_file = "{secret}"
[[teams]]
name = "payments"
channel = "#payments"
repositories = ["payments/*"]
timezone = "Europe/Berlin"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    path = tmp_path / "crowsnest.toml"
    path.write_text(GOOD.format(secret=secret))
    return path


def test_environment_overrides_the_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROWSNEST_SERVER__PORT", "9100")
    monkeypatch.setenv("CROWSNEST_SLACK__BOT_TOKEN", "xoxb-from-env")
    settings = load_settings(config)
    assert settings.server.port == 9100
    assert settings.slack.fallback_channel == "#sec"
    assert settings.slack.bot_token is not None
    assert settings.slack.bot_token.get_secret_value() == "xoxb-from-env"


def test_secret_is_read_from_its_file_and_never_printed(config: Path) -> None:
    registry = load_settings(config).registries[0]
    assert registry.webhook_secret is not None
    assert registry.webhook_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(registry) and "s3cret" not in str(registry)


def test_no_bot_token_means_dry_run(config: Path) -> None:
    assert load_settings(config).slack.effective_mode is SlackMode.DRY_RUN


def test_bot_token_file_from_environment(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text("xoxb-file")
    monkeypatch.setenv("CROWSNEST_SLACK__BOT_TOKEN_FILE", str(token))
    monkeypatch.setenv("CROWSNEST_SLACK__SIGNING_SECRET", "abc")
    settings = load_settings(config)
    assert settings.slack.effective_mode is SlackMode.HTTP


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (("[server]", "[server]\nprot = 1"), "server.prot: unknown key"),
        (("[slack]", "[slakc]\n[slack]"), "slakc: unknown key"),
        (
            ('timezone = "Europe/Berlin"', 'timezone = "Mars/Base"'),
            "teams.0.timezone: unknown IANA",
        ),
        (('kind = "distribution"', 'kind = "nexus"'), "registries.0.kind: Input should be"),
        (("port = 9000", 'port = "many"'), "server.port: Input should be a valid integer"),
        (("[[teams]]", "[database]\nurl = 'mysql://x'\n[[teams]]"), "database.url: must start"),
    ],
)
def test_each_problem_is_one_line_with_its_key_path(
    config: Path, edit: tuple[str, str], problem: str
) -> None:
    config.write_text(config.read_text().replace(*edit, 1))
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert any(line.startswith(problem) for line in err.value.problems), err.value.problems


def test_check_config_prints_problems_and_exits_2(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(config.read_text().replace("port = 9000", "port = 9000\nhots = 'x'"))
    config.write_text(config.read_text().replace('channel = "#payments"', ""))
    assert main(["check-config", "--config", str(config)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["server.hots: unknown key", "teams.0.channel: Field required"]


def test_check_config_passes_a_good_file(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(config)]) == 0
    assert "ok" in capsys.readouterr().out


def test_missing_secret_file_is_a_problem_not_a_traceback(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(config.read_text().replace(str(tmp_path / "secret"), "/nonexistent/x"))
    assert main(["check-config", "--config", str(config)]) == 2
    out = capsys.readouterr().out
    assert "webhook_secret_file: cannot read /nonexistent/x" in out


def test_example_config_is_valid() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    settings = load_settings(example)
    assert settings.registries and settings.teams
