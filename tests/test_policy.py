"""Kubernetes workload policy: the Pod Security Standards rule by rule, image rules, exemptions.

The real admission and watch samples in tests/fixtures/kubernetes/ are byte-for-byte copies of
kube-review's and the Gatekeeper and Kubernetes documentation's examples.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.cluster.policy import (
    RULES,
    SAFE_SYSCTLS,
    Exemption,
    PolicyConfig,
    Workload,
    evaluate,
    evaluate_object,
    parse_image,
    pod_spec_of,
    registry_allowed,
    rules_for,
    violations_message,
)
from bot.model.findings import Finding, Severity

FIXTURES = Path(__file__).parent / "fixtures" / "kubernetes"
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"ghcr.io/acme/app:1.4.2@{DIGEST}"
#: Everything on: the strictest configuration, which the compliant pod passes.
STRICT = PolicyConfig(
    default_level="restricted",
    allowed_registries=("ghcr.io/acme",),
    require_digest=True,
    require_limits=True,
    require_read_only_root=True,
)
Spec = dict[str, Any]


def container(name: Any = "app", **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "image": IMAGE,
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    c.update(extra)
    return c


def pod(spec: Spec | None = None, *, namespace: str = "apps", name: str = "web") -> dict[str, Any]:
    """A Pod that passes every rule at the restricted level with every extra on."""
    base: Spec = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container()],
    }
    base.update(spec or {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": base,
    }


def run(obj: dict[str, Any], config: PolicyConfig = STRICT) -> list[Finding]:
    workload = Workload.from_object(obj)
    assert workload is not None
    return evaluate(workload, config)


def ids(findings: list[Finding]) -> list[str]:
    return sorted(f.check_id for f in findings)


def by_id(findings: list[Finding], check_id: str) -> list[Finding]:
    return [f for f in findings if f.check_id == check_id]


def csc(obj: dict[str, Any], index: int = 0, section: str = "containers") -> dict[str, Any]:
    """The securityContext of one container, to edit."""
    sc: dict[str, Any] = obj["spec"][section][index].setdefault("securityContext", {})
    return sc


def psc(obj: dict[str, Any]) -> dict[str, Any]:
    sc: dict[str, Any] = obj["spec"].setdefault("securityContext", {})
    return sc


def test_the_compliant_pod_passes_everything() -> None:
    assert run(pod()) == []


def test_every_rule_has_a_title_remediation_and_a_namespaced_id() -> None:
    for rule_id, rule in RULES.items():
        assert rule.id == rule_id
        assert rule_id.startswith(("pss-baseline/", "pss-restricted/", "policy/"))
        assert rule.title and rule.remediation
        assert (
            rule.level
            == {"pss-baseline": "baseline", "pss-restricted": "restricted", "policy": "extra"}[
                rule_id.split("/")[0]
            ]
        )


# --- each rule: a minimal failing pod, and the same pod fixed -----------------------------

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """Set a dotted path (list items by index) in the object, creating mappings on the way."""

    def edit(obj: dict[str, Any]) -> None:
        node: Any = obj
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        last = parts[-1]
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value

    return edit


_DELETE = object()
C0 = "spec.containers.0.securityContext"

# (rule, failing edit, fixing edit, field path named in the detail, package, other rules fired)
CASES: list[tuple[str, Edit, Edit, str, str, set[str]]] = [
    (
        "pss-baseline/host-process",
        _set("spec.securityContext.windowsOptions", {"hostProcess": True}),
        _set("spec.securityContext.windowsOptions", {"hostProcess": False}),
        "spec.securityContext.windowsOptions.hostProcess",
        "pod",
        set(),
    ),
    (
        "pss-baseline/host-process",
        _set(f"{C0}.windowsOptions", {"hostProcess": True}),
        _set(f"{C0}.windowsOptions", {}),
        "spec.containers[0].securityContext.windowsOptions.hostProcess",
        "app",
        set(),
    ),
    (
        "pss-baseline/host-network",
        _set("spec.hostNetwork", True),
        _set("spec.hostNetwork", False),
        "spec.hostNetwork",
        "pod",
        set(),
    ),
    (
        "pss-baseline/host-pid",
        _set("spec.hostPID", True),
        _set("spec.hostPID", _DELETE),
        "spec.hostPID",
        "pod",
        set(),
    ),
    (
        "pss-baseline/host-ipc",
        _set("spec.hostIPC", True),
        _set("spec.hostIPC", None),
        "spec.hostIPC",
        "pod",
        set(),
    ),
    (
        "pss-baseline/privileged",
        _set(f"{C0}.privileged", True),
        _set(f"{C0}.privileged", False),
        "spec.containers[0].securityContext.privileged",
        "app",
        set(),
    ),
    (
        "pss-baseline/capabilities",
        _set(f"{C0}.capabilities", {"drop": ["ALL"], "add": ["SYS_TIME"]}),
        _set(f"{C0}.capabilities", {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
        "spec.containers[0].securityContext.capabilities.add",
        "app",
        {"pss-restricted/capabilities"},
    ),
    (
        "pss-baseline/host-path",
        _set("spec.volumes", [{"name": "data", "hostPath": {"path": "/srv/data"}}]),
        _set("spec.volumes", [{"name": "data", "emptyDir": {}}]),
        "spec.volumes[0].hostPath",
        "pod",
        {"pss-restricted/volume-types"},
    ),
    (
        "pss-baseline/host-ports",
        _set(
            "spec.containers.0.ports",
            [{"containerPort": 80}, {"containerPort": 443, "hostPort": 443}],
        ),
        _set(
            "spec.containers.0.ports",
            [{"containerPort": 80, "hostPort": 0}, {"containerPort": 443}],
        ),
        "spec.containers[0].ports[1].hostPort",
        "app",
        set(),
    ),
    (
        "pss-baseline/apparmor",
        _set(f"{C0}.appArmorProfile", {"type": "Unconfined"}),
        _set(f"{C0}.appArmorProfile", {"type": "RuntimeDefault"}),
        "spec.containers[0].securityContext.appArmorProfile.type",
        "app",
        set(),
    ),
    (
        "pss-baseline/apparmor",
        _set("spec.securityContext.appArmorProfile", {"type": "Unconfined"}),
        _set(
            "spec.securityContext.appArmorProfile",
            {"type": "Localhost", "localhostProfile": "k8s-app"},
        ),
        "spec.securityContext.appArmorProfile.type",
        "pod",
        set(),
    ),
    (
        "pss-baseline/apparmor",
        _set(
            "metadata.annotations",
            {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"},
        ),
        _set(
            "metadata.annotations",
            {"container.apparmor.security.beta.kubernetes.io/app": "localhost/k8s-app"},
        ),
        "metadata.annotations['container.apparmor.security.beta.kubernetes.io/app']",
        "app",
        set(),
    ),
    (
        "pss-baseline/selinux",
        _set("spec.securityContext.seLinuxOptions", {"type": "spc_t"}),
        _set("spec.securityContext.seLinuxOptions", {"type": "container_engine_t"}),
        "spec.securityContext.seLinuxOptions.type",
        "pod",
        set(),
    ),
    (
        "pss-baseline/selinux",
        _set(f"{C0}.seLinuxOptions", {"user": "system_u", "role": "system_r"}),
        _set(f"{C0}.seLinuxOptions", {"level": "s0:c123,c456"}),
        "spec.containers[0].securityContext.seLinuxOptions.user",
        "app",
        set(),
    ),
    (
        "pss-baseline/proc-mount",
        _set(f"{C0}.procMount", "Unmasked"),
        _set(f"{C0}.procMount", "Default"),
        "spec.containers[0].securityContext.procMount",
        "app",
        set(),
    ),
    (
        "pss-baseline/seccomp",
        _set(f"{C0}.seccompProfile", {"type": "Unconfined"}),
        _set(f"{C0}.seccompProfile", {"type": "Localhost", "localhostProfile": "p.json"}),
        "spec.containers[0].securityContext.seccompProfile.type",
        "app",
        {"pss-restricted/seccomp"},
    ),
    (
        "pss-baseline/sysctls",
        _set(
            "spec.securityContext.sysctls",
            [
                {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                {"name": "kernel.msgmax", "value": "65536"},
            ],
        ),
        _set(
            "spec.securityContext.sysctls", [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]
        ),
        "spec.securityContext.sysctls[1].name",
        "pod",
        set(),
    ),
    (
        "pss-baseline/probe-host",
        _set("spec.containers.0.livenessProbe", {"httpGet": {"host": "10.0.0.1", "port": 80}}),
        _set("spec.containers.0.livenessProbe", {"httpGet": {"path": "/healthz", "port": 80}}),
        "spec.containers[0].livenessProbe.httpGet.host",
        "app",
        set(),
    ),
    (
        "pss-baseline/probe-host",
        _set("spec.containers.0.lifecycle", {"preStop": {"tcpSocket": {"host": "db", "port": 1}}}),
        _set("spec.containers.0.lifecycle", {"preStop": {"exec": {"command": ["sleep", "5"]}}}),
        "spec.containers[0].lifecycle.preStop.tcpSocket.host",
        "app",
        set(),
    ),
    (
        "pss-restricted/volume-types",
        _set("spec.volumes", [{"name": "share", "nfs": {"server": "nas", "path": "/x"}}]),
        _set("spec.volumes", [{"name": "share", "persistentVolumeClaim": {"claimName": "share"}}]),
        "spec.volumes[0].nfs",
        "pod",
        set(),
    ),
    (
        "pss-restricted/allow-privilege-escalation",
        _set(f"{C0}.allowPrivilegeEscalation", _DELETE),
        _set(f"{C0}.allowPrivilegeEscalation", False),
        "spec.containers[0].securityContext.allowPrivilegeEscalation",
        "app",
        set(),
    ),
    (
        "pss-restricted/allow-privilege-escalation",
        _set(f"{C0}.allowPrivilegeEscalation", True),
        _set(f"{C0}.allowPrivilegeEscalation", False),
        "spec.containers[0].securityContext.allowPrivilegeEscalation",
        "app",
        set(),
    ),
    (
        "pss-restricted/run-as-non-root",
        _set("spec.securityContext.runAsNonRoot", _DELETE),
        _set(f"{C0}.runAsNonRoot", True),
        "spec.containers[0].securityContext.runAsNonRoot",
        "app",
        set(),
    ),
    (
        "pss-restricted/run-as-user",
        _set("spec.securityContext.runAsUser", 0),
        _set("spec.securityContext.runAsUser", 10001),
        "spec.securityContext.runAsUser",
        "pod",
        set(),
    ),
    (
        "pss-restricted/run-as-user",
        _set(f"{C0}.runAsUser", 0),
        _set(f"{C0}.runAsUser", 65534),
        "spec.containers[0].securityContext.runAsUser",
        "app",
        set(),
    ),
    (
        "pss-restricted/seccomp",
        _set("spec.securityContext.seccompProfile", _DELETE),
        _set(f"{C0}.seccompProfile", {"type": "RuntimeDefault"}),
        "spec.containers[0].securityContext.seccompProfile",
        "app",
        set(),
    ),
    (
        "pss-restricted/capabilities",
        _set(f"{C0}.capabilities", {"drop": ["NET_RAW"]}),
        _set(f"{C0}.capabilities", {"drop": ["ALL"]}),
        "spec.containers[0].securityContext.capabilities.drop",
        "app",
        set(),
    ),
    (
        "pss-restricted/capabilities",
        _set(f"{C0}.capabilities", {"drop": ["ALL"], "add": ["CHOWN"]}),
        _set(f"{C0}.capabilities", {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
        "spec.containers[0].securityContext.capabilities.add",
        "app",
        set(),
    ),
    (
        "policy/allowed-registry",
        _set("spec.containers.0.image", f"quay.io/acme/app:1@{DIGEST}"),
        _set("spec.containers.0.image", f"ghcr.io/acme/tools/app:1@{DIGEST}"),
        "spec.containers[0].image",
        "app",
        set(),
    ),
    (
        "policy/image-digest",
        _set("spec.containers.0.image", "ghcr.io/acme/app:1.4.2"),
        _set("spec.containers.0.image", f"ghcr.io/acme/app@{DIGEST}"),
        "spec.containers[0].image",
        "app",
        set(),
    ),
    (
        "policy/resources",
        _set("spec.containers.0.resources", {"requests": {"cpu": "1", "memory": "1Gi"}}),
        _set(
            "spec.containers.0.resources",
            {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
        ),
        "spec.containers[0].resources",
        "app",
        set(),
    ),
    (
        "policy/automount-service-account-token",
        _set("spec.automountServiceAccountToken", _DELETE),
        _set("spec.automountServiceAccountToken", False),
        "spec.automountServiceAccountToken",
        "pod",
        set(),
    ),
    (
        "policy/automount-service-account-token",
        _set("spec.automountServiceAccountToken", True),
        _set("spec.automountServiceAccountToken", False),
        "spec.automountServiceAccountToken",
        "pod",
        set(),
    ),
    (
        "policy/read-only-root-filesystem",
        _set(f"{C0}.readOnlyRootFilesystem", False),
        _set(f"{C0}.readOnlyRootFilesystem", True),
        "spec.containers[0].securityContext.readOnlyRootFilesystem",
        "app",
        set(),
    ),
]


@pytest.mark.parametrize(
    ("rule", "fail", "fix", "field", "package", "also"),
    CASES,
    ids=[f"{c[0]}:{c[3]}" for c in CASES],
)
def test_rule_fails_and_the_fixed_pod_passes(
    rule: str, fail: Edit, fix: Edit, field: str, package: str, also: set[str]
) -> None:
    bad = pod()
    fail(bad)
    findings = run(bad)
    assert set(ids(findings)) == {rule} | also
    (finding,) = by_id(findings, rule)
    assert finding.package == package
    assert field in finding.detail
    assert finding.severity == RULES[rule].severity
    assert finding.title == RULES[rule].title
    assert finding.remediation == RULES[rule].remediation

    fixed = copy.deepcopy(bad)
    fix(fixed)
    assert run(fixed) == []


@pytest.mark.parametrize("rule", sorted({c[0] for c in CASES}))
def test_each_rule_applies_only_at_its_level(rule: str) -> None:
    case = next(c for c in CASES if c[0] == rule)
    bad = pod()
    case[1](bad)
    levels = {
        "pss-baseline": {"baseline", "restricted"},
        "pss-restricted": {"restricted"},
        "policy": {"privileged", "baseline", "restricted"},
    }[rule.split("/")[0]]
    for level in ("privileged", "baseline", "restricted"):
        config = STRICT.model_copy(update={"default_level": level})
        assert (rule in ids(run(bad, config))) == (level in levels), level


def test_rules_for_each_level() -> None:
    assert {r.level for r in rules_for("privileged")} == {"extra"}
    assert {r.level for r in rules_for("baseline")} == {"baseline", "extra"}
    assert len(rules_for("restricted")) == len(RULES)


def test_privileged_and_node_paths_are_critical() -> None:
    bad = pod(
        {
            "volumes": [
                {"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}},
                {"name": "data", "hostPath": {"path": "/srv"}},
            ]
        }
    )
    (finding,) = by_id(run(bad), "pss-baseline/host-path")
    assert finding.severity is Severity.CRITICAL
    assert "spec.volumes[0].hostPath" in finding.detail
    assert "spec.volumes[1].hostPath" in finding.detail
    for path in ("/", "/etc/kubernetes", "//proc/../proc/1", "/var/lib/kubelet"):
        bad = pod({"volumes": [{"name": "h", "hostPath": {"path": path}}]})
        assert by_id(run(bad), "pss-baseline/host-path")[0].severity is Severity.CRITICAL, path

    bad = pod()
    csc(bad)["capabilities"] = {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert by_id(run(bad), "pss-baseline/capabilities")[0].severity is Severity.CRITICAL
    csc(bad)["privileged"] = True
    assert by_id(run(bad), "pss-baseline/privileged")[0].severity is Severity.CRITICAL


def test_all_safe_sysctls_pass_and_the_unsafe_are_named() -> None:
    ok = pod()
    psc(ok)["sysctls"] = [{"name": n, "value": "1"} for n in sorted(SAFE_SYSCTLS)]
    assert run(ok) == []
    bad = pod()
    psc(bad)["sysctls"] = [{"name": "vm.swappiness", "value": "1"}, {"name": 7}]
    (finding,) = run(bad)
    assert '"vm.swappiness"' in finding.detail and "sysctls[1].name is 7" in finding.detail


def test_baseline_allows_an_unset_seccomp_profile() -> None:
    plain = pod({"securityContext": {}})
    assert "pss-baseline/seccomp" not in ids(run(plain))
    assert ids(run(plain, PolicyConfig(require_limits=False))) == []


# --- pod-level and container-level inheritance --------------------------------------------


def two_containers(**pod_sc: Any) -> dict[str, Any]:
    obj = pod({"containers": [container("a"), container("b")]})
    obj["spec"]["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}, **pod_sc}
    return obj


def test_run_as_non_root_at_pod_level_covers_every_container() -> None:
    assert run(two_containers(runAsNonRoot=True)) == []


def test_a_container_overriding_run_as_non_root_to_false_fails_alone() -> None:
    obj = two_containers(runAsNonRoot=True)
    csc(obj, 1)["runAsNonRoot"] = False
    (finding,) = run(obj)
    assert finding.check_id == "pss-restricted/run-as-non-root"
    assert finding.package == "b"
    assert "spec.containers[1].securityContext.runAsNonRoot is false" in finding.detail


def test_without_the_pod_level_setting_each_container_must_set_it() -> None:
    obj = two_containers()
    csc(obj, 0)["runAsNonRoot"] = True
    (finding,) = run(obj)
    assert (finding.check_id, finding.package) == ("pss-restricted/run-as-non-root", "b")


def test_pod_level_false_is_one_pod_finding_even_when_containers_say_true() -> None:
    obj = two_containers(runAsNonRoot=False)
    assert [(f.check_id, f.package) for f in run(obj)] == [
        ("pss-restricted/run-as-non-root", "pod")
    ]
    csc(obj, 0)["runAsNonRoot"] = True
    csc(obj, 1)["runAsNonRoot"] = True
    assert [f.package for f in run(obj)] == ["pod"]


def test_seccomp_at_pod_level_covers_containers_but_not_a_container_unconfined() -> None:
    obj = two_containers(runAsNonRoot=True)
    csc(obj, 1)["seccompProfile"] = {"type": "Unconfined"}
    assert [(f.check_id, f.package) for f in run(obj)] == [
        ("pss-baseline/seccomp", "b"),
        ("pss-restricted/seccomp", "b"),
    ]
    obj["spec"]["securityContext"].pop("seccompProfile")
    csc(obj, 1)["seccompProfile"] = {"type": "RuntimeDefault"}
    assert [(f.check_id, f.package) for f in run(obj)] == [("pss-restricted/seccomp", "a")]


def test_pod_level_unconfined_is_reported_on_the_pod_once() -> None:
    obj = two_containers(runAsNonRoot=True, seccompProfile={"type": "Unconfined"})
    assert [(f.check_id, f.package) for f in run(obj)] == [
        ("pss-baseline/seccomp", "pod"),
        ("pss-restricted/seccomp", "pod"),
    ]


def test_run_as_user_zero_anywhere_fails() -> None:
    obj = two_containers(runAsNonRoot=True, runAsUser=1000)
    csc(obj, 0)["runAsUser"] = 0
    assert [(f.check_id, f.package) for f in run(obj)] == [("pss-restricted/run-as-user", "a")]


def test_windows_pods_are_exempt_from_linux_only_restricted_rules() -> None:
    obj = pod(
        {
            "os": {"name": "windows"},
            "securityContext": {"runAsNonRoot": True},
            "containers": [container(securityContext={})],
        }
    )
    assert ids(run(obj)) == []
    obj["spec"]["os"] = {"name": "linux"}
    assert ids(run(obj)) == [
        "policy/read-only-root-filesystem",
        "pss-restricted/allow-privilege-escalation",
        "pss-restricted/capabilities",
        "pss-restricted/seccomp",
    ]


# --- init and ephemeral containers --------------------------------------------------------


def test_init_and_ephemeral_containers_are_checked() -> None:
    obj = pod(
        {
            "initContainers": [container("setup", securityContext={"privileged": True})],
            "ephemeralContainers": [
                {
                    "name": "debug",
                    "image": IMAGE,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"], "add": ["SYS_PTRACE"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        }
    )
    findings = run(obj)
    assert [(f.check_id, f.package) for f in findings] == [
        ("pss-baseline/privileged", "setup"),
        ("pss-baseline/capabilities", "debug"),
        ("pss-restricted/allow-privilege-escalation", "setup"),
        ("pss-restricted/capabilities", "setup"),
        ("pss-restricted/capabilities", "debug"),
        ("policy/read-only-root-filesystem", "setup"),
    ]
    assert "spec.initContainers[0].securityContext.privileged is true" in findings[0].detail
    assert "spec.ephemeralContainers[0].securityContext.capabilities.add" in findings[1].detail
    # resources may not be set on an ephemeral container, so they are not asked for
    assert "policy/resources" not in ids(findings)


def test_apparmor_annotation_is_attributed_to_its_container_or_the_pod() -> None:
    obj = pod({"initContainers": [container("setup")]})
    obj["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/setup": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/gone": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/app": "runtime/default",
        "other.example.com/x": "unconfined",
    }
    assert sorted(f.package or "" for f in run(obj)) == ["pod", "setup"]


# --- where the pod spec is ----------------------------------------------------------------

TEMPLATE: dict[str, Any] = {"metadata": {"labels": {"app": "web"}}, "spec": pod()["spec"]}


@pytest.mark.parametrize(
    ("kind", "spec", "path"),
    [
        ("Deployment", {"template": TEMPLATE}, "spec.template.spec"),
        ("ReplicaSet", {"template": TEMPLATE}, "spec.template.spec"),
        ("StatefulSet", {"template": TEMPLATE}, "spec.template.spec"),
        ("DaemonSet", {"template": TEMPLATE}, "spec.template.spec"),
        ("Job", {"template": TEMPLATE}, "spec.template.spec"),
        (
            "CronJob",
            {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": TEMPLATE}}},
            "spec.jobTemplate.spec.template.spec",
        ),
    ],
)
def test_templates_are_found_and_paths_point_into_them(kind: str, spec: Spec, path: str) -> None:
    obj: dict[str, Any] = {
        "kind": kind,
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": copy.deepcopy(spec),
    }
    found = pod_spec_of(obj)
    assert found is not None
    assert found[0] == TEMPLATE["spec"] and found[1] == TEMPLATE["metadata"]
    assert evaluate_object(obj, STRICT) == []

    template = (
        obj["spec"]["jobTemplate"]["spec"]["template"]
        if kind == "CronJob"
        else (obj["spec"]["template"])
    )
    template["spec"]["containers"][0]["securityContext"]["privileged"] = True
    template["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/app": "unconfined"
    }
    workload = Workload.from_object(obj, cluster="prod-eu")
    assert workload is not None
    assert (workload.cluster, workload.namespace, workload.kind, workload.name) == (
        "prod-eu",
        "apps",
        kind,
        "web",
    )
    findings = evaluate(workload, STRICT)
    assert [f.check_id for f in findings] == ["pss-baseline/privileged", "pss-baseline/apparmor"]
    assert f"{path}.containers[0].securityContext.privileged is true" in findings[0].detail
    meta = path.removesuffix("spec") + "metadata"
    assert f"{meta}.annotations['container.apparmor" in findings[1].detail


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "Service", "spec": {"template": TEMPLATE}},
        {"kind": "ConfigMap", "data": {}},
        {"spec": {"template": TEMPLATE}},
        {"kind": "Deployment", "spec": {"replicas": 3}},
        {"kind": "Deployment", "spec": {"template": {"spec": "nope"}}},
        {"kind": "CronJob", "spec": {"jobTemplate": ["x"]}},
        {"kind": "Pod", "metadata": {"name": "p"}},
        {"kind": "Pod", "spec": None},
        {"kind": ["Pod"], "spec": {}},
    ],
)
def test_other_kinds_and_specless_objects_have_no_pod_spec(obj: dict[str, Any]) -> None:
    assert pod_spec_of(obj) is None
    assert Workload.from_object(obj) is None
    assert evaluate_object(obj, STRICT) == []


def test_a_pod_with_an_empty_spec_is_still_a_workload() -> None:
    workload = Workload.from_object({"kind": "Pod", "spec": {}})
    assert workload is not None and workload.namespace == "default" and workload.name == ""
    assert ids(evaluate(workload, STRICT)) == ["policy/automount-service-account-token"]


# --- levels by namespace ------------------------------------------------------------------


def test_namespace_levels_exact_beats_glob_and_longer_glob_beats_shorter() -> None:
    config = PolicyConfig(
        default_level="restricted",
        namespace_levels={
            "kube-*": "privileged",
            "kube-public*": "baseline",
            "kube-system": "restricted",
        },
    )
    assert config.level_for("apps") == "restricted"
    assert config.level_for("kube-node-lease") == "privileged"
    assert config.level_for("kube-public") == "baseline"
    assert config.level_for("kube-system") == "restricted"


def test_privileged_namespaces_get_no_pss_findings_but_still_the_extras() -> None:
    obj = pod({"hostNetwork": True, "automountServiceAccountToken": True}, namespace="infra")
    csc(obj)["privileged"] = True
    config = STRICT.model_copy(update={"namespace_levels": {"infra": "privileged"}})
    assert ids(run(obj, config)) == ["policy/automount-service-account-token"]


# --- exemptions ---------------------------------------------------------------------------


def _bad_pod(namespace: str = "apps", name: str = "web") -> dict[str, Any]:
    obj = pod(
        {
            "hostNetwork": True,
            "containers": [
                container("app"),
                container("sidecar", image=f"ghcr.io/acme/mesh-proxy:2@{DIGEST}"),
            ],
        },
        namespace=namespace,
        name=name,
    )
    csc(obj, 0)["privileged"] = True
    csc(obj, 1)["privileged"] = True
    return obj


def _with(*exemptions: Exemption) -> PolicyConfig:
    return STRICT.model_copy(update={"exemptions": list(exemptions)})


def test_exemption_by_namespace_glob() -> None:
    config = _with(Exemption(namespaces=("kube-*",)))
    assert run(_bad_pod("kube-system"), config) == []
    assert len(run(_bad_pod("apps"), config)) == 3


def test_exemption_by_workload_glob_over_namespace_and_name() -> None:
    config = _with(Exemption(workloads=("apps/web-*",), rules=("pss-baseline/host-network",)))
    assert ids(run(_bad_pod(name="web-1"), config)) == ["pss-baseline/privileged"] * 2
    assert len(run(_bad_pod(name="api"), config)) == 3
    assert len(run(_bad_pod(namespace="other", name="web-1"), config)) == 3


def test_exemption_by_image_covers_that_container_and_pods_made_only_of_it() -> None:
    config = _with(Exemption(images=("ghcr.io/acme/mesh-proxy*",)))
    assert sorted((f.check_id, f.package or "") for f in run(_bad_pod(), config)) == [
        ("pss-baseline/host-network", "pod"),
        ("pss-baseline/privileged", "app"),
    ]
    proxy_only = pod(
        {
            "hostNetwork": True,
            "containers": [container("sidecar", image=f"ghcr.io/acme/mesh-proxy:2@{DIGEST}")],
        }
    )
    assert run(proxy_only, config) == []


def test_exemption_images_match_docker_hub_short_names_normalized() -> None:
    obj = pod({"containers": [container(image="nginx:1.27")]})
    config = PolicyConfig(
        exemptions=[Exemption(images=("docker.io/library/nginx",), rules=("policy/image-tag",))]
    )
    assert "policy/image-tag" not in ids(run(obj, config))
    obj["spec"]["containers"][0]["image"] = "nginx"
    assert "policy/image-tag" not in ids(run(obj, config))


def test_exemption_by_rule_glob_and_all_selectors_must_match() -> None:
    config = _with(Exemption(namespaces=("apps",), rules=("pss-baseline/host-*",)))
    assert ids(run(_bad_pod(), config)) == ["pss-baseline/privileged"] * 2
    config = _with(Exemption(namespaces=("apps",), workloads=("apps/api",)))
    assert len(run(_bad_pod(), config)) == 3


def test_exemptions_must_be_scoped_and_name_real_rules() -> None:
    with pytest.raises(ValidationError, match="needs namespaces, workloads or images"):
        Exemption(rules=("pss-baseline/privileged",))
    with pytest.raises(ValidationError, match="matches no rule: pss-baseline/privilegd"):
        Exemption(namespaces=("*",), rules=("pss-baseline/privilegd",))
    with pytest.raises(ValidationError, match="Extra inputs"):
        Exemption.model_validate({"namespaces": ["x"], "rule": ["policy/*"]})
    with pytest.raises(ValidationError):
        PolicyConfig.model_validate({"default_level": "strict"})
    with pytest.raises(ValidationError):
        PolicyConfig.model_validate({"namespace_levels": {"x": "open"}})
    config = PolicyConfig.model_validate(
        {"exemptions": [{"namespaces": ["kube-system"], "rules": ["pss-*"]}]}
    )
    assert config.exemptions[0].rules == ("pss-*",)


# --- images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "registry", "path", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", None, None),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("acme/app:2", "docker.io", "acme/app", "2", None),
        ("docker.io/nginx", "docker.io", "library/nginx", None, None),
        ("index.docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", None),
        ("ghcr.io/acme/app/api:v1", "ghcr.io", "acme/app/api", "v1", None),
        ("localhost:5000/app", "localhost:5000", "app", None, None),
        ("localhost/app:1", "localhost", "app", "1", None),
        ("Registry.Example.com/a/b", "registry.example.com", "a/b", None, None),
        (f"app@{DIGEST}", "docker.io", "library/app", None, DIGEST),
        (f"ghcr.io/acme/app:1@{DIGEST}", "ghcr.io", "acme/app", "1", DIGEST),
    ],
)
def test_parse_image(
    image: str, registry: str, path: str, tag: str | None, digest: str | None
) -> None:
    parsed = parse_image(image)
    assert parsed is not None
    assert (parsed.registry, parsed.path, parsed.tag, parsed.digest) == (
        registry,
        path,
        tag,
        digest,
    )


@pytest.mark.parametrize("image", ["", "  ", "nginx:", "a b", "a@b@c", "ghcr.io/", 3, None])
def test_parse_image_rejects_non_references(image: Any) -> None:
    assert parse_image(image) is None


@pytest.mark.parametrize(
    ("image", "allowed", "ok"),
    [
        ("nginx", ("docker.io/library",), True),
        ("nginx", ("docker.io",), True),
        ("nginx:1.27", ("index.docker.io/library",), True),
        ("library/nginx", ("docker.io/library/nginx",), True),
        ("acme/app", ("docker.io/library",), False),
        ("acme/app", ("docker.io/acme",), True),
        ("ghcr.io/acme/app", ("ghcr.io/acme",), True),
        ("ghcr.io/acme/app", ("GHCR.io/acme/",), True),
        ("ghcr.io/acme-evil/app", ("ghcr.io/acme",), False),
        ("ghcr.io.evil.com/acme/app", ("ghcr.io",), False),
        ("evil.io/ghcr.io/acme/app", ("ghcr.io",), False),
        ("ghcr.io/acme", ("ghcr.io/acme/app",), False),
        ("123.dkr.ecr.eu-west-1.amazonaws.com/app", ("*.dkr.ecr.eu-west-1.amazonaws.com",), True),
        (
            "evil.io/123.dkr.ecr.eu-west-1.amazonaws.com/app",
            ("*.dkr.ecr.eu-west-1.amazonaws.com",),
            False,
        ),
        ("localhost:5000/app", ("localhost:5000",), True),
        ("localhost:5001/app", ("localhost:5000",), False),
        ("quay.io/acme/app", ("ghcr.io", "quay.io/acme"), True),
    ],
)
def test_allowed_registries(image: str, allowed: tuple[str, ...], ok: bool) -> None:
    parsed = parse_image(image)
    assert parsed is not None
    assert registry_allowed(parsed, allowed) is ok
    obj = pod({"containers": [container(image=image)]})
    config = PolicyConfig(allowed_registries=allowed)
    assert ("policy/allowed-registry" in ids(run(obj, config))) is not ok


def test_no_allowed_registries_means_any_and_bad_entries_are_refused() -> None:
    obj = pod({"containers": [container(image="random.example/x:1")]})
    assert "policy/allowed-registry" not in ids(run(obj, PolicyConfig()))
    for entry in ("nginx", "acme", "https://ghcr.io", "", "ghcr.io/app@sha256:x"):
        with pytest.raises(ValidationError):
            PolicyConfig(allowed_registries=(entry,))


def test_a_missing_or_malformed_image_fails_closed() -> None:
    obj = pod({"containers": [container(image=None), container("b", image=["x"])]})
    findings = run(obj)
    assert sorted(ids(findings)) == sorted(
        ["policy/allowed-registry", "policy/image-digest", "policy/image-tag"] * 2
    )
    assert "is not an image reference" in by_id(findings, "policy/image-tag")[0].detail


@pytest.mark.parametrize(
    ("image", "digest_ok", "tag_ok"),
    [
        (f"ghcr.io/acme/app@{DIGEST}", True, True),
        (f"ghcr.io/acme/app:latest@{DIGEST}", True, True),
        ("ghcr.io/acme/app:1.4.2", False, True),
        ("ghcr.io/acme/app:latest", False, False),
        ("ghcr.io/acme/app", False, False),
        ("ghcr.io/acme/app@sha256:abc", False, False),
        ("ghcr.io/acme/app:1@sha256:" + "AB" * 32, False, True),
    ],
)
def test_digest_pinning_and_tags(image: str, digest_ok: bool, tag_ok: bool) -> None:
    obj = pod({"containers": [container(image=image)]})
    found = ids(run(obj))
    assert ("policy/image-digest" in found) is not digest_ok
    assert ("policy/image-tag" in found) is not tag_ok
    relaxed = STRICT.model_copy(update={"require_digest": False})
    assert "policy/image-digest" not in ids(run(obj, relaxed))


def test_resources_can_come_from_pod_level_and_can_be_turned_off() -> None:
    obj = pod(
        {
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"}},
            "containers": [container(resources={"requests": {"cpu": "1", "memory": "1Gi"}})],
        }
    )
    assert run(obj) == []
    obj["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "", "memory": True}}
    (finding,) = run(obj)
    assert finding.check_id == "policy/resources" and finding.severity is Severity.LOW
    assert "requests.cpu, requests.memory" in finding.detail
    assert run(obj, STRICT.model_copy(update={"require_limits": False})) == []


def test_default_config_leaves_the_opt_in_extras_off() -> None:
    config = PolicyConfig()
    assert (
        config.default_level,
        config.allowed_registries,
        config.require_digest,
        config.require_limits,
        config.require_read_only_root,
        config.exemptions,
    ) == ("baseline", (), False, True, False, [])
    obj = pod({"containers": [container(image="nginx:1.27", securityContext={})]})
    assert run(obj, config) == []


# --- wrong types --------------------------------------------------------------------------


def test_wrong_types_are_reported_or_treated_as_absent() -> None:
    obj = pod()
    csc(obj)["privileged"] = "true"
    obj["spec"]["hostPID"] = 1
    assert ids(run(obj)) == ["pss-baseline/host-pid", "pss-baseline/privileged"]
    obj = pod({"securityContext": "x", "volumes": "x", "initContainers": [7, "y"]})
    obj["spec"]["containers"][0]["securityContext"] = ["privileged"]
    assert ids(run(obj)) == [
        "policy/read-only-root-filesystem",
        "pss-restricted/allow-privilege-escalation",
        "pss-restricted/capabilities",
        "pss-restricted/run-as-non-root",
        "pss-restricted/seccomp",
    ]
    obj = pod({"containers": [container(name=5)]})
    csc(obj)["runAsUser"] = "0"
    (finding,) = run(obj)
    assert finding.package == "containers[0]"


# --- the real samples ---------------------------------------------------------------------


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_kube_review_deployment_at_each_level() -> None:
    review = _load("kube-review-deployment-create.json")
    workload = Workload.from_admission_review(review, cluster="kind")
    assert workload is not None
    assert (
        workload.cluster,
        workload.namespace,
        workload.kind,
        workload.name,
        dict(workload.labels),
    ) == ("kind", "default", "Deployment", "nginx", {"app": "nginx"})
    extras = ["policy/automount-service-account-token", "policy/image-tag", "policy/resources"]
    assert ids(evaluate(workload, PolicyConfig(default_level="privileged"))) == extras
    assert ids(evaluate(workload, PolicyConfig())) == extras
    assert ids(evaluate(workload, PolicyConfig(default_level="restricted"))) == sorted(
        [
            *extras,
            "pss-restricted/allow-privilege-escalation",
            "pss-restricted/capabilities",
            "pss-restricted/run-as-non-root",
            "pss-restricted/seccomp",
        ]
    )
    config = PolicyConfig(
        allowed_registries=("docker.io/library",), require_digest=True, require_read_only_root=True
    )
    assert ids(evaluate(workload, config)) == sorted(
        [*extras, "policy/image-digest", "policy/read-only-root-filesystem"]
    )
    tag = by_id(evaluate(workload, config), "policy/image-tag")[0]
    assert tag.package == "nginx"
    assert 'spec.template.spec.containers[0].image "nginx" has no tag' in tag.detail


def test_gatekeeper_doc_deployment_has_no_template_to_check() -> None:
    review = _load("gatekeeper-doc-deployment-create.json")
    assert "kind" not in review["request"]["object"]
    assert pod_spec_of(review["request"]["object"]) is None
    assert Workload.from_admission_review(review) is None


@pytest.mark.parametrize("name", ["doc-watch-added-modified.jsonl", "doc-watch-bookmark.jsonl"])
def test_watch_events_of_specless_pods_give_nothing(name: str) -> None:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    assert len(events) == 2
    for event in events:
        assert event["object"]["kind"] == "Pod"
        assert pod_spec_of(event["object"]) is None
        assert evaluate_object(event["object"], STRICT) == []


# --- the denial message -------------------------------------------------------------------


def test_violations_message_names_field_and_fix_and_stays_under_a_kilobyte() -> None:
    obj = pod(
        {
            "hostNetwork": True,
            "hostPID": True,
            "hostIPC": True,
            "containers": [
                container(f"c{i}", image="nginx", securityContext={"privileged": True})
                for i in range(6)
            ],
        }
    )
    findings = run(obj)
    message = violations_message(findings)
    assert len(message.encode()) <= 1024
    lines = message.splitlines()
    assert lines[0] == f"{len(findings)} policy violations:"
    shown = [line for line in lines[1:] if line.startswith("- ")]
    assert lines[-1] == f"...and {len(findings) - len(shown)} more"
    assert shown[0].startswith(
        "- [critical] pss-baseline/privileged (c0): spec.containers[0]"
        ".securityContext.privileged is true"
    )
    assert all(" Fix: " in line for line in shown)


def test_violations_message_small_cases() -> None:
    assert violations_message([]) == ""
    (finding,) = run(pod({"hostPID": True}))
    assert violations_message([finding]) == (
        "1 policy violation:\n- [high] pss-baseline/host-pid (pod): spec.hostPID is true. "
        "Fix: Remove spec.hostPID (or set it to false)."
    )
    assert len(violations_message([finding], limit=40).encode()) <= 40


# --- nothing raises -----------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_FIELDS = [
    "name",
    "image",
    "securityContext",
    "privileged",
    "capabilities",
    "add",
    "drop",
    "ports",
    "hostPort",
    "runAsNonRoot",
    "runAsUser",
    "seccompProfile",
    "appArmorProfile",
    "type",
    "seLinuxOptions",
    "user",
    "role",
    "procMount",
    "windowsOptions",
    "hostProcess",
    "resources",
    "limits",
    "requests",
    "cpu",
    "memory",
    "livenessProbe",
    "httpGet",
    "tcpSocket",
    "host",
    "lifecycle",
    "preStop",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
]
_POD_FIELDS = [
    "containers",
    "initContainers",
    "ephemeralContainers",
    "volumes",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "securityContext",
    "sysctls",
    "automountServiceAccountToken",
    "os",
    "resources",
]
# values shaped like pod specs: known keys, anything below them
_k8sish = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(_FIELDS + _POD_FIELDS) | st.text(max_size=6), inner, max_size=5
        )
    ),
    max_leaves=30,
)
_kinds = st.sampled_from(["Pod", "Deployment", "CronJob", "Job", "Service", None]) | _json
_objects = st.fixed_dictionaries(
    {"kind": _kinds},
    optional={
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "name": _json,
                "namespace": _json,
                "labels": _json,
                "annotations": st.dictionaries(
                    st.sampled_from(["container.apparmor.security.beta.kubernetes.io/a", "x"]),
                    _json,
                ),
            },
        ),
        "spec": _k8sish
        | st.fixed_dictionaries({"template": st.fixed_dictionaries({"spec": _k8sish})})
        | st.fixed_dictionaries(
            {
                "jobTemplate": st.fixed_dictionaries(
                    {
                        "spec": st.fixed_dictionaries(
                            {"template": st.fixed_dictionaries({"spec": _k8sish})}
                        )
                    }
                )
            }
        ),
    },
)
_configs = st.sampled_from(
    [
        PolicyConfig(),
        STRICT,
        STRICT.model_copy(
            update={
                "exemptions": [
                    Exemption(images=("*",), rules=("policy/*",)),
                    Exemption(namespaces=("d*",), workloads=("*/?",)),
                ]
            }
        ),
    ]
)


@settings(max_examples=400, deadline=None)
@given(obj=_objects | _json, config=_configs)
def test_arbitrary_objects_never_raise(obj: Any, config: PolicyConfig) -> None:
    found = pod_spec_of(obj)
    assert found is None or all(isinstance(part, dict) for part in found)
    workload = Workload.from_object(obj) if isinstance(obj, dict) else None
    findings = evaluate(workload, config) if workload is not None else []
    assert all(f.check_id in RULES and f.package for f in findings)
    assert len(violations_message(findings).encode()) <= 1024
    review = {"request": {"object": obj, "namespace": "default", "kind": {"kind": "Pod"}}}
    reviewed = Workload.from_admission_review(review)
    if reviewed is not None:
        evaluate(reviewed, config)


@settings(max_examples=200, deadline=None)
@given(spec=_k8sish, meta=_json, path=st.sampled_from(["spec", "spec.template.spec"]))
def test_a_workload_built_by_hand_from_anything_never_raises(
    spec: Any, meta: Any, path: str
) -> None:
    workload = Workload("c", "ns", "Pod", "n", {}, spec, meta, path)
    for config in (PolicyConfig(), STRICT):
        evaluate(workload, config)
