"""Alembic environment of grading."""

from kit.migrate import run_env
from services.grading import models  # noqa: F401 — registers the tables
from services.grading.db import metadata

run_env(metadata)
