"""Which schema revision the code expects and the database is at, read without importing Alembic.

The migration step (`kit.migrate`) runs Alembic; a serving process only compares revisions for its
readiness, and Alembic with Mako would cost it ≈ 10 MB of memory for that."""

import ast
import functools
from pathlib import Path

from sqlalchemy import column, inspect, select, table
from sqlalchemy.ext.asyncio import AsyncEngine

VERSION_TABLE = "alembic_version"  # Alembic's default, which every service's env.py keeps


@functools.cache
def head_revision(migrations_dir: Path) -> str | None:
    """The newest revision in the service's migrations folder: the one no other script revises."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (Path(migrations_dir) / "versions").glob("*.py"):
        assigned = _module_constants(path, ("revision", "down_revision"))
        if assigned.get("revision"):
            revisions.add(assigned["revision"])
        down = assigned.get("down_revision")
        revised.update(down if isinstance(down, (tuple, list)) else [down] if down else [])
    heads = revisions - revised
    if len(heads) > 1:
        raise RuntimeError(f"{migrations_dir} has several heads: {sorted(heads)}")
    return next(iter(heads), None)


def _module_constants(path: Path, names: tuple[str, ...]) -> dict:
    """Top-level `name = literal` (annotated or not) assignments of a script, by name."""
    out = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        else:
            continue
        if target in names:
            out[target] = ast.literal_eval(value)
    return out


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None when it was never migrated)."""

    def read(conn) -> str | None:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        query = select(column("version_num")).select_from(table(VERSION_TABLE))
        versions = conn.execute(query).scalars().all()
        return versions[0] if len(versions) == 1 else ",".join(sorted(versions)) or None

    async with engine.connect() as conn:
        return await conn.run_sync(read)
