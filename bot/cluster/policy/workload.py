"""Where the pods of a Kubernetes object are: the pod spec of a Pod or of a pod-creating
workload (`Workload`), and each container in it with its path in the object as submitted
(`Pod`, `Container`), for the rules to read and to name in findings.

Anything may be of the wrong type: a value that is not a mapping where one is expected is
treated as absent. Nothing here raises on any JSON-ish input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_SECTIONS = ("containers", "initContainers", "ephemeralContainers")

# --- finding the pod spec -----------------------------------------------------------------

_TEMPLATE_KINDS = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"}
)


@dataclass(frozen=True)
class _Located:
    spec: Mapping[str, Any]
    meta: Mapping[str, Any]
    spec_path: str
    meta_path: str


def as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _locate(obj: Any, kind: Any = None) -> _Located | None:
    if not isinstance(obj, Mapping):
        return None
    kind = obj.get("kind") if kind is None else kind
    if not isinstance(kind, str):
        return None
    spec = obj.get("spec")
    if kind == "Pod":
        if not isinstance(spec, Mapping):
            return None
        return _Located(spec, as_map(obj.get("metadata")), "spec", "metadata")
    if kind == "CronJob":
        template = as_map(as_map(as_map(spec).get("jobTemplate")).get("spec")).get("template")
        prefix = "spec.jobTemplate.spec.template"
    elif kind in _TEMPLATE_KINDS:
        template = as_map(spec).get("template")
        prefix = "spec.template"
    else:
        return None
    if not isinstance(template, Mapping) or not isinstance(template.get("spec"), Mapping):
        return None
    return _Located(
        template["spec"], as_map(template.get("metadata")), f"{prefix}.spec", f"{prefix}.metadata"
    )


def pod_spec_of(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """(pod spec, pod metadata) of a Pod or a pod-creating workload; None for other kinds.

    None too when the object has no pod spec to check (a Pod without `spec`, a Deployment
    without `spec.template.spec`), or is not a mapping at all.
    """
    located = _locate(obj)
    return None if located is None else (located.spec, located.meta)


@dataclass(frozen=True)
class Workload:
    """One object whose pods are checked, and where it lives."""

    cluster: str
    namespace: str
    kind: str
    name: str
    labels: Mapping[str, str]
    pod_spec: Mapping[str, Any]
    #: The pod's own metadata (a template's, for workloads): AppArmor annotations live here.
    pod_metadata: Mapping[str, Any] = field(default_factory=dict)
    #: Where `pod_spec` sits in the object, for field paths in findings.
    spec_path: str = "spec"

    @classmethod
    def from_object(
        cls,
        obj: Mapping[str, Any],
        *,
        cluster: str = "",
        namespace: str | None = None,
        kind: str | None = None,
    ) -> Workload | None:
        """The workload in `obj`, or None when it has no pod spec (see `pod_spec_of`).

        `kind` stands in for an object without one (admission requests may omit it);
        `namespace` overrides the object's own, which defaults to "default".
        """
        located = _locate(obj, kind)
        if located is None:
            return None
        meta = as_map(obj.get("metadata"))
        if namespace is None:
            namespace = _text(meta.get("namespace")) or "default"
        kind_name = kind if kind is not None else _text(obj.get("kind"))
        labels = {k: v for k, v in as_map(meta.get("labels")).items() if isinstance(v, str)}
        return cls(
            cluster=cluster,
            namespace=namespace,
            kind=kind_name,
            name=_text(meta.get("name")) or _text(meta.get("generateName")),
            labels=labels,
            pod_spec=located.spec,
            pod_metadata=located.meta,
            spec_path=located.spec_path,
        )

    @classmethod
    def from_admission_review(
        cls, review: Mapping[str, Any], *, cluster: str = ""
    ) -> Workload | None:
        """The workload an AdmissionReview asks about (`request.object`); None if none."""
        if not isinstance(review, Mapping):
            return None
        request = as_map(review.get("request"))
        obj = request.get("object")
        if not isinstance(obj, Mapping):
            return None
        kind = _text(obj.get("kind")) or _text(as_map(request.get("kind")).get("kind"))
        namespace = _text(request.get("namespace")) or None
        workload = cls.from_object(obj, cluster=cluster, namespace=namespace, kind=kind)
        if workload is not None and not workload.name:
            workload = _replace_name(workload, _text(request.get("name")))
        return workload

    @property
    def meta_path(self) -> str:
        return self.spec_path.removesuffix("spec") + "metadata"


def _replace_name(workload: Workload, name: str) -> Workload:
    return Workload(
        workload.cluster,
        workload.namespace,
        workload.kind,
        name,
        workload.labels,
        workload.pod_spec,
        workload.pod_metadata,
        workload.spec_path,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- the pod as the rules see it ----------------------------------------------------------


@dataclass(frozen=True)
class Container:
    """One container of the pod: its list, index, spec, and path in the object."""

    section: str
    index: int
    spec: Mapping[str, Any]
    path: str

    @property
    def name(self) -> str:
        name = self.spec.get("name")
        return name if isinstance(name, str) and name else f"{self.section}[{self.index}]"

    @property
    def image(self) -> Any:
        return self.spec.get("image")

    @property
    def sc(self) -> Mapping[str, Any]:
        return as_map(self.spec.get("securityContext"))

    @property
    def sc_path(self) -> str:
        return f"{self.path}.securityContext"


@dataclass(frozen=True)
class Pod:
    """The pod spec of a workload and its containers, as the rules read them."""

    spec: Mapping[str, Any]
    meta: Mapping[str, Any]
    spec_path: str
    meta_path: str
    containers: tuple[Container, ...]

    @classmethod
    def of(cls, workload: Workload) -> Pod:
        spec = as_map(workload.pod_spec)
        containers = tuple(
            Container(section, i, c, f"{workload.spec_path}.{section}[{i}]")
            for section in _SECTIONS
            for i, c in enumerate(as_list(spec.get(section)))
            if isinstance(c, Mapping)
        )
        return cls(
            spec, as_map(workload.pod_metadata), workload.spec_path, workload.meta_path, containers
        )

    @property
    def sc(self) -> Mapping[str, Any]:
        return as_map(self.spec.get("securityContext"))

    @property
    def sc_path(self) -> str:
        return f"{self.spec_path}.securityContext"

    @property
    def windows(self) -> bool:
        return as_map(self.spec.get("os")).get("name") == "windows"

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.spec.get("name") == name), None)
