"""Tables. Alembic's env.py reads Base.metadata; every change needs a migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Id = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both engines (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class InboxEvent(Base):
    """A durably accepted event, waiting for (or done with) processing."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("source", "dedup_key", name="uq_inbox_source_dedup"),
        Index("ix_inbox_claimable", "status", "available_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    dedup_key: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Image(Base):
    """One manifest (or index) digest in one repository of one registry."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("registry_name", "repository", "digest", name="uq_image"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    registry_name: Mapped[str] = mapped_column(String(64))
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(80))
    media_type: Mapped[str | None] = mapped_column(String(128))
    last_tag: Mapped[str | None] = mapped_column(String(128))
    pushed_by: Mapped[str | None] = mapped_column(String(200))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_pushed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FindingRow(Base):
    """A finding on one image; open until a decision or a fixed image resolves it."""

    __tablename__ = "findings"
    __table_args__ = (
        UniqueConstraint("image_id", "check_id", "package", name="uq_finding"),
        Index("ix_findings_status", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    check_id: Mapped[str] = mapped_column(String(128))
    package: Mapped[str] = mapped_column(String(255), default="")
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text)
    remediation: Mapped[str] = mapped_column(Text)
    fixed_version: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="open")
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DecisionRow(Base):
    """The audit log: every decision a person (or the bot) took, never updated or deleted."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    #: The repository-level finding (what people decide on), not an image-level row.
    finding_id: Mapped[int | None] = mapped_column(
        ForeignKey("tracked_findings.id", ondelete="SET NULL", name="fk_decisions_tracked_finding")
    )
    subject: Mapped[str] = mapped_column(String(512))
    reason: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    details: Mapped[str | None] = mapped_column(Text)


class SlackMessage(Base):
    """A Slack message the bot owes or has posted: an outbox keyed so a retry never doubles."""

    __tablename__ = "slack_messages"
    __table_args__ = (
        UniqueConstraint("key", name="uq_slack_message_key"),
        Index("ix_slack_messages_pending", "status", "available_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(640))
    #: "post" a new message, "reply" in the thread of `parent_id`, or "update" `parent_id`.
    kind: Mapped[str] = mapped_column(String(16), default="post", server_default="post")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("slack_messages.id"))
    channel: Mapped[str] = mapped_column(String(80))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    #: Registry and repository a push message is about, for coalescing pushes into it.
    subject: Mapped[str | None] = mapped_column(String(400), index=True)
    #: What the message was rendered from (JSON), so it can be rendered again when it changes.
    context: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    blocks: Mapped[str] = mapped_column(Text)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sending_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    channel_id: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)


class TrackedFinding(Base):
    """A finding of a repository, across its pushes: what people see, decide on and fix.

    Image-level rows (`findings`) record what each digest had; this row is the one posted once,
    followed in its thread ("still present in 1.4.2", "fixed in 1.5.0 after 3 days").
    """

    __tablename__ = "tracked_findings"
    __table_args__ = (
        UniqueConstraint(
            "registry_name", "repository", "check_id", "package", name="uq_tracked_finding"
        ),
        Index("ix_tracked_open", "status", "registry_name", "repository"),
        Index("ix_tracked_team_status", "team", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    registry_name: Mapped[str] = mapped_column(String(64))
    repository: Mapped[str] = mapped_column(String(255))
    check_id: Mapped[str] = mapped_column(String(128))
    package: Mapped[str] = mapped_column(String(255), default="")
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text, default="")
    remediation: Mapped[str] = mapped_column(Text, default="")
    fixed_version: Mapped[str | None] = mapped_column(String(128))
    team: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_tag: Mapped[str | None] = mapped_column(String(128))
    last_seen_digest: Mapped[str] = mapped_column(String(80))
    fixed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fixed_in_tag: Mapped[str | None] = mapped_column(String(128))
    #: When a fix became available while the finding was deployed: patch lag starts here.
    fixable_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    message_id: Mapped[int | None] = mapped_column(ForeignKey("slack_messages.id"))
    assignee: Mapped[str | None] = mapped_column(String(32))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Suppression(Base):
    """An Approve (accepted risk) or Ignore decision, and what it covers until when."""

    __tablename__ = "suppressions"
    __table_args__ = (Index("ix_suppressions_active", "expired_at", "check_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: "image" (one digest), "repository", or "vulnerability" (the check id team-wide)
    scope: Mapped[str] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(64))
    registry_name: Mapped[str | None] = mapped_column(String(64))
    repository: Mapped[str | None] = mapped_column(String(255))
    digest: Mapped[str | None] = mapped_column(String(80))
    check_id: Mapped[str] = mapped_column(String(128))
    package: Mapped[str | None] = mapped_column(String(255))
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    until_fixed: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Set once the expiry has been acted on (the finding posted again).
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finding_id: Mapped[int | None] = mapped_column(ForeignKey("tracked_findings.id"))


class Alert(Base):
    """A message that pages on-call: escalates until someone acknowledges it."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_due", "acked_at", "next_escalation_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("slack_messages.id"))
    team: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    level: Mapped[int] = mapped_column(Integer, default=0)
    next_escalation_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acked_by: Mapped[str | None] = mapped_column(String(32))
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ImagePackage(Base):
    """A package installed in an image, as read from its layers: what advisories match."""

    __tablename__ = "image_packages"
    __table_args__ = (
        UniqueConstraint("image_id", "ecosystem", "name", "version", name="uq_image_package"),
        Index("ix_image_packages_name", "ecosystem", "name"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    ecosystem: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(128))
    purl: Mapped[str | None] = mapped_column(String(512))
    distro: Mapped[str | None] = mapped_column(String(64))


class RunningContainer(Base):
    """What runs where: one row per cluster, workload and container, with its resolved image."""

    __tablename__ = "running_containers"
    __table_args__ = (
        UniqueConstraint("cluster", "uid", "container", name="uq_running_container"),
        Index("ix_running_image", "repository", "digest"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str] = mapped_column(String(253))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(253))
    uid: Mapped[str] = mapped_column(String(64))
    container: Mapped[str] = mapped_column(String(253))
    image: Mapped[str | None] = mapped_column(String(512))
    #: The registry and repository of `image` when it is a configured registry's.
    registry_name: Mapped[str | None] = mapped_column(String(64))
    repository: Mapped[str | None] = mapped_column(String(255))
    digest: Mapped[str | None] = mapped_column(String(80))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SlackChannel(Base):
    """When the bot last posted to a channel, from any replica: `slack.channel_interval` holds
    across processes sharing the database."""

    __tablename__ = "slack_channels"

    channel: Mapped[str] = mapped_column(String(80), primary_key=True)
    last_post_at: Mapped[datetime] = mapped_column(UTCDateTime())
