"""Alembic, per service: each service keeps its own migrations folder and version table."""

import asyncio
import logging
import threading
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from kit.db import is_sqlite

log = logging.getLogger("minsheng.migrate")


def alembic_config(migrations_dir: Path, url: str) -> Config:
    """An Alembic config for one service's migrations and database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(migrations_dir: Path, url: str, revision: str = "head") -> None:
    """Bring the database to the revision (safe to run again: a migrated database stays as it is)."""
    if is_sqlite(url):
        Path(url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
    cfg = alembic_config(migrations_dir, url)
    _outside_loop(lambda: command.upgrade(cfg, revision))


def _outside_loop(fn) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn()
        return
    # Called from async code (a test, a launcher coroutine): run in a thread with its own loop.
    errors: list[BaseException] = []

    def target():
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if errors:
        raise errors[0]


def run_env(target_metadata) -> None:
    """The body of every service's migrations/env.py."""
    url = context.config.get_main_option("sqlalchemy.url")
    batch = is_sqlite(url)  # SQLite needs batch mode to alter tables
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=batch)
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection):
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=batch, compare_type=True
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async():
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(run_async())
