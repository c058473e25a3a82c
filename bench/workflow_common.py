"""Shared plumbing of the workflow benchmarks: a migrated grading database on PostgreSQL, bulk loading
with COPY, and the supervision scheduler on a minimal runtime (no HTTP server)."""

import itertools
import json
import random
import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg

from bench.archive_common import pg_database
from bench.common import PG_URL
from kit.clock import Clock
from kit.db import make_engine, make_session_factory
from kit.migrate import upgrade
from kit.outbox import Outbox
from services.grading.config import GradingSettings
from services.grading.main import MIGRATIONS
from services.grading.models import Incident, OutboxEvent
from services.grading.outbox import EVENT_ROUTES
from services.grading.runtime import GradingRuntime

LEVELS = [("I", 1), ("II", 3), ("III", 11), ("IV", 85)]
CHANNELS = [
    ("hotline", 55),
    ("portal", 25),
    ("wechat", 6),
    ("weibo", 5),
    ("grid", 4),
    ("forum", 2),
    ("news", 1),
    ("douyin", 1),
    ("superior", 1),
]


def weighted(rng: random.Random, table: list[tuple[str, int]]) -> str:
    """One value of a (value, weight) table."""
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


async def fresh_database(name: str) -> str:
    """A new, migrated grading database on PostgreSQL."""
    url = await pg_database(name, fresh=True)
    upgrade(MIGRATIONS, url)
    return url


async def drop_database(name: str) -> None:
    """Drop a benchmark database."""
    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def raw(url: str) -> asyncpg.Connection:
    """An asyncpg connection to a benchmark database."""
    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))


def _value(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


async def copy_rows(conn: asyncpg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """COPY dicts (all of one shape) into a table; JSON values as text, a None `id` left to its sequence."""
    names = [k for k in rows[0] if not (k == "id" and rows[0][k] is None)]
    records = [tuple(_value(r[n]) for n in names) for r in rows]
    await conn.copy_records_to_table(table, records=records, columns=names)


class Catalogue:
    """Who handles what, roughly as in a city: a few units get most matters (Zipf-like weights, which
    unit is big fixed by the seed), and each unit mostly sees its department type's categories."""

    def __init__(self, bundle, rng: random.Random):
        units = sorted(bundle.units.values(), key=lambda u: u.code)
        rng.shuffle(units)
        self.codes = [u.code for u in units]
        self.cum = list(itertools.accumulate(1 / (rank + 1) ** 0.9 for rank in range(len(units))))
        by_type: dict[str, set[str]] = defaultdict(set)
        for p in bundle.categories:
            by_type[p.department_type].add(p.level1)
        every = sorted({p.level1 for p in bundle.categories})
        self.categories = {u.code: sorted(by_type.get(u.type, ())) or rng.sample(every, 3) for u in units}

    def pick(self, rng: random.Random) -> tuple[str, str]:
        """A unit and one of its categories."""
        unit = rng.choices(self.codes, cum_weights=self.cum)[0]
        return unit, rng.choice(self.categories[unit])


_TEMPLATE: dict[str, Any] = {}


def incident_row(
    i: int, *, rng: random.Random, received_at: datetime, catalogue: Catalogue, status: str, reply_due
) -> dict[str, Any]:
    """A synthetic open incident (every column the table needs: the model's defaults, then these)."""
    if not _TEMPLATE:
        _TEMPLATE.update(
            Incident(id="x", code="x", title="x", status="graded", level="IV", received_at=received_at,
                     updated_at=received_at).model_dump()
        )  # fmt: skip
    unit, category = catalogue.pick(rng)
    return {
        **_TEMPLATE,
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "code": f"SJB-{i:08d}",
        "title": f"基准事项{i}",
        "status": status,
        "level": weighted(rng, LEVELS),
        "category": {"level1": category, "level2": None, "level3": None, "confidence": 0.9},
        "request_type": "complaint",
        "response_type": "inquiry",
        "warning_class": "general",
        "lead_unit_code": unit,
        "lead_unit_name": unit,
        "channels": [weighted(rng, CHANNELS)],
        "received_at": received_at,
        "updated_at": received_at,
        "reply_due": reply_due,
        "reply_started_at": received_at,
        "assign_round": 1,
        "factors": [],
        "co_units": [],
    }


def runtime_state(url: str, var: Path, *, batch: int = 500) -> SimpleNamespace:
    """What the Supervisor needs of the app state: settings, sessions, clock, outbox, the runtime."""
    settings = GradingSettings(
        database_url=url,
        var_dir=var,
        log_json=False,
        log_level="WARNING",
        supervision_batch_size=batch,
        supervision_poll_seconds=0,
    )
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    clock = Clock()
    state = SimpleNamespace(settings=settings, engine=engine, sessions=sessions, clock=clock)
    state.outbox = Outbox(
        model=OutboxEvent,
        session_factory=sessions,
        http=None,
        settings=settings,
        routes=EVENT_ROUTES,
        clock=clock,
    )
    state.grading = GradingRuntime(
        bundle_dir=settings.bundle_dir, model_path=None, timezone=settings.timezone
    )
    return state


def days_back(today: date, n: int) -> list[date]:
    """The n days up to today."""
    return [today - timedelta(days=k) for k in range(n)]
