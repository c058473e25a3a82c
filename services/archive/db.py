"""Archive's table base: its own metadata, so no other service's tables mix with it."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class ArchiveTable(SQLModel, registry=registry()):
    """Base of archive's tables."""


metadata = ArchiveTable.metadata
