"""search cursor: the full-text index is filled behind the chain

Revision ID: 27f1526d7469
Revises: e2c8440ee2fc
Create Date: 2026-11-22 02:59:19.831915
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import kit.db
from sqlalchemy import Text  # noqa: F401 — autogenerate writes bare Text() inside JSONB


revision: str = '27f1526d7469'
down_revision: str | None = 'e2c8440ee2fc'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('search_cursor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # Dossiers sealed before this revision were indexed while sealing: the cursor starts after them.
    indexed = "dossier_fts" if op.get_bind().dialect.name == "sqlite" else "dossier_search"
    key = "rowid" if indexed == "dossier_fts" else "seq"
    op.execute(f"INSERT INTO search_cursor (id, seq) SELECT 1, COALESCE(MAX({key}), 0) FROM {indexed}")


def downgrade() -> None:
    op.drop_table('search_cursor')
