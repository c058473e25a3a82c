"""Alembic environment of notify."""

from kit.migrate import run_env
from services.notify import models  # noqa: F401 — registers the tables
from services.notify.db import metadata

run_env(metadata)
