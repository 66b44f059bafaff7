"""What every image check is: a function of the image's facts and the policy in force.

Apart from `hygiene`, which registers the checks, so that each check module can name the
policy type without importing the registry that imports it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.images.facts import ImageFacts
from bot.model.findings import Finding


@dataclass(frozen=True)
class HygienePolicy:
    mutable_tags: tuple[str, ...] = ("latest",)
    disabled: frozenset[str] = frozenset()
    max_age_days: int = 180


Check = Callable[[ImageFacts, HygienePolicy], Iterable[Finding]]
