"""Alembic environment of intake."""

from kit.migrate import run_env
from services.intake import models  # noqa: F401 — registers the tables
from services.intake.db import metadata

run_env(metadata)
