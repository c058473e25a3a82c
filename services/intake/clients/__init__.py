"""Calls intake makes outside (portal callbacks)."""
