"""The running app watching a cluster (the Kubernetes API stand-in): what runs where stays right
across a dropped watch and a relist, and an image that starts running gets checked."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import handlers
from bot.app import build, web_app
from bot.store import cluster
from tests.conftest import WEBHOOK_SECRET, make_settings, slack_section
from tests.support.fake_registry import FakeRegistry
from tests.support.kube_standin import KubeStandIn
from tests.support.settle import eventually
from tests.support.slack_standin import SlackStandIn
from tests.test_cluster_watch import pod


def running_pod(name: str, image: str, digest: str) -> dict[str, Any]:
    obj = pod(name, "payments", image, owner=("ReplicaSet", "api-5d8f9c7b6d"))
    obj["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "app",
                "image": image,
                "imageID": f"docker-pullable://{image}@{digest}",
                "ready": True,
                "restartCount": 0,
            }
        ],
    }
    return obj


async def test_inventory_survives_a_dropped_watch_and_a_relist_and_new_images_are_checked(
    aiohttp_client: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    slack, fake = SlackStandIn(epoch=time.time()), FakeRegistry()
    await slack.start()
    await fake.start()
    async with KubeStandIn() as kube:
        digest = fake.add_image("payments/api", "1.0", {"config": {"User": ""}})
        image = f"127.0.0.1:{fake.port}/payments/api:1.0"
        settings = make_settings(
            sqlite_url,
            slack=slack_section(slack),
            registries=[
                {
                    "name": "local",
                    "kind": "distribution",
                    "url": fake.url,
                    "webhook_secret": WEBHOOK_SECRET,
                }
            ],
            teams=[
                {
                    "name": "payments",
                    "channel": "#payments",
                    "namespaces": ["payments"],
                    "repositories": ["payments/*"],
                }
            ],
            clusters=[{"name": "prod", "kubeconfig": str(kube.kubeconfig(tmp_path / "kc"))}],
        )
        runtime = build(settings, handlers.EDGES)
        await aiohttp_client(web_app(runtime))
        kube.create(running_pod("api-5d8f9c7b6d-aaaaa", image, digest))

        async def pods() -> list[str]:
            async with runtime.core.db.transaction() as s:
                return sorted(r.uid for r in await cluster.running(s, "prod"))

        assert len(await eventually(pods, timeout=10)) == 1
        # The image started running and was never pushed through a webhook: it is checked.
        [post] = await slack.wait_for("chat.postMessage", 1, timeout=10)
        assert "payments/api" in json.dumps(post.args["blocks"])
        assert "runs-as-root" in json.dumps(post.args["blocks"])

        # While the watch is down a pod is added and one deleted; history is compacted so the
        # watcher must relist (410 Gone) to see it.
        kube.drop_connections()
        kube.go_down()
        second = kube.create(running_pod("api-5d8f9c7b6d-bbbbb", image, digest))
        kube.delete(kube.get("Pod", "payments", "api-5d8f9c7b6d-aaaaa"))
        kube.compact()
        await kube.come_back()

        async def only_second() -> bool:
            return await pods() == [second["metadata"]["uid"]]

        await eventually(only_second, timeout=20)
        assert len(slack.calls_to("chat.postMessage")) == 1  # same digest: not checked twice
    await slack.stop()
    await fake.stop()
