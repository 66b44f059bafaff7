"""Kubernetes workload policy: the Pod Security Standards rule by rule, plus image rules.

Pure: a workload object (a plain JSON-ish mapping) and a `PolicyConfig` in, findings out.

What is checked is the pod spec, found by `pod_spec_of` in a Pod, in `spec.template` of a
Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or ReplicationController, and in
`spec.jobTemplate.spec.template` of a CronJob. Every container list is checked: `containers`,
`initContainers` and `ephemeralContainers`. Where a field exists at both levels
(`runAsNonRoot`, `runAsUser`, `seccompProfile`, `seLinuxOptions`, `appArmorProfile`,
`windowsOptions.hostProcess`) the container's value overrides the pod's, as the kubelet does.

Rules (see `RULES` for titles, severities and remediations):

* `pss-baseline/…`, applied at the `baseline` and `restricted` levels, following the Pod Security
  Standards as of Kubernetes v1.34 (the upstream `pod-security-admission` checks): `host-process`,
  `host-network`, `host-pid`, `host-ipc`, `privileged`, `capabilities` (only the 13 default
  capabilities may be added), `host-path`, `host-ports`, `apparmor` (Unconfined or a
  non-runtime/default, non-localhost annotation), `selinux` (type outside container_t,
  container_init_t, container_kvm_t, container_engine_t; any user or role), `proc-mount`,
  `seccomp` (Unconfined), `sysctls` (outside the safe set), `probe-host` (a probe or lifecycle
  handler aimed at another host, v1.34+).
* `pss-restricted/…`, applied at the `restricted` level on top of the baseline:
  `volume-types`, `allow-privilege-escalation`, `run-as-non-root`, `run-as-user`, `seccomp`,
  `capabilities`. As in the standard, pods with `spec.os.name: windows` are exempt from
  `allow-privilege-escalation`, `seccomp` and `capabilities` (Linux-only fields). User
  namespaces (`hostUsers: false`) relax nothing here: upstream relaxes `run-as-non-root`,
  `run-as-user` and `proc-mount` for them only from v1.35 or behind a feature gate.
* `policy/…`, applied at every level: `allowed-registry` (when `allowed_registries` is set),
  `image-digest` (when `require_digest`), `image-tag` (no tag, or `latest`, unless pinned by
  digest), `resources` (when `require_limits`), `automount-service-account-token`,
  `read-only-root-filesystem` (when `require_read_only_root`).

Rules run independently, as upstream's do, so one field can break a baseline and a restricted
rule at once (an Unconfined seccomp profile is both `pss-baseline/seccomp` and
`pss-restricted/seccomp`), and an exemption of one leaves the other standing. Windows pods are
also spared `read-only-root-filesystem`, which Windows does not support.

One finding per rule and container (`package` is the container's name) or per rule and pod
(`package` is "pod"); its detail names every offending field by its path in the object as
submitted (`spec.template.spec.containers[1].securityContext.privileged` in a Deployment).

Anything may be of the wrong type: a value that is not a mapping where one is expected is
treated as absent; a scalar that is not one of a field's allowed values is reported, whatever
its type. Nothing here raises on any JSON-ish input.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal, Self, TypeAlias

from pydantic import field_validator, model_validator

from bot.infra.sections import Section
from bot.model.findings import Finding, Severity, worst_first

Level: TypeAlias = Literal["privileged", "baseline", "restricted"]
LEVELS: tuple[Level, ...] = ("privileged", "baseline", "restricted")

# --- what the standard allows -------------------------------------------------------------

#: Capabilities a baseline container may add: the container runtime's default set.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
#: Added capabilities that amount to root on the node: a baseline finding for these is CRITICAL.
_NODE_ROOT_CAPABILITIES = frozenset(
    {"ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_RAWIO", "BPF", "DAC_READ_SEARCH"}
)
#: The safe sysctls (pod-security-admission `sysctlsAllowedV1Dot32`).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
#: Volume sources the restricted level allows.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
_PROFILE_TYPES = ("RuntimeDefault", "Localhost")
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
#: Host paths whose mount hands over the node: a hostPath finding for these is CRITICAL.
_NODE_PATHS = (
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/run",
    "/var/run",
    "/var/lib/kubelet",
    "/var/lib/docker",
    "/var/lib/containerd",
)
_SECTIONS = ("containers", "initContainers", "ephemeralContainers")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_GLOB_CHARS = frozenset("*?[")


# --- configuration ------------------------------------------------------------------------


class Exemption(Section):
    """Findings of `rules` (ids or globs; empty: every rule) that are not reported for a match.

    Every selector that is set must match (namespaces, workloads as `namespace/name`, images;
    all globs). An image exemption covers a container's findings when its image matches, and a
    pod's findings when every container's image does. At least one selector must be set: use
    `namespaces = ["*"]` to lift a rule everywhere.
    """

    namespaces: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()

    @field_validator("namespaces", "workloads", "images", "rules")
    @classmethod
    def _no_empty_patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        if any(not p.strip() for p in patterns):
            raise ValueError("empty pattern")
        return patterns

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [p for p in patterns if not any(fnmatchcase(r, p) for r in RULES)]
        if unknown:
            raise ValueError(f"matches no rule: {', '.join(unknown)} (rules are listed in RULES)")
        return patterns

    @model_validator(mode="after")
    def _scoped(self) -> Self:
        if not (self.namespaces or self.workloads or self.images):
            raise ValueError(
                "an exemption needs namespaces, workloads or images "
                '(namespaces = ["*"] exempts everywhere)'
            )
        return self


class PolicyConfig(Section):
    """The `[policy]` section: the level each namespace is held to, and the extra rules."""

    default_level: Level = "baseline"
    #: Level by namespace name; keys may be globs (`kube-*`). An exact name beats a glob, and a
    #: longer glob beats a shorter one.
    namespace_levels: dict[str, Level] = {}
    #: Registry hosts or host/path prefixes images must come from (`ghcr.io/acme`,
    #: `docker.io/library`); a component may be a glob (`*.dkr.ecr.eu-west-1.amazonaws.com`).
    #: Empty: any registry.
    allowed_registries: tuple[str, ...] = ()
    require_digest: bool = False
    require_limits: bool = True
    require_read_only_root: bool = False
    exemptions: list[Exemption] = []

    @field_validator("allowed_registries")
    @classmethod
    def _registry_prefixes(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        normalized = []
        for entry in entries:
            e = entry.strip().rstrip("/")
            if "://" in e or "@" in e or not e:
                raise ValueError(f"{entry!r}: give a registry host or host/path, no scheme")
            host = e.split("/", 1)[0]
            if not ("." in host or ":" in host or host == "localhost" or "*" in host):
                raise ValueError(
                    f"{entry!r} does not start with a registry host "
                    "(Docker Hub images are docker.io/library/NAME or docker.io/ORG)"
                )
            normalized.append(_normalize_prefix(e))
        return tuple(normalized)

    def level_for(self, namespace: str) -> Level:
        if namespace in self.namespace_levels:
            return self.namespace_levels[namespace]
        globs = sorted(
            (k for k in self.namespace_levels if _GLOB_CHARS & set(k)), key=lambda k: (-len(k), k)
        )
        for pattern in globs:
            if fnmatchcase(namespace, pattern):
                return self.namespace_levels[pattern]
        return self.default_level


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


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
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
        return _Located(spec, _map(obj.get("metadata")), "spec", "metadata")
    if kind == "CronJob":
        template = _map(_map(_map(spec).get("jobTemplate")).get("spec")).get("template")
        prefix = "spec.jobTemplate.spec.template"
    elif kind in _TEMPLATE_KINDS:
        template = _map(spec).get("template")
        prefix = "spec.template"
    else:
        return None
    if not isinstance(template, Mapping) or not isinstance(template.get("spec"), Mapping):
        return None
    return _Located(
        template["spec"], _map(template.get("metadata")), f"{prefix}.spec", f"{prefix}.metadata"
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
        meta = _map(obj.get("metadata"))
        if namespace is None:
            namespace = _text(meta.get("namespace")) or "default"
        kind_name = kind if kind is not None else _text(obj.get("kind"))
        labels = {k: v for k, v in _map(meta.get("labels")).items() if isinstance(v, str)}
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
        request = _map(review.get("request"))
        obj = request.get("object")
        if not isinstance(obj, Mapping):
            return None
        kind = _text(obj.get("kind")) or _text(_map(request.get("kind")).get("kind"))
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
class _Container:
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
        return _map(self.spec.get("securityContext"))

    @property
    def sc_path(self) -> str:
        return f"{self.path}.securityContext"


@dataclass(frozen=True)
class _Pod:
    spec: Mapping[str, Any]
    meta: Mapping[str, Any]
    spec_path: str
    meta_path: str
    containers: tuple[_Container, ...]

    @classmethod
    def of(cls, workload: Workload) -> _Pod:
        spec = _map(workload.pod_spec)
        containers = tuple(
            _Container(section, i, c, f"{workload.spec_path}.{section}[{i}]")
            for section in _SECTIONS
            for i, c in enumerate(_list(spec.get(section)))
            if isinstance(c, Mapping)
        )
        return cls(
            spec, _map(workload.pod_metadata), workload.spec_path, workload.meta_path, containers
        )

    @property
    def sc(self) -> Mapping[str, Any]:
        return _map(self.spec.get("securityContext"))

    @property
    def sc_path(self) -> str:
        return f"{self.spec_path}.securityContext"

    @property
    def windows(self) -> bool:
        return _map(self.spec.get("os")).get("name") == "windows"

    def container(self, name: str) -> _Container | None:
        return next((c for c in self.containers if c.spec.get("name") == name), None)


@dataclass(frozen=True)
class _Problem:
    """One offending field: on a container, or on the pod (`target` None)."""

    target: _Container | None
    text: str
    severity: Severity | None = None


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(value: Any, allowed: Any) -> bool:
    """Equal and of the same type: `0` is not `false`, `1` is not `true`."""
    return type(value) is type(allowed) and bool(value == allowed)


def _one_of(value: Any, *allowed: Any) -> bool:
    return any(_same(value, a) for a in allowed)


def _unset_or_false(value: Any) -> bool:
    return value is None or value is False


# --- baseline -----------------------------------------------------------------------------


def _host_process(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    value = _map(pod.sc.get("windowsOptions")).get("hostProcess")
    if not _unset_or_false(value):
        yield _Problem(None, f"{pod.sc_path}.windowsOptions.hostProcess is {_show(value)}")
    for c in pod.containers:
        value = _map(c.sc.get("windowsOptions")).get("hostProcess")
        if not _unset_or_false(value):
            yield _Problem(c, f"{c.sc_path}.windowsOptions.hostProcess is {_show(value)}")


def _host_namespace(key: str) -> Callable[[_Pod, PolicyConfig], Iterator[_Problem]]:
    def check(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
        value = pod.spec.get(key)
        if not _unset_or_false(value):
            yield _Problem(None, f"{pod.spec_path}.{key} is {_show(value)}")

    return check


def _privileged(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        value = c.sc.get("privileged")
        if not _unset_or_false(value):
            yield _Problem(c, f"{c.sc_path}.privileged is {_show(value)}")


def _capabilities_baseline(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        added = _list(_map(c.sc.get("capabilities")).get("add"))
        bad = [cap for cap in added if not (isinstance(cap, str) and cap in BASELINE_CAPABILITIES)]
        if bad:
            worst = any(isinstance(cap, str) and cap in _NODE_ROOT_CAPABILITIES for cap in bad)
            yield _Problem(
                c,
                f"{c.sc_path}.capabilities.add includes {', '.join(_show(b) for b in bad)}",
                Severity.CRITICAL if worst else None,
            )


def _is_node_path(path: Any) -> bool:
    if not isinstance(path, str):
        return False
    normalized = posixpath.normpath("/" + path.strip().lstrip("/"))
    return (
        normalized == "/"
        or normalized.endswith(".sock")
        or any(normalized == p or normalized.startswith(p + "/") for p in _NODE_PATHS)
    )


def _volumes(pod: _Pod) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for i, volume in enumerate(_list(pod.spec.get("volumes"))):
        if isinstance(volume, Mapping):
            yield i, volume


def _host_path(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for i, volume in _volumes(pod):
        source = volume.get("hostPath")
        if source is None:
            continue
        path = _map(source).get("path")
        yield _Problem(
            None,
            f"{pod.spec_path}.volumes[{i}].hostPath (volume {_show(volume.get('name'))}) "
            f"mounts {_show(path)} from the node",
            Severity.CRITICAL if _is_node_path(path) else None,
        )


def _host_ports(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        bad = [
            f"{c.path}.ports[{i}].hostPort is {_show(port.get('hostPort'))}"
            for i, port in enumerate(_list(c.spec.get("ports")))
            if isinstance(port, Mapping) and not _one_of(port.get("hostPort"), None, 0)
        ]
        if bad:
            yield _Problem(c, "; ".join(bad))


def _profile_type_ok(profile: Any) -> bool:
    """An unset profile, or one of type RuntimeDefault or Localhost."""
    return not isinstance(profile, Mapping) or _one_of(profile.get("type"), *_PROFILE_TYPES)


def _profile_problems(pod: _Pod, key: str, allowed: Callable[[Any], bool]) -> Iterator[_Problem]:
    profile = pod.sc.get(key)
    if not allowed(profile):
        yield _Problem(None, f"{pod.sc_path}.{key}.type is {_show(_map(profile).get('type'))}")
    for c in pod.containers:
        profile = c.sc.get(key)
        if not allowed(profile):
            yield _Problem(c, f"{c.sc_path}.{key}.type is {_show(_map(profile).get('type'))}")


def _apparmor(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    yield from _profile_problems(pod, "appArmorProfile", _profile_type_ok)
    for key, value in _map(pod.meta.get("annotations")).items():
        if not (isinstance(key, str) and key.startswith(_APPARMOR_ANNOTATION)):
            continue
        if isinstance(value, str) and (
            value in ("", "runtime/default") or value.startswith("localhost/")
        ):
            continue
        target = pod.container(key.removeprefix(_APPARMOR_ANNOTATION))
        yield _Problem(target, f"{pod.meta_path}.annotations['{key}'] is {_show(value)}")


def _selinux_problems(options: Any, path: str) -> list[str]:
    if not isinstance(options, Mapping):
        return []
    problems = []
    kind = options.get("type")
    if not (kind is None or (isinstance(kind, str) and kind in SELINUX_TYPES)):
        problems.append(f"{path}.seLinuxOptions.type is {_show(kind)}")
    for key in ("user", "role"):
        if not _one_of(options.get(key), None, ""):
            problems.append(f"{path}.seLinuxOptions.{key} is {_show(options.get(key))}")
    return problems


def _selinux(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    problems = _selinux_problems(pod.sc.get("seLinuxOptions"), pod.sc_path)
    if problems:
        yield _Problem(None, "; ".join(problems))
    for c in pod.containers:
        problems = _selinux_problems(c.sc.get("seLinuxOptions"), c.sc_path)
        if problems:
            yield _Problem(c, "; ".join(problems))


def _proc_mount(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        value = c.sc.get("procMount")
        if not _one_of(value, None, "Default"):
            yield _Problem(c, f"{c.sc_path}.procMount is {_show(value)}")


def _seccomp_baseline(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    yield from _profile_problems(pod, "seccompProfile", _profile_type_ok)


def _sysctls(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    bad = [
        f"{pod.sc_path}.sysctls[{i}].name is {_show(entry.get('name'))}"
        for i, entry in enumerate(_list(pod.sc.get("sysctls")))
        if isinstance(entry, Mapping)
        and not (isinstance(entry.get("name"), str) and entry.get("name") in SAFE_SYSCTLS)
    ]
    if bad:
        yield _Problem(None, "; ".join(bad))


_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_HANDLERS = ("postStart", "preStop")


def _probe_host(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        handlers = [(f"{c.path}.{p}", c.spec.get(p)) for p in _PROBES]
        lifecycle = _map(c.spec.get("lifecycle"))
        handlers += [(f"{c.path}.lifecycle.{h}", lifecycle.get(h)) for h in _HANDLERS]
        bad = []
        for path, handler in handlers:
            for action in ("httpGet", "tcpSocket"):
                host = _map(_map(handler).get(action)).get("host")
                if not _one_of(host, None, ""):
                    bad.append(f"{path}.{action}.host is {_show(host)}")
        if bad:
            yield _Problem(c, "; ".join(bad))


# --- restricted ---------------------------------------------------------------------------


def _volume_types(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    bad = []
    for i, volume in _volumes(pod):
        for key, source in volume.items():
            if key != "name" and source is not None and key not in RESTRICTED_VOLUME_TYPES:
                bad.append(
                    f"{pod.spec_path}.volumes[{i}].{key} (volume {_show(volume.get('name'))})"
                )
    if bad:
        yield _Problem(None, "; ".join(bad))


def _allow_privilege_escalation(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if pod.windows:
        return
    for c in pod.containers:
        value = c.sc.get("allowPrivilegeEscalation")
        if value is not False:
            shown = "unset" if value is None else f"is {_show(value)}"
            yield _Problem(c, f"{c.sc_path}.allowPrivilegeEscalation {shown}")


def _run_as_non_root(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    pod_value = pod.sc.get("runAsNonRoot")
    if pod_value is not None and pod_value is not True:
        yield _Problem(None, f"{pod.sc_path}.runAsNonRoot is {_show(pod_value)}")
    for c in pod.containers:
        value = c.sc.get("runAsNonRoot")
        if value is None:
            if pod_value is None:
                yield _Problem(
                    c, f"{c.sc_path}.runAsNonRoot is unset, as is {pod.sc_path}.runAsNonRoot"
                )
        elif value is not True:
            yield _Problem(c, f"{c.sc_path}.runAsNonRoot is {_show(value)}")


def _uid_ok(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value != 0)


def _run_as_user(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    value = pod.sc.get("runAsUser")
    if not _uid_ok(value):
        yield _Problem(None, f"{pod.sc_path}.runAsUser is {_show(value)}")
    for c in pod.containers:
        value = c.sc.get("runAsUser")
        if not _uid_ok(value):
            yield _Problem(c, f"{c.sc_path}.runAsUser is {_show(value)}")


def _seccomp_restricted(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if pod.windows:
        return
    pod_profile = pod.sc.get("seccompProfile")
    pod_set = isinstance(pod_profile, Mapping)
    if pod_set and not _profile_type_ok(pod_profile):
        yield _Problem(
            None, f"{pod.sc_path}.seccompProfile.type is {_show(_map(pod_profile).get('type'))}"
        )
    for c in pod.containers:
        profile = c.sc.get("seccompProfile")
        if isinstance(profile, Mapping):
            if not _profile_type_ok(profile):
                yield _Problem(
                    c, f"{c.sc_path}.seccompProfile.type is {_show(profile.get('type'))}"
                )
        elif not pod_set:
            yield _Problem(
                c, f"{c.sc_path}.seccompProfile is unset, as is {pod.sc_path}.seccompProfile"
            )


def _capabilities_restricted(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if pod.windows:
        return
    for c in pod.containers:
        caps = _map(c.sc.get("capabilities"))
        problems = []
        if not any(_same(cap, "ALL") for cap in _list(caps.get("drop"))):
            problems.append(f'{c.sc_path}.capabilities.drop does not include "ALL"')
        bad = [cap for cap in _list(caps.get("add")) if not _same(cap, "NET_BIND_SERVICE")]
        if bad:
            problems.append(
                f"{c.sc_path}.capabilities.add includes {', '.join(_show(b) for b in bad)}"
            )
        if problems:
            yield _Problem(c, "; ".join(problems))


# --- extras -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageName:
    """An image reference as the container runtime resolves it."""

    registry: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.path}"

    @property
    def full(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.repository}{tag}{digest}"

    @property
    def pinned(self) -> bool:
        return self.digest is not None and _DIGEST.fullmatch(self.digest) is not None


def parse_image(ref: Any) -> ImageName | None:
    """`nginx` is `docker.io/library/nginx`, `acme/app:1` is `docker.io/acme/app:1`; None if
    `ref` is not an image reference at all."""
    if not isinstance(ref, str):
        return None
    ref = ref.strip()
    if not ref or any(ch.isspace() for ch in ref) or ref.count("@") > 1:
        return None
    name, _, digest = ref.partition("@")
    tag: str | None = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
        if not tag:
            return None
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, path = first.lower(), rest
    else:
        registry, path = _DOCKER_HUB, name
    if registry in _DOCKER_HUB_ALIASES:
        registry = _DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not path or not registry or path.startswith("/") or path.endswith("/") or "//" in path:
        return None
    return ImageName(registry, path, tag, digest or None)


def _normalize_prefix(entry: str) -> str:
    host, slash, rest = entry.partition("/")
    host = host.lower()
    if host in _DOCKER_HUB_ALIASES:
        host = _DOCKER_HUB
    return f"{host}{slash}{rest}"


def registry_allowed(image: ImageName, allowed: Iterable[str]) -> bool:
    """Whether the image's repository is at or under one of the `allowed` prefixes.

    Matching is by whole path component (`ghcr.io/acme` allows `ghcr.io/acme/app`, not
    `ghcr.io/acme-evil/app`), and a glob matches within one component only.
    """
    parts = image.repository.split("/")
    for entry in allowed:
        prefix = _normalize_prefix(entry.strip().rstrip("/")).split("/")
        if len(prefix) <= len(parts) and all(
            fnmatchcase(part, pattern) for part, pattern in zip(parts, prefix, strict=False)
        ):
            return True
    return False


def _allowed_registry(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if not config.allowed_registries:
        return
    for c in pod.containers:
        image = parse_image(c.image)
        if image is None:
            yield _Problem(c, f"{c.path}.image {_show(c.image)} is not an image reference")
        elif not registry_allowed(image, config.allowed_registries):
            yield _Problem(
                c,
                f"{c.path}.image {_show(c.image)} ({image.repository}) is not from an allowed "
                f"registry ({', '.join(config.allowed_registries)})",
            )


def _image_digest(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if not config.require_digest:
        return
    for c in pod.containers:
        image = parse_image(c.image)
        if image is None or not image.pinned:
            yield _Problem(c, f"{c.path}.image {_show(c.image)} is not pinned by @sha256 digest")


def _image_tag(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        image = parse_image(c.image)
        if image is None:
            yield _Problem(c, f"{c.path}.image {_show(c.image)} is not an image reference")
        elif not image.pinned and image.tag is None:
            yield _Problem(c, f"{c.path}.image {_show(c.image)} has no tag (means latest)")
        elif not image.pinned and image.tag == "latest":
            yield _Problem(c, f"{c.path}.image {_show(c.image)} uses the latest tag")


_RESOURCE_KEYS = (
    ("requests", "cpu"),
    ("requests", "memory"),
    ("limits", "cpu"),
    ("limits", "memory"),
)


def _quantity_set(value: Any) -> bool:
    return (isinstance(value, str) and bool(value.strip())) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    )


def _resources(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if not config.require_limits:
        return
    pod_resources = _map(pod.spec.get("resources"))
    for c in pod.containers:
        if c.section == "ephemeralContainers":  # the API forbids resources on these
            continue
        resources = _map(c.spec.get("resources"))
        missing = [
            f"{group}.{key}"
            for group, key in _RESOURCE_KEYS
            if not _quantity_set(_map(resources.get(group)).get(key))
            and not _quantity_set(_map(pod_resources.get(group)).get(key))
        ]
        if missing:
            yield _Problem(c, f"{c.path}.resources has no {', '.join(missing)}")


def _automount(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    value = pod.spec.get("automountServiceAccountToken")
    if value is not False:
        shown = "unset (defaults to true)" if value is None else f"is {_show(value)}"
        yield _Problem(None, f"{pod.spec_path}.automountServiceAccountToken {shown}")


def _read_only_root(pod: _Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if not config.require_read_only_root or pod.windows:
        return
    for c in pod.containers:
        value = c.sc.get("readOnlyRootFilesystem")
        if value is not True:
            shown = "unset" if value is None else f"is {_show(value)}"
            yield _Problem(c, f"{c.sc_path}.readOnlyRootFilesystem {shown}")


# --- the rule table -----------------------------------------------------------------------

Check = Callable[[_Pod, PolicyConfig], Iterable[_Problem]]


@dataclass(frozen=True)
class Rule:
    id: str
    #: "baseline" and "restricted" rules follow the namespace's level; "extra" ones always run.
    level: Literal["baseline", "restricted", "extra"]
    severity: Severity
    title: str
    remediation: str
    check: Check = field(repr=False, compare=False)


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {r.id: r for r in rules}


_B, _R, _X = "pss-baseline/", "pss-restricted/", "policy/"

RULES: Mapping[str, Rule] = _rules(
    Rule(
        f"{_B}host-process",
        "baseline",
        Severity.CRITICAL,
        "Windows HostProcess container",
        "Remove securityContext.windowsOptions.hostProcess (or set it to false).",
        _host_process,
    ),
    Rule(
        f"{_B}host-network",
        "baseline",
        Severity.HIGH,
        "Pod shares the node's network",
        "Remove spec.hostNetwork (or set it to false); expose the pod through a Service.",
        _host_namespace("hostNetwork"),
    ),
    Rule(
        f"{_B}host-pid",
        "baseline",
        Severity.HIGH,
        "Pod shares the node's process namespace",
        "Remove spec.hostPID (or set it to false).",
        _host_namespace("hostPID"),
    ),
    Rule(
        f"{_B}host-ipc",
        "baseline",
        Severity.HIGH,
        "Pod shares the node's IPC namespace",
        "Remove spec.hostIPC (or set it to false).",
        _host_namespace("hostIPC"),
    ),
    Rule(
        f"{_B}privileged",
        "baseline",
        Severity.CRITICAL,
        "Privileged container",
        "Remove securityContext.privileged (or set it to false); add only the capabilities "
        "the process needs.",
        _privileged,
    ),
    Rule(
        f"{_B}capabilities",
        "baseline",
        Severity.HIGH,
        "Container adds non-default capabilities",
        "Remove capabilities beyond the runtime defaults from securityContext.capabilities.add.",
        _capabilities_baseline,
    ),
    Rule(
        f"{_B}host-path",
        "baseline",
        Severity.HIGH,
        "hostPath volume",
        "Replace the hostPath volume with a configMap, secret, emptyDir or persistentVolumeClaim.",
        _host_path,
    ),
    Rule(
        f"{_B}host-ports",
        "baseline",
        Severity.MEDIUM,
        "Container binds a host port",
        "Remove ports[].hostPort; expose the port through a Service.",
        _host_ports,
    ),
    Rule(
        f"{_B}apparmor",
        "baseline",
        Severity.MEDIUM,
        "AppArmor profile overridden",
        "Set appArmorProfile.type to RuntimeDefault or Localhost (or remove it), and drop "
        "AppArmor annotations other than runtime/default or localhost/*.",
        _apparmor,
    ),
    Rule(
        f"{_B}selinux",
        "baseline",
        Severity.MEDIUM,
        "Custom SELinux options",
        "Remove seLinuxOptions.user and .role; leave .type unset or use container_t, "
        "container_init_t, container_kvm_t or container_engine_t.",
        _selinux,
    ),
    Rule(
        f"{_B}proc-mount",
        "baseline",
        Severity.MEDIUM,
        "Unmasked /proc",
        "Remove securityContext.procMount (or set it to Default).",
        _proc_mount,
    ),
    Rule(
        f"{_B}seccomp",
        "baseline",
        Severity.MEDIUM,
        "Seccomp disabled",
        "Set seccompProfile.type to RuntimeDefault (or Localhost) instead of Unconfined.",
        _seccomp_baseline,
    ),
    Rule(
        f"{_B}sysctls",
        "baseline",
        Severity.MEDIUM,
        "Unsafe sysctl",
        "Remove sysctls outside the safe set from spec.securityContext.sysctls.",
        _sysctls,
    ),
    Rule(
        f"{_B}probe-host",
        "baseline",
        Severity.MEDIUM,
        "Probe or hook aimed at another host",
        "Remove .host from httpGet/tcpSocket probes and lifecycle handlers (they target the "
        "pod's own IP).",
        _probe_host,
    ),
    Rule(
        f"{_R}volume-types",
        "restricted",
        Severity.MEDIUM,
        "Volume type not allowed",
        "Use only configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, "
        "projected or secret volumes.",
        _volume_types,
    ),
    Rule(
        f"{_R}allow-privilege-escalation",
        "restricted",
        Severity.MEDIUM,
        "Privilege escalation not disabled",
        "Set securityContext.allowPrivilegeEscalation: false on the container.",
        _allow_privilege_escalation,
    ),
    Rule(
        f"{_R}run-as-non-root",
        "restricted",
        Severity.MEDIUM,
        "Not required to run as non-root",
        "Set runAsNonRoot: true in spec.securityContext (covers every container) and do not "
        "set it to false on a container.",
        _run_as_non_root,
    ),
    Rule(
        f"{_R}run-as-user",
        "restricted",
        Severity.MEDIUM,
        "Runs as uid 0",
        "Set runAsUser to a non-zero uid (or remove it and rely on the image's USER).",
        _run_as_user,
    ),
    Rule(
        f"{_R}seccomp",
        "restricted",
        Severity.MEDIUM,
        "No seccomp profile",
        "Set spec.securityContext.seccompProfile.type: RuntimeDefault (or Localhost).",
        _seccomp_restricted,
    ),
    Rule(
        f"{_R}capabilities",
        "restricted",
        Severity.MEDIUM,
        "Capabilities not dropped",
        'Set securityContext.capabilities.drop: ["ALL"] and add at most NET_BIND_SERVICE.',
        _capabilities_restricted,
    ),
    Rule(
        f"{_X}allowed-registry",
        "extra",
        Severity.HIGH,
        "Image from a registry not allowed",
        "Pull the image from an allowed registry (mirror it there first).",
        _allowed_registry,
    ),
    Rule(
        f"{_X}image-digest",
        "extra",
        Severity.MEDIUM,
        "Image not pinned by digest",
        "Reference the image as name@sha256:<digest>.",
        _image_digest,
    ),
    Rule(
        f"{_X}image-tag",
        "extra",
        Severity.LOW,
        "Image uses latest or no tag",
        "Use an immutable version tag, or pin by @sha256 digest.",
        _image_tag,
    ),
    Rule(
        f"{_X}resources",
        "extra",
        Severity.LOW,
        "Resource requests or limits missing",
        "Set resources.requests and resources.limits for cpu and memory on the container.",
        _resources,
    ),
    Rule(
        f"{_X}automount-service-account-token",
        "extra",
        Severity.LOW,
        "Service account token mounted",
        "Set spec.automountServiceAccountToken: false unless the pod calls the Kubernetes API.",
        _automount,
    ),
    Rule(
        f"{_X}read-only-root-filesystem",
        "extra",
        Severity.LOW,
        "Root filesystem writable",
        "Set securityContext.readOnlyRootFilesystem: true; mount an emptyDir where the process "
        "writes.",
        _read_only_root,
    ),
)


def rules_for(level: Level) -> list[Rule]:
    """The rules a namespace at `level` is held to (extras included)."""
    wanted = {
        "privileged": {"extra"},
        "baseline": {"baseline", "extra"},
        "restricted": {"baseline", "restricted", "extra"},
    }[level]
    return [r for r in RULES.values() if r.level in wanted]


# --- evaluation ---------------------------------------------------------------------------


def _image_matches(image: Any, patterns: tuple[str, ...]) -> bool:
    candidates = {image} if isinstance(image, str) else set()
    parsed = parse_image(image)
    if parsed is not None:
        candidates |= {parsed.full, parsed.repository}
    return any(fnmatchcase(c, p) for c in candidates for p in patterns)


def _exempt(exemption: Exemption, workload: Workload, rule_id: str, images: list[Any]) -> bool:
    if exemption.rules and not any(fnmatchcase(rule_id, p) for p in exemption.rules):
        return False
    if exemption.namespaces and not any(
        fnmatchcase(workload.namespace, p) for p in exemption.namespaces
    ):
        return False
    full_name = f"{workload.namespace}/{workload.name}"
    if exemption.workloads and not any(fnmatchcase(full_name, p) for p in exemption.workloads):
        return False
    return not exemption.images or (
        bool(images) and all(_image_matches(i, exemption.images) for i in images)
    )


def evaluate(workload: Workload, config: PolicyConfig) -> list[Finding]:
    """Findings for `workload` under its namespace's level, the extras, and the exemptions.

    In rule order (`RULES`), then container order; one finding per rule and container or pod.
    """
    pod = _Pod.of(workload)
    findings = []
    for rule in rules_for(config.level_for(workload.namespace)):
        grouped: dict[str, tuple[_Container | None, list[str], Severity]] = {}
        for problem in rule.check(pod, config):
            key = problem.target.path if problem.target is not None else ""
            target, texts, severity = grouped.get(key, (problem.target, [], rule.severity))
            if problem.severity is not None and problem.severity.rank > severity.rank:
                severity = problem.severity
            texts.append(problem.text)
            grouped[key] = (target, texts, severity)
        for target, texts, severity in grouped.values():
            images = [target.image] if target else [c.image for c in pod.containers]
            if any(_exempt(e, workload, rule.id, images) for e in config.exemptions):
                continue
            where = f"Container {target.name!r}" if target else "Pod"
            findings.append(
                Finding(
                    check_id=rule.id,
                    severity=severity,
                    title=rule.title,
                    detail=f"{where}: {'; '.join(texts)}.",
                    remediation=rule.remediation,
                    package=target.name if target else "pod",
                )
            )
    return findings


def evaluate_object(
    obj: Mapping[str, Any], config: PolicyConfig, *, cluster: str = ""
) -> list[Finding]:
    """`evaluate` on the workload in `obj`; no findings when it has no pod spec."""
    workload = Workload.from_object(obj, cluster=cluster)
    return [] if workload is None else evaluate(workload, config)


MESSAGE_LIMIT = 1024
_LINE_LIMIT = 320


def _cut(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


def violations_message(findings: Iterable[Finding], *, limit: int = MESSAGE_LIMIT) -> str:
    """Plain text for an AdmissionReview denial: one line per violation, worst first, with the
    field and the fix; at most `limit` bytes, the rest counted as "and N more". Empty when
    there are no findings."""
    ordered = worst_first(list(findings))
    if not ordered:
        return ""
    header = f"{len(ordered)} policy violation{'s' if len(ordered) != 1 else ''}:"
    lines = [header]
    size = len(header.encode())
    for n, f in enumerate(ordered):
        where = f.package or "pod"
        detail = f.detail.removeprefix("Pod: ").removeprefix(f"Container {where!r}: ")
        line = _cut(
            f"- [{f.severity}] {f.check_id} ({where}): {detail} Fix: {f.remediation}",
            _LINE_LIMIT,
        )
        rest = len(ordered) - n - 1
        trailer = len(f"\n...and {len(ordered)} more".encode()) if rest else 0
        if size + 1 + len(line.encode()) + trailer > limit:
            more = len(ordered) - n
            lines.append(f"...and {more} more")
            break
        lines.append(line)
        size += 1 + len(line.encode())
    return _cut("\n".join(lines), limit)
