"""Grading's table base: its own metadata, so no other service's tables mix with it."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from kit.tables import DirectInit


class GradingTable(DirectInit, SQLModel, registry=registry()):
    """Base of grading's tables."""


metadata = GradingTable.metadata
