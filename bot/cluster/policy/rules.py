"""Kubernetes workload policy: the Pod Security Standards rule by rule, plus image rules.

Pure: a workload object (a plain JSON-ish mapping) and a `PolicyConfig` in, findings out.

What is checked is the pod spec, found by `pod_spec_of` in a Pod, in `spec.template` of a
Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or ReplicationController, and in
`spec.jobTemplate.spec.template` of a CronJob. Every container list is checked: `containers`,
`initContainers` and `ephemeralContainers`. Where a field exists at both levels
(`runAsNonRoot`, `runAsUser`, `seccompProfile`, `seLinuxOptions`, `appArmorProfile`,
`windowsOptions.hostProcess`) the container's value overrides the pod's, as the kubelet does.

Rules (see `RULES`; their titles, severities and remediations are in `messages`):

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from bot.cluster.policy.config import Exemption, Level, PolicyConfig, normalize_prefix
from bot.cluster.policy.messages import RULE_TEXTS, RuleLevel
from bot.cluster.policy.workload import Container, Pod, Workload, as_list, as_map
from bot.images.reference import InvalidReference, parse_normalized
from bot.model.findings import Finding, Severity

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
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class _Problem:
    """One offending field: on a container, or on the pod (`target` None)."""

    target: Container | None
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


def _host_process(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    value = as_map(pod.sc.get("windowsOptions")).get("hostProcess")
    if not _unset_or_false(value):
        yield _Problem(None, f"{pod.sc_path}.windowsOptions.hostProcess is {_show(value)}")
    for c in pod.containers:
        value = as_map(c.sc.get("windowsOptions")).get("hostProcess")
        if not _unset_or_false(value):
            yield _Problem(c, f"{c.sc_path}.windowsOptions.hostProcess is {_show(value)}")


def _host_namespace(key: str) -> Callable[[Pod, PolicyConfig], Iterator[_Problem]]:
    def check(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
        value = pod.spec.get(key)
        if not _unset_or_false(value):
            yield _Problem(None, f"{pod.spec_path}.{key} is {_show(value)}")

    return check


def _privileged(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        value = c.sc.get("privileged")
        if not _unset_or_false(value):
            yield _Problem(c, f"{c.sc_path}.privileged is {_show(value)}")


def _capabilities_baseline(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        added = as_list(as_map(c.sc.get("capabilities")).get("add"))
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


def _volumes(pod: Pod) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for i, volume in enumerate(as_list(pod.spec.get("volumes"))):
        if isinstance(volume, Mapping):
            yield i, volume


def _host_path(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for i, volume in _volumes(pod):
        source = volume.get("hostPath")
        if source is None:
            continue
        path = as_map(source).get("path")
        yield _Problem(
            None,
            f"{pod.spec_path}.volumes[{i}].hostPath (volume {_show(volume.get('name'))}) "
            f"mounts {_show(path)} from the node",
            Severity.CRITICAL if _is_node_path(path) else None,
        )


def _host_ports(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        bad = [
            f"{c.path}.ports[{i}].hostPort is {_show(port.get('hostPort'))}"
            for i, port in enumerate(as_list(c.spec.get("ports")))
            if isinstance(port, Mapping) and not _one_of(port.get("hostPort"), None, 0)
        ]
        if bad:
            yield _Problem(c, "; ".join(bad))


def _profile_type_ok(profile: Any) -> bool:
    """An unset profile, or one of type RuntimeDefault or Localhost."""
    return not isinstance(profile, Mapping) or _one_of(profile.get("type"), *_PROFILE_TYPES)


def _profile_problems(pod: Pod, key: str, allowed: Callable[[Any], bool]) -> Iterator[_Problem]:
    profile = pod.sc.get(key)
    if not allowed(profile):
        yield _Problem(None, f"{pod.sc_path}.{key}.type is {_show(as_map(profile).get('type'))}")
    for c in pod.containers:
        profile = c.sc.get(key)
        if not allowed(profile):
            yield _Problem(c, f"{c.sc_path}.{key}.type is {_show(as_map(profile).get('type'))}")


def _apparmor(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    yield from _profile_problems(pod, "appArmorProfile", _profile_type_ok)
    for key, value in as_map(pod.meta.get("annotations")).items():
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


def _selinux(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    problems = _selinux_problems(pod.sc.get("seLinuxOptions"), pod.sc_path)
    if problems:
        yield _Problem(None, "; ".join(problems))
    for c in pod.containers:
        problems = _selinux_problems(c.sc.get("seLinuxOptions"), c.sc_path)
        if problems:
            yield _Problem(c, "; ".join(problems))


def _proc_mount(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        value = c.sc.get("procMount")
        if not _one_of(value, None, "Default"):
            yield _Problem(c, f"{c.sc_path}.procMount is {_show(value)}")


def _seccomp_baseline(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    yield from _profile_problems(pod, "seccompProfile", _profile_type_ok)


def _sysctls(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    bad = [
        f"{pod.sc_path}.sysctls[{i}].name is {_show(entry.get('name'))}"
        for i, entry in enumerate(as_list(pod.sc.get("sysctls")))
        if isinstance(entry, Mapping)
        and not (isinstance(entry.get("name"), str) and entry.get("name") in SAFE_SYSCTLS)
    ]
    if bad:
        yield _Problem(None, "; ".join(bad))


_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_HANDLERS = ("postStart", "preStop")


def _probe_host(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    for c in pod.containers:
        handlers = [(f"{c.path}.{p}", c.spec.get(p)) for p in _PROBES]
        lifecycle = as_map(c.spec.get("lifecycle"))
        handlers += [(f"{c.path}.lifecycle.{h}", lifecycle.get(h)) for h in _HANDLERS]
        bad = []
        for path, handler in handlers:
            for action in ("httpGet", "tcpSocket"):
                host = as_map(as_map(handler).get(action)).get("host")
                if not _one_of(host, None, ""):
                    bad.append(f"{path}.{action}.host is {_show(host)}")
        if bad:
            yield _Problem(c, "; ".join(bad))


# --- restricted ---------------------------------------------------------------------------


def _volume_types(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    bad = []
    for i, volume in _volumes(pod):
        for key, source in volume.items():
            if key != "name" and source is not None and key not in RESTRICTED_VOLUME_TYPES:
                bad.append(
                    f"{pod.spec_path}.volumes[{i}].{key} (volume {_show(volume.get('name'))})"
                )
    if bad:
        yield _Problem(None, "; ".join(bad))


def _allow_privilege_escalation(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if pod.windows:
        return
    for c in pod.containers:
        value = c.sc.get("allowPrivilegeEscalation")
        if value is not False:
            shown = "unset" if value is None else f"is {_show(value)}"
            yield _Problem(c, f"{c.sc_path}.allowPrivilegeEscalation {shown}")


def _run_as_non_root(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
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


def _run_as_user(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    value = pod.sc.get("runAsUser")
    if not _uid_ok(value):
        yield _Problem(None, f"{pod.sc_path}.runAsUser is {_show(value)}")
    for c in pod.containers:
        value = c.sc.get("runAsUser")
        if not _uid_ok(value):
            yield _Problem(c, f"{c.sc_path}.runAsUser is {_show(value)}")


def _seccomp_restricted(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if pod.windows:
        return
    pod_profile = pod.sc.get("seccompProfile")
    pod_set = isinstance(pod_profile, Mapping)
    if pod_set and not _profile_type_ok(pod_profile):
        yield _Problem(
            None, f"{pod.sc_path}.seccompProfile.type is {_show(as_map(pod_profile).get('type'))}"
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


def _capabilities_restricted(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if pod.windows:
        return
    for c in pod.containers:
        caps = as_map(c.sc.get("capabilities"))
        problems = []
        if not any(_same(cap, "ALL") for cap in as_list(caps.get("drop"))):
            problems.append(f'{c.sc_path}.capabilities.drop does not include "ALL"')
        bad = [cap for cap in as_list(caps.get("add")) if not _same(cap, "NET_BIND_SERVICE")]
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
    `ref` is not an image reference at all (see `bot.images.reference.parse_normalized`)."""
    if not isinstance(ref, str):
        return None
    try:
        parsed = parse_normalized(ref.strip())
    except InvalidReference:
        return None
    return ImageName(parsed.domain, parsed.path, parsed.tag, parsed.digest)


def registry_allowed(image: ImageName, allowed: Iterable[str]) -> bool:
    """Whether the image's repository is at or under one of the `allowed` prefixes.

    Matching is by whole path component (`ghcr.io/acme` allows `ghcr.io/acme/app`, not
    `ghcr.io/acme-evil/app`), and a glob matches within one component only.
    """
    parts = image.repository.split("/")
    for entry in allowed:
        prefix = normalize_prefix(entry.strip().rstrip("/")).split("/")
        if len(prefix) <= len(parts) and all(
            fnmatchcase(part, pattern) for part, pattern in zip(parts, prefix, strict=False)
        ):
            return True
    return False


def _allowed_registry(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
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


def _image_digest(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if not config.require_digest:
        return
    for c in pod.containers:
        image = parse_image(c.image)
        if image is None or not image.pinned:
            yield _Problem(c, f"{c.path}.image {_show(c.image)} is not pinned by @sha256 digest")


def _image_tag(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
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


def _resources(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if not config.require_limits:
        return
    pod_resources = as_map(pod.spec.get("resources"))
    for c in pod.containers:
        if c.section == "ephemeralContainers":  # the API forbids resources on these
            continue
        resources = as_map(c.spec.get("resources"))
        missing = [
            f"{group}.{key}"
            for group, key in _RESOURCE_KEYS
            if not _quantity_set(as_map(resources.get(group)).get(key))
            and not _quantity_set(as_map(pod_resources.get(group)).get(key))
        ]
        if missing:
            yield _Problem(c, f"{c.path}.resources has no {', '.join(missing)}")


def _automount(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    value = pod.spec.get("automountServiceAccountToken")
    if value is not False:
        shown = "unset (defaults to true)" if value is None else f"is {_show(value)}"
        yield _Problem(None, f"{pod.spec_path}.automountServiceAccountToken {shown}")


def _read_only_root(pod: Pod, config: PolicyConfig) -> Iterator[_Problem]:
    if not config.require_read_only_root or pod.windows:
        return
    for c in pod.containers:
        value = c.sc.get("readOnlyRootFilesystem")
        if value is not True:
            shown = "unset" if value is None else f"is {_show(value)}"
            yield _Problem(c, f"{c.sc_path}.readOnlyRootFilesystem {shown}")


# --- the rule table -----------------------------------------------------------------------

Check = Callable[[Pod, PolicyConfig], Iterable[_Problem]]


@dataclass(frozen=True)
class Rule:
    id: str
    #: "baseline" and "restricted" rules follow the namespace's level; "extra" ones always run.
    level: RuleLevel
    severity: Severity
    title: str
    remediation: str
    check: Check = field(repr=False, compare=False)


_B, _R, _X = "pss-baseline/", "pss-restricted/", "policy/"

_CHECKS: Mapping[str, Check] = {
    f"{_B}host-process": _host_process,
    f"{_B}host-network": _host_namespace("hostNetwork"),
    f"{_B}host-pid": _host_namespace("hostPID"),
    f"{_B}host-ipc": _host_namespace("hostIPC"),
    f"{_B}privileged": _privileged,
    f"{_B}capabilities": _capabilities_baseline,
    f"{_B}host-path": _host_path,
    f"{_B}host-ports": _host_ports,
    f"{_B}apparmor": _apparmor,
    f"{_B}selinux": _selinux,
    f"{_B}proc-mount": _proc_mount,
    f"{_B}seccomp": _seccomp_baseline,
    f"{_B}sysctls": _sysctls,
    f"{_B}probe-host": _probe_host,
    f"{_R}volume-types": _volume_types,
    f"{_R}allow-privilege-escalation": _allow_privilege_escalation,
    f"{_R}run-as-non-root": _run_as_non_root,
    f"{_R}run-as-user": _run_as_user,
    f"{_R}seccomp": _seccomp_restricted,
    f"{_R}capabilities": _capabilities_restricted,
    f"{_X}allowed-registry": _allowed_registry,
    f"{_X}image-digest": _image_digest,
    f"{_X}image-tag": _image_tag,
    f"{_X}resources": _resources,
    f"{_X}automount-service-account-token": _automount,
    f"{_X}read-only-root-filesystem": _read_only_root,
}
if _CHECKS.keys() != RULE_TEXTS.keys():  # every rule needs its check and its text
    raise RuntimeError(f"rules without text or check: {_CHECKS.keys() ^ RULE_TEXTS.keys()}")
RULES: Mapping[str, Rule] = {
    rule_id: Rule(rule_id, t.level, t.severity, t.title, t.remediation, _CHECKS[rule_id])
    for rule_id, t in RULE_TEXTS.items()
}


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
    pod = Pod.of(workload)
    findings = []
    for rule in rules_for(config.level_for(workload.namespace)):
        grouped: dict[str, tuple[Container | None, list[str], Severity]] = {}
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
