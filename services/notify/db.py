"""Notify's table base: its own metadata, so no other service's tables mix with it."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from kit.tables import DirectInit


class NotifyTable(DirectInit, SQLModel, registry=registry()):
    """Base of notify's tables."""


metadata = NotifyTable.metadata
