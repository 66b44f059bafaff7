"""The cluster watcher against a Kubernetes API stand-in that speaks list/watch over real HTTP.

The watcher loads the stand-in's kubeconfig with kubernetes_asyncio and talks to it with the
library's own `ApiClient`, so these are the requests a real API server would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.cluster.observe import (
    ClusterConfig,
    ContainerImage,
    WorkloadObserved,
    digest_of_image_id,
    observe,
    spec_fingerprint,
)
from handlers.k8s.watch import ClusterWatcher, backoff_delay
from tests.support.kube_standin import KubeStandIn
from tests.support.settle import eventually

FIXTURES = Path(__file__).parent / "fixtures" / "kubernetes"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
ALL_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


# ---------------------------------------------------------------------- objects


def _containers(image: str) -> list[dict[str, Any]]:
    return [{"name": "app", "image": image, "resources": {}}]


def pod(
    name: str,
    namespace: str = "default",
    image: str = "nginx:1.25",
    *,
    owner: tuple[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {"app": name}}
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": "o-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": {"containers": _containers(image), "restartPolicy": "Always"},
        "status": {"phase": "Pending"},
    }


def workload(kind: str, name: str, namespace: str = "default", image: str = "nginx:1.25"):
    template = {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": _containers(image)},
    }
    api_version = "batch/v1" if kind in ("Job", "CronJob") else "apps/v1"
    spec: dict[str, Any]
    if kind == "CronJob":
        spec = {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}}
    elif kind == "Job":
        spec = {"template": {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}}
    else:
        spec = {"selector": {"matchLabels": {"app": name}}, "template": template}
        if kind != "DaemonSet":
            spec["replicas"] = 2
    return {
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": spec,
        "status": {},
    }


# ---------------------------------------------------------------------- harness


class Recorder:
    def __init__(self) -> None:
        self.events: list[WorkloadObserved] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: WorkloadObserved) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 3.0) -> list[WorkloadObserved]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events

    def of(self, name: str) -> list[WorkloadObserved]:
        return [e for e in self.events if e.name == name]


@pytest.fixture
async def kube() -> AsyncIterator[KubeStandIn]:
    async with KubeStandIn() as standin:
        yield standin


@pytest.fixture
def cluster(kube: KubeStandIn, tmp_path: Path) -> Callable[..., ClusterConfig]:
    def make(**overrides: Any) -> ClusterConfig:
        path = kube.kubeconfig(tmp_path / "kubeconfig")
        return ClusterConfig(name="test", kubeconfig=str(path), **overrides)

    return make


@contextlib.asynccontextmanager
async def running(
    config: ClusterConfig, emit: Callable[[WorkloadObserved], Awaitable[None]], **options: Any
):
    options = {"backoff_base": 0.01, "backoff_cap": 0.05, "watch_seconds": 30, **options}
    watcher = ClusterWatcher(config, emit, **options)
    task = asyncio.create_task(watcher.run())
    try:
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def synced(kube: KubeStandIn, streams: int = 6) -> None:
    """Every loop listed and is watching: everything listed has been emitted."""
    await kube.wait_for_watches(streams)


def seed(kube: KubeStandIn) -> dict[str, dict[str, Any]]:
    objs = {
        "web-pod": kube.create(pod("web-pod", owner=("ReplicaSet", "web-5d8f9c7b6d"))),
        "web": kube.create(workload("Deployment", "web")),
        "db": kube.create(workload("StatefulSet", "db")),
        "agent": kube.create(workload("DaemonSet", "agent")),
        "migrate": kube.create(workload("Job", "migrate")),
        "nightly": kube.create(workload("CronJob", "nightly")),
    }
    kube.create(workload("ReplicaSet", "web-5d8f9c7b6d"))  # not watched: its Pods are
    return objs


# ---------------------------------------------------------------------- the watch loop


async def test_initial_list_emits_one_event_per_pod_and_workload(kube, cluster):
    objs = seed(kube)
    recorder = Recorder()
    async with running(cluster(), recorder):
        await synced(kube)
        events = await recorder.wait_for(6)
    assert len(events) == 6
    assert {e.kind for e in events} == ALL_KINDS
    assert {e.uid for e in events} == {o["metadata"]["uid"] for o in objs.values()}
    web_pod = recorder.of("web-pod")[0]
    assert web_pod.owner == "ReplicaSet/web-5d8f9c7b6d"
    assert web_pod.containers == [ContainerImage(name="app", image="nginx:1.25", image_id=None)]
    assert web_pod.delivery_id.startswith(f"test/{web_pod.uid}/")
    nightly = recorder.of("nightly")[0]
    assert nightly.pod_spec["containers"][0]["image"] == "nginx:1.25"
    # The list is paged and read with the client's token; the watch starts at the list's version.
    pods_list = kube.lists("pods")[0]
    assert pods_list.authorization == "Bearer standin-token"
    assert pods_list.query["limit"] == "500"
    pods_watch = kube.watch_requests("pods")[0]
    assert pods_watch.path == "/api/v1/pods"
    assert pods_watch.query["allowWatchBookmarks"] == "true"
    assert pods_watch.query["timeoutSeconds"] == "30"


async def test_status_churn_is_quiet_and_spec_changes_emit(kube, cluster):
    objs = seed(kube)
    recorder = Recorder()
    async with running(cluster(), recorder):
        await synced(kube)
        await recorder.wait_for(6)

        # Status, annotations, managedFields and scaling: nothing to look at.
        p = kube.get("Pod", "default", "web-pod")
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        p["metadata"]["annotations"] = {"note": "x"}
        p["metadata"]["managedFields"] = [{"manager": "kubelet", "operation": "Update"}]
        p["spec"]["nodeName"] = "node-1"
        kube.update(p)
        d = kube.get("Deployment", "default", "web")
        d["spec"]["replicas"] = 5
        d["status"] = {"replicas": 5, "readyReplicas": 3}
        kube.update(d)
        # The kubelet resolving the image is news: the digest that is really running.
        p = kube.get("Pod", "default", "web-pod")
        p["status"]["containerStatuses"] = [
            {
                "name": "app",
                "image": "docker.io/library/nginx:1.25",
                "ready": True,
                "imageID": f"docker-pullable://nginx@{DIGEST_A}",
                "restartCount": 0,
            }
        ]
        kube.update(p)
        # A new image in the template is news.
        d = kube.get("Deployment", "default", "web")
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
        kube.update(d)
        # Each stream is in order, so the quiet changes were handled before these two.
        events = await recorder.wait_for(8)
    assert [(e.name, e.kind) for e in events[6:]] == [("web-pod", "Pod"), ("web", "Deployment")]
    assert events[6].containers[0].image_id == DIGEST_A
    assert events[7].containers[0].image == "nginx:1.27"
    assert events[7].generation == 3  # replicas bumped it once, the image again
    assert len({e.delivery_id for e in events}) == 8
    assert events[7].uid == objs["web"]["metadata"]["uid"]


async def test_deleted_emits_deleted_once(kube, cluster):
    objs = seed(kube)
    recorder = Recorder()
    async with running(cluster(), recorder) as watcher:
        await synced(kube)
        await recorder.wait_for(6)
        kube.delete(objs["web-pod"])
        kube.delete(objs["nightly"])
        await recorder.wait_for(8)
        kube.create(pod("after"))
        await recorder.wait_for(9)
        assert watcher.resource_version("Pod") == kube.resource_version
    deleted = [e for e in recorder.events if e.deleted]
    assert [(e.name, e.kind) for e in deleted] == [("web-pod", "Pod"), ("nightly", "CronJob")]
    assert deleted[0].delivery_id == f"test/{objs['web-pod']['metadata']['uid']}/deleted"
    assert deleted[0].containers[0].image == "nginx:1.25"  # the last state, for the record
    assert recorder.events[-1].name == "after"


async def test_dropped_watch_resumes_from_last_resource_version_without_relisting(kube, cluster):
    seed(kube)
    recorder = Recorder()
    async with running(cluster(), recorder) as watcher:
        await synced(kube)
        await recorder.wait_for(6)
        listed_at = kube.resource_version
        p = kube.get("Pod", "default", "web-pod")
        p["spec"]["containers"][0]["image"] = "nginx:1.26"
        last_pod_rv = kube.update(p)["metadata"]["resourceVersion"]
        await recorder.wait_for(7)
        assert watcher.resource_version("Pod") == last_pod_rv
        lists_before = len(kube.lists())
        watches_before = len(kube.watch_requests())

        assert kube.drop_connections() == 6
        await eventually(
            lambda: len(kube.watch_requests()) >= watches_before + 6, timeout=3, every=0.005
        )
        await synced(kube)
        # Something that happens after the reconnect still arrives.
        p = kube.get("Pod", "default", "web-pod")
        p["spec"]["containers"][0]["image"] = "nginx:1.27"
        kube.update(p)
        await recorder.wait_for(8)

    resumed = kube.watch_requests()[watches_before:]
    by_plural = {r.plural: r.resource_version for r in resumed}
    assert by_plural == {
        "pods": last_pod_rv,
        "deployments": listed_at,
        "statefulsets": listed_at,
        "daemonsets": listed_at,
        "jobs": listed_at,
        "cronjobs": listed_at,
    }
    assert len(kube.lists()) == lists_before
    assert [e.containers[0].image for e in recorder.of("web-pod")] == [
        "nginx:1.25",
        "nginx:1.26",
        "nginx:1.27",
    ]


async def test_a_failed_emit_is_delivered_again_from_the_same_version(kube, cluster):
    seed(kube)
    recorder = Recorder()
    failures: list[str] = []

    async def flaky(event: WorkloadObserved) -> None:
        if event.name == "flaky" and not failures:
            failures.append(event.delivery_id)
            raise RuntimeError("inbox unavailable")
        await recorder(event)

    async with running(cluster(), flaky):
        await synced(kube)
        await recorder.wait_for(6)
        kube.create(pod("flaky"))
        await recorder.wait_for(7)
    assert recorder.events[-1].delivery_id == failures[0]
    assert len(kube.lists("pods")) == 1  # resumed from the version before the event
    first, again = kube.watch_requests("pods")[:2]
    assert again.resource_version == first.resource_version


async def test_bookmark_advances_the_version_used_on_reconnect(kube, cluster):
    seed(kube)
    recorder = Recorder()
    async with running(cluster(), recorder) as watcher:
        await synced(kube)
        await recorder.wait_for(6)
        kube.create(workload("Deployment", "other"))  # moves the global version on
        await recorder.wait_for(7)
        assert watcher.resource_version("Pod") != kube.resource_version
        assert kube.bookmark() == 6
        await eventually(
            lambda: watcher.resource_version("Pod") == kube.resource_version, timeout=3, every=0.005
        )
        watches_before = len(kube.watch_requests())
        kube.drop_connections()
        await eventually(lambda: len(kube.watch_requests("pods")) >= 2, timeout=3, every=0.005)
        await synced(kube)
    resumed = kube.watch_requests("pods")[-1]
    assert resumed.resource_version == kube.resource_version
    assert len(kube.watch_requests()) == watches_before + 6
    assert len(kube.lists()) == 6
    assert len(recorder.events) == 7  # a bookmark is no event


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_compacted_history_relists_and_nothing_is_lost_or_duplicated(kube, cluster, as_http):
    kube.expired_watch_as_http = as_http
    objs = seed(kube)
    kube.create(pod("quiet"))
    kube.create(pod("gone"))
    recorder = Recorder()
    async with running(cluster(), recorder):
        await synced(kube)
        await recorder.wait_for(8)
        # While the watcher is disconnected (all of this runs before it can reconnect):
        kube.drop_connections()
        p = kube.get("Pod", "default", "web-pod")
        p["spec"]["containers"][0]["image"] = "nginx:1.26"
        kube.update(p)
        kube.delete(kube.get("Pod", "default", "gone"))
        kube.create(pod("new"))
        q = kube.get("Pod", "default", "quiet")
        q["status"] = {"phase": "Running"}
        kube.update(q)
        d = kube.get("Deployment", "default", "web")
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
        kube.update(d)
        kube.compact(keep_last=0)
        await eventually(lambda: len(kube.lists()) >= 12, timeout=3, every=0.005)
        await synced(kube)
        await recorder.wait_for(12)
        # After the relist the watch carries on from the list's version.
        kube.create(pod("later"))
        await recorder.wait_for(13)

    changes = sorted((e.name, e.deleted) for e in recorder.events[8:])
    assert changes == [
        ("gone", True),
        ("later", False),
        ("new", False),
        ("web", False),
        ("web-pod", False),
    ]
    assert len({e.delivery_id for e in recorder.events}) == 13
    # Each loop: a watch from its old version (410), then a fresh list, then a new watch.
    pods = [r for r in kube.requests if r.plural == "pods"]
    assert [r.watch for r in pods] == [False, True, True, False, True]
    assert pods[2].resource_version == pods[1].resource_version
    assert objs


async def test_expired_continue_token_restarts_the_list(kube, cluster):
    for name in ("a", "b", "c"):
        kube.create(pod(name))
    expired = []

    def expire_first_continue(request) -> None:
        if "continue" in request.query and not expired and request.plural == "pods":
            expired.append(request)
            kube.create(workload("Job", "meanwhile"))  # the list's version is history now
            kube.compact(keep_last=0)

    kube.hooks.append(expire_first_continue)
    recorder = Recorder()
    async with running(cluster(), recorder, list_page_size=1):
        await synced(kube)
        await recorder.wait_for(4)
    assert sorted(e.name for e in recorder.events) == ["a", "b", "c", "meanwhile"]
    pod_lists = kube.lists("pods")
    assert "continue" not in pod_lists[0].query
    assert pod_lists[1] is expired[0]
    assert "continue" not in pod_lists[2].query  # started over
    assert len(pod_lists) == 5


@pytest.mark.parametrize("server_filters", [True, False], ids=["field-selector", "client-side"])
async def test_excluded_namespaces_never_emit(kube, cluster, server_filters):
    kube.honor_field_selector = server_filters
    kube.create(pod("dns", "kube-system"))
    kube.create(workload("DaemonSet", "proxy", "kube-system"))
    kube.create(pod("web"))
    recorder = Recorder()
    config = cluster(exclude_namespaces=("kube-system", "monitoring"))
    async with running(config, recorder):
        await synced(kube)
        await recorder.wait_for(1)
        p = kube.get("Pod", "kube-system", "dns")
        p["spec"]["containers"][0]["image"] = "coredns:2"
        kube.update(p)
        kube.delete(kube.get("DaemonSet", "kube-system", "proxy"))
        kube.create(pod("exporter", "monitoring"))
        kube.create(pod("sentinel"))
        await recorder.wait_for(2)
    assert [e.name for e in recorder.events] == ["web", "sentinel"]
    assert kube.lists("pods")[0].query["fieldSelector"] == (
        "metadata.namespace!=kube-system,metadata.namespace!=monitoring"
    )


async def test_listed_namespaces_are_watched_one_by_one(kube, cluster):
    kube.create(pod("a", "team-a"))
    kube.create(workload("Deployment", "b", "team-b"))
    kube.create(pod("elsewhere", "default"))
    recorder = Recorder()
    config = cluster(
        namespaces=("team-a", "team-b", "kube-system"), exclude_namespaces=("kube-system",)
    )
    async with running(config, recorder):
        await synced(kube, streams=12)
        await recorder.wait_for(2)
        kube.create(pod("also-elsewhere", "default"))
        kube.create(pod("c", "team-b"))
        await recorder.wait_for(3)
    assert sorted(e.name for e in recorder.events) == ["a", "b", "c"]
    paths = {r.path for r in kube.requests}
    assert "/api/v1/namespaces/team-a/pods" in paths
    assert "/apis/batch/v1/namespaces/team-b/cronjobs" in paths
    assert not any("kube-system" in p or p == "/api/v1/pods" for p in paths)


async def test_unreachable_server_is_retried_with_capped_backoff(kube, cluster):
    kube.create(pod("web"))
    config = cluster()
    kube.go_down()
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0.002)

    recorder = Recorder()
    async with running(config, recorder, sleep=sleep, rand=lambda: 1.0):
        await eventually(lambda: len(delays) >= 6 * 5, timeout=3, every=0.005)
        await kube.come_back()
        await synced(kube)
        await recorder.wait_for(1)
    assert sorted(set(delays)) == [0.01, 0.02, 0.04, 0.05]  # doubling, then the cap
    assert [e.name for e in recorder.events] == ["web"]


async def test_periodic_resync_relists_quietly(kube, cluster):
    seed(kube)
    recorder = Recorder()
    async with running(cluster(resync_seconds=0.2), recorder):
        await synced(kube)
        await recorder.wait_for(6)
        assert kube.watch_requests("pods")[0].query["timeoutSeconds"] == "1"
        await eventually(lambda: len(kube.lists("pods")) >= 2, timeout=4, every=0.005)
        await synced(kube)
    assert len(recorder.events) == 6


async def test_real_watch_lines_only_move_the_resource_version(kube, cluster):
    """The API docs' watch samples (kind Pod, but no name/uid: a BOOKMARK even says `Pod`)."""
    lines = (FIXTURES / "doc-watch-bookmark.jsonl").read_bytes().splitlines(keepends=True)
    kube.canned_watch["pods"] = lines
    recorder = Recorder()
    async with running(cluster(), recorder) as watcher:
        await eventually(lambda: len(kube.watch_requests("pods")) >= 2, timeout=3, every=0.005)
        assert kube.watch_requests("pods")[1].resource_version == "12746"
        assert watcher.resource_version("Pod") == "12746"
    assert recorder.events == []


def test_backoff_doubles_up_to_the_cap_with_jitter():
    assert [backoff_delay(n, base=0.5, cap=30, rand=lambda: 1.0) for n in range(8)] == [
        0.5,
        1,
        2,
        4,
        8,
        16,
        30,
        30,
    ]
    assert backoff_delay(3, base=0.5, cap=30, rand=lambda: 0.0) == 2
    assert backoff_delay(10_000, base=0.5, cap=30) <= 30


# ---------------------------------------------------------------------- observe()


def _doc_lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def test_observe_real_doc_watch_lines():
    events = _doc_lines("doc-watch-added-modified.jsonl") + _doc_lines("doc-watch-bookmark.jsonl")
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == [
        ("ADDED", "10596"),
        ("MODIFIED", "11020"),
        ("ADDED", "10596"),
        ("BOOKMARK", "12746"),
    ]
    # Trimmed objects: a Pod kind but no namespace, name or uid, so nothing to report.
    assert [observe("c", e["object"]) for e in events] == [None, None, None, None]
    filled = copy.deepcopy(events[0]["object"])
    filled["metadata"].update(name="web", namespace="default", uid="u-1")
    seen = observe("c", filled)
    assert seen is not None
    assert (seen.kind, seen.name, seen.resource_version, seen.containers) == (
        "Pod",
        "web",
        "10596",
        [],
    )


def test_observe_the_deployment_of_a_real_admission_review():
    review = json.loads((FIXTURES / "kube-review-deployment-create.json").read_text())
    obj = review["request"]["object"]
    assert observe("c", obj) is None  # no uid before it is created
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": "default", "uid": "u-2"}}
    seen = observe("c", obj)
    assert seen == WorkloadObserved(
        delivery_id=f"c/u-2/{spec_fingerprint(obj)[:16]}",
        cluster="c",
        namespace="default",
        kind="Deployment",
        name="nginx",
        uid="u-2",
        resource_version=None,
        generation=None,
        labels={"app": "nginx"},
        containers=[ContainerImage(name="nginx", image="nginx", image_id=None)],
        pod_spec=obj["spec"]["template"]["spec"],
        owner=None,
    )


def _running_pod() -> dict[str, Any]:
    p = pod("web", owner=("ReplicaSet", "web-abc"))
    p["metadata"].update(uid="u-3", resourceVersion="7", generation=1)
    p["spec"]["initContainers"] = [{"name": "setup", "image": "busybox:1.36"}]
    p["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "alpine"}]
    p["status"] = {
        "phase": "Running",
        "initContainerStatuses": [
            {"name": "setup", "imageID": f"docker.io/library/busybox@{DIGEST_B}"}
        ],
        "containerStatuses": [{"name": "app", "imageID": f"docker-pullable://nginx@{DIGEST_A}"}],
        "ephemeralContainerStatuses": [
            {"name": "debugger", "imageID": "docker://sha256:" + "c" * 64}
        ],
    }
    return p


def test_observe_pod_resolves_digests_and_owner():
    seen = observe("prod", _running_pod())
    assert seen is not None
    assert seen.owner == "ReplicaSet/web-abc"
    assert seen.generation == 1
    assert seen.containers == [
        ContainerImage(name="setup", image="busybox:1.36", image_id=DIGEST_B, init=True),
        ContainerImage(name="app", image="nginx:1.25", image_id=DIGEST_A),
        ContainerImage(name="debugger", image="alpine", image_id=None, ephemeral=True),
    ]
    fp = spec_fingerprint(_running_pod())
    assert seen.delivery_id == f"prod/u-3/{fp[:16]}/g1"
    gone = observe("prod", _running_pod(), deleted=True)
    assert gone is not None and gone.deleted and gone.delivery_id == "prod/u-3/deleted"


@pytest.mark.parametrize(
    ("image_id", "digest"),
    [
        (f"docker-pullable://repo/app@{DIGEST_A}", DIGEST_A),
        (f"registry.example.com:5000/app@{DIGEST_A}", DIGEST_A),
        (f"docker://{DIGEST_A}", None),  # the local image id, not a registry digest
        (DIGEST_A, None),
        ("", None),
        ("docker-pullable://repo@sha256:short", None),
        (None, None),
    ],
)
def test_digest_of_image_id(image_id, digest):
    assert digest_of_image_id(image_id) == digest


def test_fingerprint_ignores_churn_and_sees_what_matters():
    base = _running_pod()
    fp = spec_fingerprint(base)
    churn = copy.deepcopy(base)
    churn["metadata"].update(resourceVersion="99", generation=2, annotations={"a": "b"})
    churn["metadata"]["managedFields"] = [{"manager": "kubelet"}]
    churn["status"]["phase"] = "Succeeded"
    churn["status"]["containerStatuses"][0]["restartCount"] = 4
    churn["spec"]["nodeName"] = "node-9"
    assert spec_fingerprint(churn) == fp
    for change in (
        lambda o: o["spec"]["containers"][0].update(image="nginx:2"),
        lambda o: o["metadata"]["labels"].update(team="x"),
        lambda o: o["status"]["containerStatuses"][0].update(imageID=f"x@{DIGEST_B}"),
        lambda o: o["spec"].update(hostNetwork=True),
    ):
        changed = copy.deepcopy(base)
        change(changed)
        assert spec_fingerprint(changed) != fp
    deployment = workload("Deployment", "web")
    scaled = copy.deepcopy(deployment)
    scaled["spec"]["replicas"] = 9
    assert spec_fingerprint(scaled) == spec_fingerprint(deployment)


def test_observe_skips_what_is_not_a_workload():
    rs = workload("ReplicaSet", "web-abc")
    rs["metadata"]["uid"] = "u-4"
    assert observe("c", rs) is None
    assert observe("c", {"kind": "Status", "code": 410}) is None


def test_cluster_config():
    assert ClusterConfig(name="prod").resync_seconds == 600
    with pytest.raises(ValidationError):
        ClusterConfig(name="prod", namespaces=("a",), exclude_namespaces=("a",))
    with pytest.raises(ValidationError):
        ClusterConfig(name="bad name")
    with pytest.raises(ValidationError):
        ClusterConfig(name="prod", kubeconfig_path="x")  # unknown keys are errors
