"""Alembic environment of the gateway."""

from gateway import models  # noqa: F401 — registers the tables
from gateway.db import metadata
from kit.migrate import run_env

run_env(metadata)
