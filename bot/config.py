"""Settings: a TOML file, overridden by CROWSNEST_<SECTION>__<KEY> environment variables.

Unknown keys are errors everywhere: a typo in a security tool's config must not silently turn a
check off. Secrets are `SecretStr` and may come from a `*_file` key naming a file instead.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bot.cluster.observe import ClusterConfig
from bot.cluster.policy import PolicyConfig
from bot.digest.cron import validate as validate_cron
from bot.infra.sections import Section
from bot.model.findings import Severity

DEFAULT_CONFIG_PATH = Path("crowsnest.toml")


def _read_secret_files(data: Any, names: tuple[str, ...]) -> Any:
    """Fill `name` from the file named by `name_file` (stripped of one trailing newline)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for name in names:
        path = data.pop(f"{name}_file", None)
        if path is None:
            continue
        if data.get(name) not in (None, ""):
            raise ValueError(f"set either {name} or {name}_file, not both")
        try:
            data[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{name}_file: cannot read {path}: {exc.strerror}") from None
    return data


class Server(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    #: Seconds a request may wait for its batch to be committed before answering 503.
    intake_timeout: float = Field(5.0, gt=0)


class Database(Section):
    url: str = "sqlite+aiosqlite:///./crowsnest.db"
    #: Apply Alembic migrations when `serve` starts. Defaults to on for SQLite only, where the
    #: bot is usually the only process; PostgreSQL deployments migrate as a release step.
    migrate_on_start: bool | None = None
    pool_size: int = Field(10, ge=1)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def should_migrate_on_start(self) -> bool:
        return self.is_sqlite if self.migrate_on_start is None else self.migrate_on_start

    @field_validator("url")
    @classmethod
    def _known_driver(cls, url: str) -> str:
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return url


class SlackMode(StrEnum):
    HTTP = "http"
    SOCKET = "socket"
    DRY_RUN = "dry-run"


class Slack(Section):
    mode: SlackMode | None = None
    api_url: AnyHttpUrl = AnyHttpUrl("https://slack.com/api/")
    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None
    fallback_channel: str = "#crowsnest"
    #: Minimum seconds between two posts to one channel (Slack allows about one a second).
    channel_interval: float = Field(1.0, ge=0)
    #: Pushes of one repository within this many seconds become one message.
    coalesce_seconds: float = Field(10.0, ge=0)
    #: The workload label naming the owning team (else the namespace decides).
    team_label: str = "team"
    #: Also post a message for a push with no findings (off: only findings are news).
    announce_clean_pushes: bool = False
    #: Seconds before a message that could not be delivered is tried again (doubles each time).
    retry_backoff: float = Field(2.0, gt=0)
    max_retry_backoff: float = Field(300.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        return _read_secret_files(data, ("bot_token", "signing_secret", "app_token"))

    @property
    def effective_mode(self) -> SlackMode:
        """Without a bot token there is nobody to post as, so the bot runs dry."""
        if self.bot_token is None or not self.bot_token.get_secret_value():
            return SlackMode.DRY_RUN
        if self.mode is not None:
            return self.mode
        return SlackMode.SOCKET if self.app_token is not None else SlackMode.HTTP

    @model_validator(mode="after")
    def _mode_needs_secrets(self) -> Self:
        if self.mode is SlackMode.SOCKET and self.app_token is None:
            raise ValueError("mode 'socket' needs app_token (xapp-…)")
        if self.mode is SlackMode.HTTP and self.signing_secret is None:
            raise ValueError("mode 'http' needs signing_secret")
        return self


class RegistryKind(StrEnum):
    DISTRIBUTION = "distribution"
    GITLAB = "gitlab"
    HARBOR = "harbor"
    DOCKERHUB = "dockerhub"
    GHCR = "ghcr"
    QUAY = "quay"
    ECR = "ecr"
    ARTIFACT_REGISTRY = "artifact-registry"


class Registry(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    kind: RegistryKind
    url: AnyHttpUrl
    username: str | None = None
    password: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    #: Serve /hooks/registry/<name> without a webhook_secret, accepting anyone's events. Only for
    #: a registry that cannot send a secret, on a network nobody else reaches.
    allow_unauthenticated: bool = False
    #: Other hosts this registry may send the bot to: its token service (auth.docker.io) or
    #: blob storage it redirects to. Every other host is refused, whatever a payload says.
    trusted_hosts: tuple[str, ...] = ()
    #: Per-request timeout against this registry, in seconds.
    timeout: float = Field(10.0, gt=0)
    #: Largest manifest or config blob the bot will read.
    max_blob_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    #: Most compressed layer bytes read for one image, and seconds spent streaming them; past
    #: either the layer checks report what they could not read instead of guessing.
    max_image_bytes: int = Field(2 * 1024**3, ge=1024)
    scan_timeout: float = Field(120.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        return _read_secret_files(data, ("password", "webhook_secret"))

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")

    @property
    def host(self) -> str:
        """`host[:port]` as image references name this registry."""
        url = self.url
        default = {"http": 80, "https": 443}.get(url.scheme)
        return url.host or "" if url.port in (None, default) else f"{url.host}:{url.port}"


SEVERITIES = tuple(s.value for s in Severity)


def _check_severity_keys(days: dict[str, int]) -> dict[str, int]:
    bad = sorted(set(days) - set(SEVERITIES))
    if bad:
        raise ValueError(f"not severities: {', '.join(bad)} (use {', '.join(SEVERITIES)})")
    if any(d <= 0 for d in days.values()):
        raise ValueError("days must be positive")
    return days


class Team(Section):
    name: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    #: Where critical findings go instead of `channel`, if set.
    critical_channel: str | None = None
    repositories: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    #: Who may Approve, and Ignore team-wide or until a fix exists (user or user-group ids).
    approvers: tuple[str, ...] = ()
    #: Who may Patch and Ignore (narrowly) this team's findings (user or user-group ids); when
    #: empty, the members of `channel` as Slack reports them.
    members: tuple[str, ...] = ()
    #: The on-call user group: mentioned when an alert waits, and may Acknowledge it.
    oncall: str | None = Field(None, pattern=r"^S[A-Z0-9]+$")
    timezone: str = "UTC"
    #: Days to fix, by severity, overriding [digest] sla_days for this team.
    sla_days: dict[str, int] = {}
    #: Report `unsigned` for images without a cosign signature (tag or OCI referrer).
    require_signatures: bool = False
    #: Glob patterns of allowed base images (`org.opencontainers.image.base.name`); empty = any.
    allowed_bases: tuple[str, ...] = ()
    #: Check ids this team turns off, and checks it grades differently.
    disabled_checks: tuple[str, ...] = ()
    severities: dict[str, Severity] = {}

    @field_validator("sla_days")
    @classmethod
    def _severities(cls, days: dict[str, int]) -> dict[str, int]:
        return _check_severity_keys(days)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, tz: str) -> str:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {tz!r}") from None
        return tz

    @field_validator("approvers", "members")
    @classmethod
    def _slack_ids(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        bad = [i for i in ids if i[:1] not in ("U", "W", "S")]
        if bad:
            raise ValueError(f"not Slack user (U…/W…) or user-group (S…) ids: {', '.join(bad)}")
        return ids


class Alerts(Section):
    #: Seconds a paging alert waits for an Acknowledge before the on-call group is mentioned,
    #: and again before the fallback channel is told.
    ack_timeout: float = Field(900.0, gt=0)
    #: Findings at this severity or worse page on-call.
    page_severity: Severity = Severity.CRITICAL


class Digest(Section):
    #: When each team's digest is posted, in the team's own time zone (crontab syntax).
    cron: str = "0 9 * * 1"
    #: The period a digest covers, in days (compared with the period before it).
    days: int = Field(7, ge=1, le=366)
    #: A digest missed while the bot was down is still posted this many hours later.
    grace_hours: float = Field(24.0, ge=0)
    #: The organisation-wide digest for managers, if set.
    managers_channel: str | None = None
    managers_timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _crontab(cls, cron: str) -> str:
        try:
            validate_cron(cron)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression: {exc}") from None
        return cron

    #: Days a fixable finding may stay open, by severity; a Patch's due date comes from here.
    sla_days: dict[str, int] = {"critical": 7, "high": 30, "medium": 90, "low": 180}

    @field_validator("sla_days")
    @classmethod
    def _severities(cls, days: dict[str, int]) -> dict[str, int]:
        return _check_severity_keys(days)


class PatchHook(Section):
    """Called when someone clicks Patch on a finding of a matching repository."""

    repositories: tuple[str, ...] = Field(min_length=1)
    kind: Literal["github", "webhook"]
    #: webhook: the URL to POST to; github: the API base (default https://api.github.com).
    url: AnyHttpUrl | None = None
    #: github: "owner/repo" that receives the repository_dispatch.
    github_repository: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    event_type: str = "crowsnest-patch"
    token: SecretStr | None = None
    secret: SecretStr | None = None
    timeout: float = Field(10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        return _read_secret_files(data, ("token", "secret"))

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind == "github" and (self.github_repository is None or self.token is None):
            raise ValueError("a github patch hook needs github_repository and token")
        if self.kind == "webhook" and (self.url is None or self.secret is None):
            raise ValueError("a webhook patch hook needs url and secret (it signs the body)")
        return self


class Falco(Section):
    #: /hooks/falco requires `Authorization: Bearer <token>`. Without one (and without
    #: `allow_unauthenticated`) `check-config` fails, `serve` refuses to start, and the endpoint
    #: refuses every request: an open Falco endpoint lets anyone page on-call.
    token: SecretStr | None = None
    #: Serve /hooks/falco with no token, accepting anyone's alerts (a warning at every start).
    allow_unauthenticated: bool = False
    #: The same rule in this many distinct pods within `window_minutes` is one correlated
    #: alert ("in 14 pods across 5 services"), followed in one message instead of many.
    correlate_pods: int = Field(5, ge=2)
    window_minutes: float = Field(10.0, gt=0)
    #: Falco priorities at or above this page on-call (mining rules always do).
    page_priority: Literal[
        "emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug"
    ] = "critical"

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        return _read_secret_files(data, ("token",))


class Admission(Section):
    #: "audit": allow, warn, post findings; "enforce": deny what no Approve decision covers.
    mode: Literal["audit", "enforce"] = "audit"
    #: TLS for the whole server (Kubernetes calls webhooks over HTTPS only).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: The name findings and approvals use for the cluster this webhook serves.
    cluster: str = "default"
    #: /hooks/k8s/admission requires `Authorization: Bearer <token>`: the API server sends it
    #: from the `users[].user.token` of its admission-control kubeconfig (see the README).
    token: SecretStr | None = None
    #: Or mutual TLS: a client certificate signed by this CA (PEM) is proof enough. Other
    #: endpoints (probes, Slack, registries) still connect without one, so the server asks for
    #: a certificate but only the admission endpoint insists on it. Needs tls_cert/tls_key.
    client_ca: Path | None = None
    #: Serve the webhook with neither, answering anyone's reviews (a warning at every start):
    #: for a local dry run only, since unauthenticated reviews can page on-call.
    allow_unauthenticated: bool = False

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        return _read_secret_files(data, ("token",))

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key, or neither")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("client_ca (mutual TLS) needs tls_cert and tls_key")
        return self


class Vulns(Section):
    #: "builtin": the OSV store only; "trivy": also run `trivy image` on each pushed image.
    scanner: Literal["builtin", "trivy"] = "builtin"
    trivy_path: str = "trivy"
    trivy_timeout: float = Field(300.0, gt=0)


class Scan(Section):
    """What reading one image's layers may cost, whatever its pusher put in them.

    Past a cap the rest is read past (so the digest is still checked) but not kept, and the
    image gets a `scan-limit` finding naming the cap: never a silent truncation, never a crash.
    The defaults keep the whole process under about 300 MB with the largest image in flight.
    """

    #: Tar entries (files, directories, links, whiteouts) kept per layer, and per image.
    max_entries_per_layer: int = Field(200_000, ge=1)
    max_entries_per_image: int = Field(200_000, ge=1)
    #: Bytes of paths and link names kept per image (each path is at most 4,096 bytes).
    max_path_bytes_per_image: int = Field(16 * 1024 * 1024, ge=4096)
    #: Installed packages read, recorded and matched per image. Real images list hundreds to
    #: a few thousand (a full Ubuntu desktop ~2,500 dpkg entries, large Python/Node images
    #: ~5,000-10,000); 20,000 leaves them room while a forged inventory stays ~20 batches of
    #: rows (a few MB) instead of as many as a dpkg `status` can name.
    max_packages_per_image: int = Field(20_000, ge=1)
    #: Memory, in bytes, that the recently read layers and images are cached in.
    cache_bytes: int = Field(64 * 1024 * 1024, ge=0)
    #: Images whose layers are read and checked at the same time (the rest wait their turn).
    concurrent_scans: int = Field(2, ge=1)


class Worker(Section):
    concurrency: int = Field(4, ge=0)
    max_attempts: int = Field(5, ge=1)
    #: First retry delay in seconds; doubles with each attempt.
    retry_backoff: float = Field(2.0, gt=0)
    max_retry_backoff: float = Field(600.0, gt=0)
    #: Seconds a claimed event stays reserved for its worker before another may take it over.
    lease_seconds: float = Field(120.0, gt=0)
    #: Seconds between polls when nothing wakes the workers.
    poll_interval: float = Field(1.0, gt=0)


class Checks(Section):
    #: Glob patterns of tags that can be moved to another image.
    mutable_tags: tuple[str, ...] = ("latest",)
    #: Check ids to turn off entirely.
    disabled: tuple[str, ...] = ()
    #: Stream the layers (for the miner, secret, end-of-life and package checks).
    scan_layers: bool = True
    #: `stale-image` reports images built longer ago than this.
    max_age_days: int = Field(180, ge=1)
    #: Re-grade checks for everyone: {"mutable-tag" = "medium"}; a team's `severities` wins.
    severities: dict[str, Severity] = {}


class Settings(BaseSettings):
    """The whole configuration, as documented in config.example.toml."""

    model_config = SettingsConfigDict(
        env_prefix="CROWSNEST_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    server: Server = Server()
    database: Database = Database()
    slack: Slack = Slack()
    registries: tuple[Registry, ...] = ()
    teams: tuple[Team, ...] = ()
    worker: Worker = Worker()
    checks: Checks = Checks()
    scan: Scan = Scan()
    alerts: Alerts = Alerts()
    falco: Falco = Falco()
    vulns: Vulns = Vulns()
    admission: Admission = Admission()
    policy: PolicyConfig = PolicyConfig()
    clusters: tuple[ClusterConfig, ...] = ()
    digest: Digest = Digest()
    patch_hooks: tuple[PatchHook, ...] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs (see load_settings); the environment wins over it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        for kind, names in (
            ("registries", [r.name for r in self.registries]),
            ("teams", [t.name for t in self.teams]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate name {', '.join(dupes)}")
        return self

    def registry(self, name: str) -> Registry | None:
        return next((r for r in self.registries if r.name == name), None)

    def team(self, name: str | None) -> Team | None:
        return next((t for t in self.teams if t.name == name), None)

    def sla_days(self, team: str | None, severity: str) -> int | None:
        own = self.team(team)
        table: Mapping[str, int] = self.digest.sla_days
        if own is not None and severity in own.sla_days:
            table = own.sla_days
        return table.get(severity)


def _has(secret: SecretStr | None) -> bool:
    return secret is not None and bool(secret.get_secret_value())


def intake_problems(settings: Settings) -> list[str]:
    """Each intake endpoint `serve` would open to anyone, as one `check-config` line.

    The admission and Falco endpoints are always served (whether or not a cluster or Falco is
    set up), so they always need credentials; each configured registry has its own webhook
    endpoint, so each needs its webhook_secret. `allow_unauthenticated = true` in the section
    is the one way to run an endpoint open, and then `open_intakes` names it for the warning.
    """
    fix = "or set allow_unauthenticated = true to accept unauthenticated requests"
    problems = []
    adm = settings.admission
    if not (_has(adm.token) or adm.client_ca is not None or adm.allow_unauthenticated):
        problems.append(
            "admission.token: not set, so /hooks/k8s/admission would answer anyone; "
            f"set token, token_file or client_ca ({fix})"
        )
    if not (_has(settings.falco.token) or settings.falco.allow_unauthenticated):
        problems.append(
            f"falco.token: not set, so /hooks/falco would take anyone's alerts; set token or "
            f"token_file ({fix})"
        )
    for n, registry in enumerate(settings.registries):
        if not (_has(registry.webhook_secret) or registry.allow_unauthenticated):
            problems.append(
                f"registries.{n}.webhook_secret: not set for registry {registry.name!r}, so "
                f"/hooks/registry/{registry.name} has nothing to check; set webhook_secret or "
                f"webhook_secret_file ({fix})"
            )
    return problems


def open_intakes(settings: Settings) -> list[str]:
    """The endpoints served without credentials because their section allows it."""
    adm = settings.admission
    opened = []
    if adm.allow_unauthenticated and not (_has(adm.token) or adm.client_ca is not None):
        opened.append("/hooks/k8s/admission ([admission] allow_unauthenticated)")
    if settings.falco.allow_unauthenticated and not _has(settings.falco.token):
        opened.append("/hooks/falco ([falco] allow_unauthenticated)")
    for registry in settings.registries:
        if registry.allow_unauthenticated and not _has(registry.webhook_secret):
            opened.append(
                f"/hooks/registry/{registry.name} (registry {registry.name!r} "
                "allow_unauthenticated)"
            )
    return opened


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: the dotted key path, then what is wrong."""
    lines = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{where}: {msg}")
    return lines


def load_settings(path: Path | None) -> Settings:
    """Read `path` (or nothing when it is None and ./crowsnest.toml is absent) into Settings."""
    data: dict[str, Any] = {}
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
