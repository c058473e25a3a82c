"""The gateway's table base: its own metadata (staff users and API clients)."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class GatewayTable(SQLModel, registry=registry()):
    """Base of the gateway's tables."""


metadata = GatewayTable.metadata
