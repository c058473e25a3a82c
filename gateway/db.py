"""The gateway's table base: its own metadata (staff users and API clients)."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from kit.tables import DirectInit


class GatewayTable(DirectInit, SQLModel, registry=registry()):
    """Base of the gateway's tables."""


metadata = GatewayTable.metadata
