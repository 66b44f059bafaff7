"""Tables for imported OSV advisories (migration 0003). Part of `bot.store.models.Base.metadata`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.models import Base, Id, UTCDateTime


class Advisory(Base):
    """One OSV record as last imported; a withdrawn one stays as a tombstone without packages."""

    __tablename__ = "advisories"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    modified: Mapped[datetime] = mapped_column(UTCDateTime())
    withdrawn: Mapped[datetime | None] = mapped_column(UTCDateTime())
    summary: Mapped[str | None] = mapped_column(Text)
    #: JSON array of the record's aliases (CVE and other database ids).
    aliases: Mapped[str] = mapped_column(Text, default="[]")
    severity: Mapped[str] = mapped_column(String(16))
    #: The record as imported (compact JSON), read back by `bot.vulns.store.candidates`.
    raw: Mapped[str] = mapped_column(Text)


class AdvisoryPackage(Base):
    """A package an advisory names: base ecosystem (`Debian`, not `Debian:12`), normalised name."""

    __tablename__ = "advisory_packages"
    __table_args__ = (
        UniqueConstraint("advisory_id", "ecosystem", "name", name="uq_advisory_package"),
        Index("ix_advisory_packages_lookup", "ecosystem", "name"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    advisory_id: Mapped[str] = mapped_column(ForeignKey("advisories.id", ondelete="CASCADE"))
    ecosystem: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(512))


class VulndbState(Base):
    """One row: a counter every import that changes the store bumps (migration 0008).

    Matchers keep compiled advisories in memory; reading this one number tells them (in any
    replica) whether what they hold is still what the store says.
    """

    __tablename__ = "vulndb_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger)
