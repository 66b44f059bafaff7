"""Domain events: what the edges tell the core happened outside.

They are stored in the inbox as JSON, so they are pydantic models with a `type` tag.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
#: The distribution spec's repository grammar: no `..`, no empty or leading-dot components, so a
#: repository can go into a registry URL path as it is.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_PATTERN = rf"^{_COMPONENT}(?:/{_COMPONENT})*$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
#: Times an image is read again for layers that failed transiently, after its first post.
MAX_RESCANS = 3


class DomainEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The source's own id for this event, or a content hash where it has none. With the
    #: source name it is the inbox dedup key, so a redelivery is stored once.
    delivery_id: str = Field(min_length=1, max_length=200)


class ImagePushed(DomainEvent):
    """A manifest or index was pushed under a tag to a configured registry."""

    @model_validator(mode="after")
    def _digest_or_tag(self) -> ImagePushed:
        if self.digest is None and self.tag is None:
            raise ValueError("a push names a digest, a tag or both")
        return self

    type: Literal["image.pushed"] = "image.pushed"
    registry: str
    repository: str = Field(max_length=255, pattern=REPOSITORY_PATTERN)
    #: None where the registry's webhook names only the tag (Docker Hub, Quay): the pipeline
    #: resolves the tag against the registry when it processes the event.
    digest: str | None = Field(None, pattern=DIGEST_PATTERN)
    tag: str | None = Field(None, pattern=TAG_PATTERN)
    media_type: str | None = None
    actor: str | None = Field(None, max_length=200)
    pushed_at: datetime | None = None
    #: How many times the bot has asked again for layers the registry failed to serve (the
    #: pipeline's own retry of an image already announced without them); 0 for a push.
    rescan: int = Field(0, ge=0, le=MAX_RESCANS)


class ImageDeleted(DomainEvent):
    """A manifest (by digest) or a tag was deleted."""

    type: Literal["image.deleted"] = "image.deleted"
    registry: str
    repository: str = Field(max_length=255, pattern=REPOSITORY_PATTERN)
    digest: str | None = Field(None, pattern=DIGEST_PATTERN)
    tag: str | None = Field(None, pattern=TAG_PATTERN)


class ScanCompleted(DomainEvent):
    """A registry's own scanner finished scanning an image (Harbor SCANNING_COMPLETED)."""

    type: Literal["scan.completed"] = "scan.completed"
    registry: str
    repository: str = Field(max_length=255, pattern=REPOSITORY_PATTERN)
    digest: str = Field(pattern=DIGEST_PATTERN)
    tag: str | None = Field(None, pattern=TAG_PATTERN)


class RuntimeAlert(DomainEvent):
    """A runtime detection (Falco) in a pod."""

    type: Literal["runtime.alert"] = "runtime.alert"
    rule: str = Field(min_length=1, max_length=200)
    priority: str = Field(max_length=32)
    output: str = Field(max_length=4000)
    time: datetime
    namespace: str | None = Field(None, max_length=253)
    pod: str | None = Field(None, max_length=253)
    workload: str | None = Field(None, max_length=253)
    image: str | None = Field(None, max_length=512)
    hostname: str | None = Field(None, max_length=253)
    tags: tuple[str, ...] = ()


class WorkloadSeen(DomainEvent):
    """A workload spec the cluster admitted (or a watcher saw): checked against policy."""

    type: Literal["workload.seen"] = "workload.seen"
    cluster: str = Field(max_length=64)
    namespace: str = Field(max_length=253)
    kind: str = Field(max_length=64)
    name: str = Field(max_length=253)
    labels: dict[str, str] = Field(default_factory=dict)
    #: The object as Kubernetes sent it (the policy reads it again when the event is processed).
    object: dict[str, Any]


WorkloadKind = Literal["Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"]


class ContainerImage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    #: As written in the spec; None where a template leaves it to be filled in later.
    image: str | None
    #: The digest the kubelet resolved the image to (`status.containerStatuses[].imageID`,
    #: `docker-pullable://repo@sha256:…` → `sha256:…`). None on workloads (which have no
    #: such status), before the container was pulled, and where the runtime reports only a
    #: local image id (`docker://sha256:…`, which is not a registry digest).
    image_id: str | None = Field(None, pattern=DIGEST_PATTERN)
    init: bool = False
    #: A debug container added with `kubectl debug` (`spec.ephemeralContainers`).
    ephemeral: bool = False


class WorkloadObserved(DomainEvent):
    """A Pod or a pod-owning workload in a watched cluster is new, changed, or gone."""

    type: Literal["workload.observed"] = "workload.observed"
    cluster: str
    namespace: str
    kind: WorkloadKind
    name: str
    uid: str
    resource_version: str | None = None
    generation: int | None = None
    labels: dict[str, str] = {}
    containers: list[ContainerImage] = []
    deleted: bool = False
    #: The Pod spec: a Pod's own, a workload's template (a CronJob's job template's).
    pod_spec: dict[str, Any] = {}
    #: The controlling owner as `Kind/name` (a Pod's `ReplicaSet/web-5d8f9c7b6d`, a Job's
    #: `CronJob/nightly`), from `metadata.ownerReferences`; None for a standalone object.
    owner: str | None = None


Event = ImagePushed | ImageDeleted | ScanCompleted | RuntimeAlert | WorkloadSeen | WorkloadObserved
AnyEvent = Annotated[Event, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(AnyEvent)


def dump_event(event: Event) -> str:
    return event.model_dump_json()


def load_event(data: str | bytes) -> Event:
    return EVENT_ADAPTER.validate_json(data)
