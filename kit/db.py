"""Async database access shared by services: engine, sessions and portable column types."""

from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator
from sqlmodel.ext.asyncio.session import AsyncSession

# JSON everywhere, JSONB on PostgreSQL (indexable, compact).
JSONType = JSON().with_variant(JSONB(), "postgresql")


def json_text(value: Any) -> str:
    """A JSON column's value as text (orjson: the standard library's encoder was 13 % of intake's
    CPU storing batches); keys that are not strings become strings, as with `json.dumps`."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# JSON columns on both dialects go through these instead of `json.dumps`/`json.loads`.
_JSON_CODEC = {"json_serializer": json_text, "json_deserializer": orjson.loads}


class UTCDateTime(TypeDecorator):
    """A timezone-aware datetime stored as UTC; SQLite gives back aware values too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def new_list() -> list:
    """`default_factory` of list fields of table models. A Python function, not `list`: pydantic reads the
    factory's signature whenever it fills the default (model_validate, and rows `kit.tables` cannot
    build directly), and a builtin's costs ≈ 50 µs to parse."""
    return []


def new_dict() -> dict:
    """`default_factory` of dict fields of table models (see `new_list`)."""
    return {}


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def padded(values: Iterable[Any]) -> list[Any]:
    """Values for an `IN` list, padded to the next power of two by repeating the last one.

    Each length of an IN list is a statement of its own, and asyncpg keeps every statement prepared
    on every pooled connection (with its parameter types and result columns: ≈ 15 KB for a whole
    message row). Lists whose length follows the size of a delivery would make a statement per
    length; padded, they make one per power of two. A repeated value changes no IN's answer.
    """
    out = list(values)
    n = len(out)
    if n > 2:
        out.extend([out[-1]] * ((1 << (n - 1).bit_length()) - n))
    return out


def is_sqlite(url_or_engine: Any) -> bool:
    """True when the URL or engine is SQLite."""
    url = str(getattr(url_or_engine, "url", url_or_engine))
    return url.startswith("sqlite")


class StatementCache(MutableMapping):
    """SQLAlchemy's per-connection cache of asyncpg prepared statements, bounded by their parameters.

    A bulk INSERT of n rows or an IN list of n values is a different statement for every n, and a
    prepared one holds a type and a codec per parameter (≈ 60 bytes each with its text; 11,600 for a
    relay batch's incident rows). SQLAlchemy keeps the last 100 statements whatever their size: on 20
    pooled connections that grew a grading process by tens of MB in the soak, and the server's backends
    by as much. Here the least recently used statements also go when the parameters of those kept pass
    `budget`; the many short statements that repeat stay prepared, and so does the last big one.
    """

    def __init__(self, capacity: int, budget: int):
        self.capacity, self.budget, self.params = capacity, budget, 0
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def __getitem__(self, operation: str) -> Any:
        value = self._items[operation]
        self._items.move_to_end(operation)
        return value[0]

    def __setitem__(self, operation: str, value: Any) -> None:
        n = operation.count("$")  # asyncpg's parameters are $1, $2 …
        if n > self.budget:
            return
        if operation in self._items:
            self.params -= self._items.pop(operation)[1]
        self._items[operation] = (value, n)
        self.params += n
        while len(self._items) > self.capacity or self.params > self.budget:
            self.params -= self._items.popitem(last=False)[1][1]

    def __delitem__(self, operation: str) -> None:
        self.params -= self._items.pop(operation)[1]

    def __contains__(self, operation: object) -> bool:
        return operation in self._items

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def make_engine(
    url: str,
    *,
    pool_size: int = 20,
    max_overflow: int = 0,
    echo: bool = False,
    statement_cache_params: int = 20_000,
) -> AsyncEngine:
    """An async engine: SQLite in WAL mode with a busy timeout, or a pooled asyncpg engine (each
    connection keeps prepared statements of at most `statement_cache_params` parameters in all)."""
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30}, **_JSON_CODEC)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            # We emit BEGIN ourselves (below) so that writers queue on the busy timeout instead of
            # dead-locking when two read transactions both try to upgrade to a write.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800, **_JSON_CODEC
    )

    # SQLAlchemy's asyncpg adapter keeps its statements in this attribute (a test reads it back).
    @event.listens_for(engine.sync_engine, "connect")
    def _bounded_statement_cache(dbapi_connection, _record):
        cache = getattr(dbapi_connection, "_prepared_statement_cache", None)
        if cache is not None:
            bounded = StatementCache(cache.capacity, statement_cache_params)
            dbapi_connection._prepared_statement_cache = bounded

    # Instead of pool_pre_ping, which costs every checkout two round trips (asyncpg pings with BEGIN
    # and ROLLBACK: ≈ 8 % of intake's CPU): a connection the server closed (a restart, 57P01) is seen
    # by asyncpg's protocol as soon as the loop reads the socket, so the check is free; the pool then
    # replaces it. A connection that dies in use fails its statement and SQLAlchemy invalidates the pool.
    @event.listens_for(engine.sync_engine, "checkout")
    def _replace_closed(dbapi_connection, _record, _proxy):
        raw = getattr(dbapi_connection, "_connection", None)
        if raw is not None and raw.is_closed():
            raise DisconnectionError("connection closed by the server")

    return engine


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for one request; rolled back if the request fails before committing."""
    async with factory() as session:
        yield session
