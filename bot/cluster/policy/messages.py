"""What a policy finding says: each rule's level, severity, title and remediation, and the
plain-text denial an admission webhook answers with.

Pure data and text: the checks that find the problems are in `rules`, which joins each text here
to its check; `config` reads the rule ids from here to validate exemptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

from bot.model.findings import Finding, Severity, worst_first

#: "baseline" and "restricted" rules follow the namespace's level; "extra" ones always run.
RuleLevel: TypeAlias = Literal["baseline", "restricted", "extra"]


@dataclass(frozen=True)
class RuleText:
    level: RuleLevel
    severity: Severity
    title: str
    remediation: str


_B, _R, _X = "pss-baseline/", "pss-restricted/", "policy/"

#: Every rule, in the order rules run and findings are listed.
RULE_TEXTS: Mapping[str, RuleText] = {
    f"{_B}host-process": RuleText(
        "baseline",
        Severity.CRITICAL,
        "Windows HostProcess container",
        "Remove securityContext.windowsOptions.hostProcess (or set it to false).",
    ),
    f"{_B}host-network": RuleText(
        "baseline",
        Severity.HIGH,
        "Pod shares the node's network",
        "Remove spec.hostNetwork (or set it to false); expose the pod through a Service.",
    ),
    f"{_B}host-pid": RuleText(
        "baseline",
        Severity.HIGH,
        "Pod shares the node's process namespace",
        "Remove spec.hostPID (or set it to false).",
    ),
    f"{_B}host-ipc": RuleText(
        "baseline",
        Severity.HIGH,
        "Pod shares the node's IPC namespace",
        "Remove spec.hostIPC (or set it to false).",
    ),
    f"{_B}privileged": RuleText(
        "baseline",
        Severity.CRITICAL,
        "Privileged container",
        "Remove securityContext.privileged (or set it to false); add only the capabilities "
        "the process needs.",
    ),
    f"{_B}capabilities": RuleText(
        "baseline",
        Severity.HIGH,
        "Container adds non-default capabilities",
        "Remove capabilities beyond the runtime defaults from securityContext.capabilities.add.",
    ),
    f"{_B}host-path": RuleText(
        "baseline",
        Severity.HIGH,
        "hostPath volume",
        "Replace the hostPath volume with a configMap, secret, emptyDir or persistentVolumeClaim.",
    ),
    f"{_B}host-ports": RuleText(
        "baseline",
        Severity.MEDIUM,
        "Container binds a host port",
        "Remove ports[].hostPort; expose the port through a Service.",
    ),
    f"{_B}apparmor": RuleText(
        "baseline",
        Severity.MEDIUM,
        "AppArmor profile overridden",
        "Set appArmorProfile.type to RuntimeDefault or Localhost (or remove it), and drop "
        "AppArmor annotations other than runtime/default or localhost/*.",
    ),
    f"{_B}selinux": RuleText(
        "baseline",
        Severity.MEDIUM,
        "Custom SELinux options",
        "Remove seLinuxOptions.user and .role; leave .type unset or use container_t, "
        "container_init_t, container_kvm_t or container_engine_t.",
    ),
    f"{_B}proc-mount": RuleText(
        "baseline",
        Severity.MEDIUM,
        "Unmasked /proc",
        "Remove securityContext.procMount (or set it to Default).",
    ),
    f"{_B}seccomp": RuleText(
        "baseline",
        Severity.MEDIUM,
        "Seccomp disabled",
        "Set seccompProfile.type to RuntimeDefault (or Localhost) instead of Unconfined.",
    ),
    f"{_B}sysctls": RuleText(
        "baseline",
        Severity.MEDIUM,
        "Unsafe sysctl",
        "Remove sysctls outside the safe set from spec.securityContext.sysctls.",
    ),
    f"{_B}probe-host": RuleText(
        "baseline",
        Severity.MEDIUM,
        "Probe or hook aimed at another host",
        "Remove .host from httpGet/tcpSocket probes and lifecycle handlers (they target the "
        "pod's own IP).",
    ),
    f"{_R}volume-types": RuleText(
        "restricted",
        Severity.MEDIUM,
        "Volume type not allowed",
        "Use only configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, "
        "projected or secret volumes.",
    ),
    f"{_R}allow-privilege-escalation": RuleText(
        "restricted",
        Severity.MEDIUM,
        "Privilege escalation not disabled",
        "Set securityContext.allowPrivilegeEscalation: false on the container.",
    ),
    f"{_R}run-as-non-root": RuleText(
        "restricted",
        Severity.MEDIUM,
        "Not required to run as non-root",
        "Set runAsNonRoot: true in spec.securityContext (covers every container) and do not "
        "set it to false on a container.",
    ),
    f"{_R}run-as-user": RuleText(
        "restricted",
        Severity.MEDIUM,
        "Runs as uid 0",
        "Set runAsUser to a non-zero uid (or remove it and rely on the image's USER).",
    ),
    f"{_R}seccomp": RuleText(
        "restricted",
        Severity.MEDIUM,
        "No seccomp profile",
        "Set spec.securityContext.seccompProfile.type: RuntimeDefault (or Localhost).",
    ),
    f"{_R}capabilities": RuleText(
        "restricted",
        Severity.MEDIUM,
        "Capabilities not dropped",
        'Set securityContext.capabilities.drop: ["ALL"] and add at most NET_BIND_SERVICE.',
    ),
    f"{_X}allowed-registry": RuleText(
        "extra",
        Severity.HIGH,
        "Image from a registry not allowed",
        "Pull the image from an allowed registry (mirror it there first).",
    ),
    f"{_X}image-digest": RuleText(
        "extra",
        Severity.MEDIUM,
        "Image not pinned by digest",
        "Reference the image as name@sha256:<digest>.",
    ),
    f"{_X}image-tag": RuleText(
        "extra",
        Severity.LOW,
        "Image uses latest or no tag",
        "Use an immutable version tag, or pin by @sha256 digest.",
    ),
    f"{_X}resources": RuleText(
        "extra",
        Severity.LOW,
        "Resource requests or limits missing",
        "Set resources.requests and resources.limits for cpu and memory on the container.",
    ),
    f"{_X}automount-service-account-token": RuleText(
        "extra",
        Severity.LOW,
        "Service account token mounted",
        "Set spec.automountServiceAccountToken: false unless the pod calls the Kubernetes API.",
    ),
    f"{_X}read-only-root-filesystem": RuleText(
        "extra",
        Severity.LOW,
        "Root filesystem writable",
        "Set securityContext.readOnlyRootFilesystem: true; mount an emptyDir where the process "
        "writes.",
    ),
}


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
