"""search index holds filter lexemes and closing time

Revision ID: 7f9923320ed3
Revises: 27f1526d7469
Create Date: 2026-11-22 03:30:56.785849
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import kit.db
from sqlalchemy import Text  # noqa: F401 — autogenerate writes bare Text() inside JSONB


revision: str = '7f9923320ed3'
down_revision: str | None = '27f1526d7469'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL's index gains the closing time and the filters as lexemes (see services/archive/indexer.py);
    # it is emptied and the indexer rebuilds it from the sealed content. SQLite's FTS5 index is unchanged.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("TRUNCATE dossier_search")
        op.execute("ALTER TABLE dossier_search ADD COLUMN closed_at timestamptz NOT NULL")
        op.execute("CREATE INDEX ix_dossier_search_closed ON dossier_search (closed_at)")
        op.execute("UPDATE search_cursor SET seq = 0")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("TRUNCATE dossier_search")
        op.execute("DROP INDEX ix_dossier_search_closed")
        op.execute("ALTER TABLE dossier_search DROP COLUMN closed_at")
        op.execute("UPDATE search_cursor SET seq = 0")
