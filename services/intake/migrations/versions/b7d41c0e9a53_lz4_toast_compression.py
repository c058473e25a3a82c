"""long texts and JSON are compressed with lz4 on PostgreSQL

PostgreSQL compresses a value of more than about 2 kB before storing it. Its own method (pglz) was a
good part of the server's time inserting a batch of real messages (two copies of the text and the
event's payload each); lz4 (PostgreSQL 14 and later, built with it) does the same work several times
faster. Values already stored keep their compression. A server without lz4 keeps pglz; SQLite has
nothing to change.

Revision ID: b7d41c0e9a53
Revises: f1a76bb25a8a
Create Date: 2026-12-08 04:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7d41c0e9a53"
down_revision: str | None = "f1a76bb25a8a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "message": ("title_original", "content_original", "content_normalized", "screening", "reply"),
    "outbox": ("payload",),
}


def _set_compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if bind.execute(sa.text("SELECT current_setting('server_version_num')::int")).scalar() < 140000:
        return
    for table, columns in COLUMNS.items():
        actions = ", ".join(f"ALTER COLUMN {c} SET COMPRESSION {method}" for c in columns)
        op.execute(
            f"DO $$ BEGIN ALTER TABLE {table} {actions}; "
            "EXCEPTION WHEN feature_not_supported THEN "
            f"RAISE NOTICE 'compression {method} is not available here: {table} keeps pglz'; END $$"
        )


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("default")
