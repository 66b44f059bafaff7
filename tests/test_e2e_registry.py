"""End to end with real parts: skopeo pushes to Debian's docker-registry, whose notifications reach
the bot, which pulls the manifest and config back and posts to the Slack stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

import handlers
from bot.app import Runtime, build, web_app
from bot.store import inbox
from tests.conftest import WEBHOOK_SECRET, make_settings, slack_section
from tests.support.oci import SUPPORTED_FILES, ImageSpec, write_index_layout, write_layout
from tests.support.services import Registry, free_port, skopeo_push, start_registry
from tests.support.slack_standin import SlackStandIn

pytestmark = pytest.mark.services


@pytest.fixture
async def stack(
    tmp_path: Path, sqlite_url: str, slack: SlackStandIn
) -> AsyncIterator[Callable[..., Any]]:
    """Registry notifying a bot served on a real loopback port (the registry must reach it)."""
    started: list[tuple[Registry, TestServer]] = []

    async def start(
        slack_extra: dict[str, Any] | None = None, **sections: Any
    ) -> tuple[Registry, Runtime]:
        port = free_port()
        registry = start_registry(
            tmp_path / "registry", f"http://127.0.0.1:{port}/hooks/registry/local", WEBHOOK_SECRET
        )
        settings = make_settings(
            sqlite_url,
            slack=slack_section(slack, **(slack_extra or {})),
            registries=[
                {
                    "name": "local",
                    "kind": "distribution",
                    "url": registry.url,
                    "webhook_secret": WEBHOOK_SECRET,
                }
            ],
            teams=[{"name": "team-a", "channel": "#team-a", "repositories": ["team-a/*"]}],
            **sections,
        )
        runtime = build(settings, handlers.EDGES)
        server = TestServer(web_app(runtime), host="127.0.0.1", port=port)
        await server.start_server()
        started.append((registry, server))
        return registry, runtime

    yield start
    for registry, server in started:
        registry.stop()
        await server.close()


def clean() -> ImageSpec:
    """No finding at all: non-root, a supported base, built today."""
    return ImageSpec(
        user="10001:10001", files=SUPPORTED_FILES, created=datetime.now(UTC).isoformat()
    )


def _texts(call: Any) -> str:
    return json.dumps(call.args.get("blocks")) + call.args.get("text", "")


async def test_pushed_root_image_under_latest_is_posted_to_the_team_with_both_findings(
    stack: Callable[..., Any], slack: SlackStandIn, tmp_path: Path
) -> None:
    registry, _ = await stack()
    digests = write_layout(tmp_path / "layout", {"latest": ImageSpec(user="")})
    skopeo_push(tmp_path / "layout", "latest", f"{registry.host}/team-a/app:latest")

    [call] = await slack.wait_for("chat.postMessage", 1, timeout=10)
    assert call.args["channel"] == "#team-a"
    body = _texts(call)
    short = digests["latest"].removeprefix("sha256:")[:12]
    for expected in ("team-a/app", "latest", short, "runs-as-root", "mutable-tag"):
        assert expected in body
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_clean_image_in_unowned_repository_goes_to_fallback_when_clean_pushes_are_announced(
    stack: Callable[..., Any], slack: SlackStandIn, tmp_path: Path
) -> None:
    registry, _ = await stack(slack_extra={"announce_clean_pushes": True})
    write_layout(tmp_path / "layout", {"1.0": clean()})
    skopeo_push(tmp_path / "layout", "1.0", f"{registry.host}/other/svc:1.0", fmt="v2s2")

    [call] = await slack.wait_for("chat.postMessage", 1, timeout=10)
    assert call.args["channel"] == "#fallback"
    body = _texts(call)
    assert "other/svc" in body and "No findings" in body
    assert "runs-as-root" not in body


async def test_clean_image_is_not_announced_by_default(
    stack: Callable[..., Any], slack: SlackStandIn, tmp_path: Path
) -> None:
    registry, runtime = await stack()
    write_layout(tmp_path / "layout", {"1.0": clean(), "2.0": ImageSpec()})
    skopeo_push(tmp_path / "layout", "1.0", f"{registry.host}/team-a/clean:1.0")
    skopeo_push(tmp_path / "layout", "2.0", f"{registry.host}/team-a/rooted:2.0")

    [call] = await slack.wait_for("chat.postMessage", 1, timeout=10)
    assert "team-a/rooted" in _texts(call)
    for _ in range(100):  # both pushes processed, so the clean one had its chance to post
        async with runtime.core.db.transaction() as s:
            if (await inbox.counts(s)).get("done") == 2:
                break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("pushes were not processed")
    await asyncio.sleep(0.2)
    assert not any("team-a/clean" in _texts(c) for c in slack.calls_to("chat.postMessage"))


async def test_index_push_checks_every_platform(
    stack: Callable[..., Any], slack: SlackStandIn, tmp_path: Path
) -> None:
    registry, _ = await stack()
    index, _children = write_index_layout(
        tmp_path / "layout",
        "2.0",
        [ImageSpec(user="10001"), ImageSpec(user="root", architecture="arm64", variant="v8")],
    )
    skopeo_push(tmp_path / "layout", "2.0", f"{registry.host}/team-a/multi:2.0", all_platforms=True)

    [call] = await slack.wait_for("chat.postMessage", 1, timeout=10)
    body = _texts(call)
    assert index.removeprefix("sha256:")[:12] in body
    assert "runs-as-root" in body and "linux/arm64/v8" in body
    assert "linux/amd64: " not in body  # only the root platform is named in the finding


async def test_miner_and_key_deleted_in_a_later_layer_and_an_eol_base_are_reported(
    stack: Callable[..., Any], slack: SlackStandIn, tmp_path: Path
) -> None:
    registry, _ = await stack()
    credentials = (
        b"[default]\naws_access_key_id = AKIA"
        + b"Q3ZD5MPL7ZK2R4TB\n"
        + (b"aws_secret_access_key = " + b"x9Rk2" * 8 + b"\n")
    )
    spec = ImageSpec(
        user="10001",
        files={
            "etc/os-release": b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.12.12\n',
            "usr/local/bin/xmrig": b"\x7fELF fake miner build",
            "root/.aws/credentials": credentials,
        },
        extra_layers=[{"usr/local/bin/.wh.xmrig": b"", "root/.aws/.wh.credentials": b""}],
    )
    write_layout(tmp_path / "layout", {"3.12": spec})
    skopeo_push(tmp_path / "layout", "3.12", f"{registry.host}/team-a/legacy:3.12")

    [call] = await slack.wait_for("chat.postMessage", 1, timeout=10)
    body = _texts(call)
    for check in ("miner-in-layers", "secret-in-layers", "eol-base-os"):
        assert check in body
    assert "x9Rk2x9Rk2" not in body and "Q3ZD5MPL7ZK2R4TB" not in body  # secrets stay masked
    assert "still in the image history" in body
