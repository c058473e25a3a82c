"""Minsheng's shared contracts: enums, DTOs and events between services. Nothing else lives here."""

from schema.events import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION"]
