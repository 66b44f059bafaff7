"""What the edges receive: `Core`, the services built once per process, and the `Edge` shape
each handlers/ module has. Handlers import this module, never the composition root
(`bot.app`), so the root can name every edge's needs without an import cycle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.cluster.admission import AdmissionControl
from bot.config import Settings, SlackMode
from bot.findings.announce import Announcer
from bot.findings.authz import Permissions
from bot.findings.decisions import Decisions
from bot.findings.patch_hooks import PatchHooks
from bot.findings.queries import Queries
from bot.images.registry_client import RegistryClient
from bot.infra.clock import Clock
from bot.infra.metrics import Metrics
from bot.intake.intake import Intake
from bot.store.db import Database


@dataclass
class Core:
    """What the edges may use. Built once per process (or per test)."""

    settings: Settings
    db: Database
    metrics: Metrics
    clock: Clock
    intake: Intake
    registry_client: RegistryClient
    slack_client: AsyncWebClient | None
    bolt: AsyncApp | None
    head_revision: str | None
    announcer: Announcer
    decisions: Decisions
    permissions: Permissions
    patch_hooks: PatchHooks
    queries: Queries
    admission: AdmissionControl

    @property
    def slack_mode(self) -> SlackMode:
        return self.settings.slack.effective_mode


class Edge(Protocol):
    """An edge (a handlers/ module) adds its routes or Slack listeners to the application."""

    def mount(self, app: web.Application, core: Core) -> None: ...
