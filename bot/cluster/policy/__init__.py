"""Kubernetes workload policy: the Pod Security Standards rule by rule, plus image rules.

`config` holds the `[policy]` settings section, `workload` finds the pod spec in an object and
each container's path in it, `rules` the checks, `RULES` and `evaluate`, and `messages` what a
finding and an admission denial say. The names the rest of the bot uses are re-exported here.
"""

from bot.cluster.policy.config import LEVELS, Exemption, Level, PolicyConfig
from bot.cluster.policy.messages import MESSAGE_LIMIT, violations_message
from bot.cluster.policy.rules import (
    BASELINE_CAPABILITIES,
    RESTRICTED_VOLUME_TYPES,
    RULES,
    SAFE_SYSCTLS,
    SELINUX_TYPES,
    ImageName,
    Rule,
    evaluate,
    evaluate_object,
    parse_image,
    registry_allowed,
    rules_for,
)
from bot.cluster.policy.workload import Workload, pod_spec_of

__all__ = [
    "BASELINE_CAPABILITIES",
    "LEVELS",
    "MESSAGE_LIMIT",
    "RESTRICTED_VOLUME_TYPES",
    "RULES",
    "SAFE_SYSCTLS",
    "SELINUX_TYPES",
    "Exemption",
    "ImageName",
    "Level",
    "PolicyConfig",
    "Rule",
    "Workload",
    "evaluate",
    "evaluate_object",
    "parse_image",
    "pod_spec_of",
    "registry_allowed",
    "rules_for",
    "violations_message",
]
