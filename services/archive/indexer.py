"""The full-text index, filled behind the chain: segmenting Chinese text takes longer than sealing.

Sealing commits the dossier and wakes the indexer, which segments the sealed content of every dossier
after its cursor (jieba, off the event loop) into `dossier_search` (PostgreSQL tsvector, GIN) or
`dossier_fts` (SQLite FTS5), and moves the cursor in the same transaction. Dossiers get their seq
under the chain-head lock that is held until commit, so they commit in seq order and a cursor never
skips one. On PostgreSQL the cursor row is claimed with SKIP LOCKED: one replica indexes at a time.
The index is derived data: it can be rebuilt from the sealed content at any time (reset the cursor).
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.db import is_sqlite
from kit.worker import BackgroundWorker
from services.archive import metrics, segment, service
from services.archive.models import Dossier, SearchCursor

log = logging.getLogger("minsheng.archive.indexer")

Segmenter = Callable[[list[str]], Awaitable[list[tuple[str, list[str]]]]]


def segment_contents(contents: list[str], max_chars: int) -> list[tuple[str, list[str]]]:
    """The index text of each sealed content, and its filter lexemes (CPU work)."""
    out = []
    for c in contents:
        data = json.loads(c)
        level = (data.get("incident") or {}).get("level")
        lexemes = [f"~{t}" for t in service.facets_of(data)] + ([f"~level:{level}"] if level else [])
        out.append((segment.index_text(service.search_parts(data), max_chars=max_chars), lexemes))
    return out


async def index_pending(
    *, session: AsyncSession, settings: Any, limit: int, segmenter: Segmenter | None = None
) -> int:
    """Index the next dossiers after the cursor and move it, in one transaction; how many were indexed."""
    sqlite = is_sqlite(session.bind)
    q = select(SearchCursor).where(SearchCursor.id == 1)
    if not sqlite:
        q = q.with_for_update(skip_locked=True)
    cursor = (await session.exec(q)).first()
    if cursor is None:  # another replica holds it (PostgreSQL), or the row is missing
        await session.rollback()
        return 0
    rows = (
        await session.exec(
            select(Dossier.seq, Dossier.content, Dossier.closed_at)
            .where(Dossier.seq > cursor.seq)
            .order_by(Dossier.seq)
            .limit(limit)
        )
    ).all()
    if not rows:
        await session.rollback()
        return 0
    contents = [r[1] for r in rows]
    if segmenter is not None:
        texts = await segmenter(contents)
    else:
        texts = await asyncio.to_thread(segment_contents, contents, settings.search_text_max_chars)
    if sqlite:
        statement = "INSERT INTO dossier_fts (rowid, body) VALUES (:seq, :body)"
        params = [{"seq": r[0], "body": t} for r, (t, _) in zip(rows, texts, strict=True)]
    else:
        # Words without positions (no phrase search or ranking needs them), plus the filters as
        # lexemes of their own ("~unit:…", "~level:III"): one GIN index answers words and filters.
        statement = (
            "INSERT INTO dossier_search (seq, closed_at, vector) VALUES (:seq, :closed_at, "
            "strip(to_tsvector('simple', :body)) || array_to_tsvector(CAST(:lexemes AS text[])))"
        )
        params = [
            {"seq": r[0], "closed_at": r[2], "body": t, "lexemes": lx}
            for r, (t, lx) in zip(rows, texts, strict=True)
        ]
    await session.exec(text(statement), params=params)
    cursor.seq = rows[-1][0]
    session.add(cursor)
    await session.commit()
    return len(rows)


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    indexer = session.info.pop("search_indexer", None)
    if indexer is not None:
        indexer.wake()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("search_indexer", None)


class SearchIndexer(BackgroundWorker):
    """The background task that keeps the full-text index up with the chain."""

    worker_name = "search-indexer"

    def __init__(self, *, sessions, settings):
        self.sessions = sessions
        self.settings = settings
        super().__init__()

    def after_commit_of(self, session: AsyncSession) -> None:
        """Wake the indexer when this session's transaction commits."""
        session.sync_session.info["search_indexer"] = self

    async def drain(self) -> int:
        """Index until nothing is left; how many were indexed."""
        total = 0
        while True:
            async with self.sessions() as session:
                n = await index_pending(
                    session=session, settings=self.settings, limit=self.settings.index_batch_size
                )
            total += n
            if n == 0:
                return total

    @property
    def poll_seconds(self) -> float:
        return self.settings.index_poll_seconds

    async def run_round(self) -> None:
        """Index what is new."""
        await self.drain()


async def index_lag(session: AsyncSession) -> int:
    """Sealed dossiers not yet in the full-text index."""
    head = (await session.exec(text("SELECT seq FROM chain_head WHERE id = 1"))).scalar() or 0
    cursor = await session.get(SearchCursor, 1)
    lag = max(0, head - (cursor.seq if cursor else 0))
    metrics.INDEX_LAG.set(lag)
    return lag
