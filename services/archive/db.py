"""Archive's table base: its own metadata, so no other service's tables mix with it."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from kit.tables import DirectInit


class ArchiveTable(DirectInit, SQLModel, registry=registry()):
    """Base of archive's tables."""


metadata = ArchiveTable.metadata
