"""The API gateway: the one public entry of Minsheng."""

import kit  # noqa: F401 — first, for what it settles before any library is imported (kit/__init__.py)
