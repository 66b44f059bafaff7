"""Kubernetes workloads → `WorkloadObserved` events (pure: no I/O, no client library).

`observe()` turns one API object (a dict as the API server sends it, camelCase) into the event
the watcher emits, and `spec_fingerprint()` hashes only what a security check cares about, so
the watcher reacts to spec changes and not to status churn:

* in: `kind`, `metadata.labels`, `spec` (Pod spec, or the workload's spec with its template),
  and each container's resolved image digest from `status.*ContainerStatuses[].imageID`;
* out: the rest of `status`, `metadata.resourceVersion`, `managedFields`, annotations,
  `generation`, and two fields that change without anybody touching the workload's
  definition: a workload's `spec.replicas` (autoscalers rewrite it) and a Pod's
  `spec.nodeName` (the scheduler sets it).

List responses from the API server carry no `kind`/`apiVersion` on their items
(kubernetes/kubernetes#3030): the caller sets `kind` before calling `observe()`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Self

from pydantic import Field, model_validator

from bot.model.events import DIGEST_PATTERN, ContainerImage, WorkloadKind, WorkloadObserved

__all__ = ["ContainerImage", "WorkloadKind", "WorkloadObserved"]
from bot.infra.sections import Section

WORKLOAD_KINDS: tuple[WorkloadKind, ...] = (
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
)

_DIGEST = re.compile(DIGEST_PATTERN.removeprefix("^").removesuffix("$"))
#: Container lists in a Pod spec, with the status list that reports their images.
_CONTAINER_LISTS = (
    ("initContainers", "initContainerStatuses"),
    ("containers", "containerStatuses"),
    ("ephemeralContainers", "ephemeralContainerStatuses"),
)


class ClusterConfig(Section):
    """One `[[clusters]]` entry: which cluster to watch, and which of its namespaces."""

    #: Goes into every event's `cluster` and delivery id.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    #: Path of a kubeconfig file (its current context is used); absent: the in-cluster
    #: service account.
    kubeconfig: str | None = None
    #: Namespaces to watch; empty: all of them (one cluster-wide watch per resource).
    namespaces: tuple[str, ...] = ()
    #: Never reported, whether `namespaces` is empty or not.
    exclude_namespaces: tuple[str, ...] = ()
    #: Seconds between full relists that reconcile what a watch might have missed; 0: never.
    #: A relist emits only what changed.
    resync_seconds: float = Field(600, ge=0)

    @model_validator(mode="after")
    def _something_to_watch(self) -> Self:
        if self.namespaces and set(self.namespaces) <= set(self.exclude_namespaces):
            raise ValueError("every namespace in namespaces is also in exclude_namespaces")
        return self


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def pod_spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Pod spec inside `obj`: its own (Pod), its template's, or its job template's."""
    spec = _map(obj.get("spec"))
    kind = obj.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = _map(_map(spec.get("jobTemplate")).get("spec"))
    return _map(_map(spec.get("template")).get("spec"))


def digest_of_image_id(image_id: Any) -> str | None:
    """`docker-pullable://nginx@sha256:…`, `docker.io/library/nginx@sha256:…` → `sha256:…`.

    Only a digest after `@` is a registry (manifest) digest; a bare `sha256:…` or
    `docker://sha256:…` is the runtime's local image id and yields None.
    """
    if not isinstance(image_id, str) or "@" not in image_id:
        return None
    digest = image_id.rsplit("@", 1)[1]
    return digest if _DIGEST.fullmatch(digest) else None


def containers_of(obj: Mapping[str, Any]) -> list[ContainerImage]:
    pod_spec = pod_spec_of(obj)
    status = _map(obj.get("status")) if obj.get("kind") == "Pod" else {}
    out: list[ContainerImage] = []
    for spec_key, status_key in _CONTAINER_LISTS:
        resolved = {
            s.get("name"): digest_of_image_id(s.get("imageID"))
            for s in _list(status.get(status_key))
        }
        for c in _list(pod_spec.get(spec_key)):
            name = _str(c.get("name"))
            if name is None:
                continue
            out.append(
                ContainerImage(
                    name=name,
                    image=_str(c.get("image")),
                    image_id=resolved.get(name),
                    init=spec_key == "initContainers",
                    ephemeral=spec_key == "ephemeralContainers",
                )
            )
    return out


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = _map(_map(obj.get("metadata")).get("labels"))
    return {str(k): str(v) for k, v in labels.items()}


def spec_fingerprint(obj: Mapping[str, Any]) -> str:
    """sha256 (hex) of what matters in `obj`; equal for two states that differ only in churn."""
    spec = dict(_map(obj.get("spec")))
    if obj.get("kind") == "Pod":
        spec.pop("nodeName", None)
    else:
        spec.pop("replicas", None)
    material = {
        "kind": obj.get("kind"),
        "labels": _labels(obj),
        "spec": spec,
        "resolved": sorted(
            [c.init, c.ephemeral, c.name, c.image_id] for c in containers_of(obj) if c.image_id
        ),
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _owner(metadata: Mapping[str, Any]) -> str | None:
    refs = _list(metadata.get("ownerReferences"))
    ref = next((r for r in refs if r.get("controller") is True), refs[0] if refs else None)
    if ref is None or _str(ref.get("kind")) is None or _str(ref.get("name")) is None:
        return None
    return f"{ref['kind']}/{ref['name']}"


def delivery_id(cluster: str, uid: str, fingerprint: str, generation: int | None) -> str:
    """`cluster/uid/fingerprint[:16]`, with `/g<generation>` where the object has one.

    The same state delivered twice (a relist after a restart) gets the same id and is stored
    once; a workload rolled back to an earlier spec has a new generation, so its event is
    not mistaken for the first one.
    """
    base = f"{cluster}/{uid}/{fingerprint[:16]}"
    return base if generation is None else f"{base}/g{generation}"


def as_deleted(event: WorkloadObserved) -> WorkloadObserved:
    """`event` as the deletion of its object (for a deletion seen only as absence in a list)."""
    return event.model_copy(
        update={"deleted": True, "delivery_id": f"{event.cluster}/{event.uid}/deleted"}
    )


def observe(cluster: str, obj: Mapping[str, Any], deleted: bool = False) -> WorkloadObserved | None:
    """The event for `obj`, or None: not a Pod or workload kind, or no namespace/name/uid.

    A `deleted` event's delivery id is `cluster/uid/deleted`: a uid is deleted once.
    """
    kind = obj.get("kind")
    metadata = _map(obj.get("metadata"))
    namespace = _str(metadata.get("namespace"))
    name = _str(metadata.get("name"))
    uid = _str(metadata.get("uid"))
    if kind not in WORKLOAD_KINDS or namespace is None or name is None or uid is None:
        return None
    generation = metadata.get("generation")
    if not isinstance(generation, int) or isinstance(generation, bool):
        generation = None
    did = (
        f"{cluster}/{uid}/deleted"
        if deleted
        else delivery_id(cluster, uid, spec_fingerprint(obj), generation)
    )
    return WorkloadObserved(
        delivery_id=did,
        cluster=cluster,
        namespace=namespace,
        kind=kind,
        name=name,
        uid=uid,
        resource_version=_str(metadata.get("resourceVersion")),
        generation=generation,
        labels=_labels(obj),
        containers=containers_of(obj),
        deleted=deleted,
        pod_spec=dict(pod_spec_of(obj)),
        owner=_owner(metadata),
    )
