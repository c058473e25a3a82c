"""Minsheng's services: intake, grading, notify, archive."""

import kit  # noqa: F401 — first, for what it settles before any library is imported (kit/__init__.py)
