"""Alembic environment of archive."""

from kit.migrate import run_env
from services.archive import models  # noqa: F401 — registers the tables
from services.archive.db import metadata

run_env(metadata)
