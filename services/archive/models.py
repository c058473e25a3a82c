"""Archive's tables: sealed dossiers on a hash chain, the chain's head, search helpers, inbox and outbox.

The full-text index is not declared here because it differs by backend (migration e2c8…): on
PostgreSQL a table `dossier_search (seq, vector tsvector)` with a GIN index, on SQLite an FTS5 table
`dossier_fts` whose rowid is the dossier's seq. Both hold jieba-segmented text and can be rebuilt
from the sealed content; neither is part of the seal.
"""

from datetime import datetime

from sqlalchemy import Index, Text
from sqlmodel import Field

from kit.db import UTCDateTime
from kit.inbox import InboxFields
from kit.outbox import OutboxFields, outbox_table_args
from services.archive.db import ArchiveTable


class Dossier(ArchiveTable, table=True):
    """One sealed version of an incident's file (立卷归档). Never updated once written.

    The columns beside `content` are derived from it when sealing (for search, retention and reports);
    seal version 2 binds them into the chain link through `header_sha256`, so altering any of them is
    caught as surely as altering the content.
    """

    __tablename__ = "dossier"
    __table_args__ = (
        Index("ux_dossier_incident_version", "incident_id", "version", unique=True),
        Index("ix_dossier_closed", "closed_at"),
        Index("ix_dossier_retention", "retention_until"),
        Index("ix_dossier_level_seq", "level", "seq"),
        Index("ix_dossier_supersedes", "supersedes"),
    )

    id: str = Field(primary_key=True, max_length=36)
    seq: int = Field(unique=True, description="position on the hash chain, from 1")
    incident_id: str = Field(max_length=36)
    incident_code: str = Field(max_length=32)
    version: int
    title: str = Field(max_length=500)
    level: str = Field(max_length=4)
    category: str | None = Field(default=None, max_length=100)
    lead_unit_code: str | None = Field(default=None, max_length=64)
    channels: str = Field(default="", max_length=200)
    closed_at: datetime = Field(sa_type=UTCDateTime)
    sealed_at: datetime = Field(sa_type=UTCDateTime)
    retention_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    content: str = Field(sa_type=Text, description="canonical JSON of the dossier")
    content_sha256: str = Field(max_length=64)
    prev_chain_hash: str = Field(max_length=64)
    chain_hash: str = Field(max_length=64)
    # Seal version 2 (version 1 rows, from before, chain only content_sha256).
    seal_version: int = Field(default=1)
    supersedes: str | None = Field(default=None, max_length=36, description="the previous version's id")
    lead_unit_name: str | None = Field(default=None, max_length=200)
    district: str | None = Field(default=None, max_length=64)
    request_type: str | None = Field(default=None, max_length=32)
    message_count: int = 0
    received_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reply_due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    replied_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    response_due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    responded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    satisfaction: str | None = Field(default=None, max_length=32)
    heat: float = 0.0
    header_sha256: str | None = Field(default=None, max_length=64)
    seal_key_id: str | None = Field(default=None, max_length=32)
    seal_mac: str | None = Field(default=None, max_length=64)


class DossierFacet(ArchiveTable, table=True):
    """Filter tags of a dossier (unit:…, channel:…, category:…, district:…), for indexed filtering."""

    __tablename__ = "dossier_facet"

    tag: str = Field(primary_key=True, max_length=160)
    seq: int = Field(primary_key=True)


class ChainHead(ArchiveTable, table=True):
    """The newest link of the chain; locked while a dossier is appended."""

    __tablename__ = "chain_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    chain_hash: str = Field(max_length=64)


class SearchCursor(ArchiveTable, table=True):
    """How far along the chain the full-text index is (the indexer moves it as it indexes)."""

    __tablename__ = "search_cursor"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0


class OutboxEvent(OutboxFields, ArchiveTable, table=True):
    """Events archive owes other services."""

    __tablename__ = "outbox"
    __table_args__ = outbox_table_args()


class InboxEvent(InboxFields, ArchiveTable, table=True):
    """Events archive has applied."""

    __tablename__ = "inbox"
