"""The `[policy]` settings section: the level each namespace is held to, the extra rules, and
the exemptions."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal, Self, TypeAlias

from pydantic import field_validator, model_validator

from bot.cluster.policy.messages import RULE_TEXTS
from bot.images.reference import normalize_registry
from bot.infra.sections import Section

Level: TypeAlias = Literal["privileged", "baseline", "restricted"]
LEVELS: tuple[Level, ...] = ("privileged", "baseline", "restricted")
_GLOB_CHARS = frozenset("*?[")


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
        unknown = [p for p in patterns if not any(fnmatchcase(r, p) for r in RULE_TEXTS)]
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
            normalized.append(normalize_prefix(e))
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


def normalize_prefix(entry: str) -> str:
    """An allowed-registry entry with its host as `normalize_registry` gives it."""
    host, slash, rest = entry.partition("/")
    return f"{normalize_registry(host)}{slash}{rest}"
