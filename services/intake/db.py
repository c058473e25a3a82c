"""Intake's table base: its own metadata, so no other service's tables mix with it."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from kit.tables import DirectInit


class IntakeTable(DirectInit, SQLModel, registry=registry()):
    """Base of intake's tables."""


metadata = IntakeTable.metadata
