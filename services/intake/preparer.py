"""Batch preparation (checks, cleaning, screening, sealing) in worker processes.

Cleaning and screening a thousand texts is CPU work of a few hundred milliseconds. In worker processes
it runs on another core while intake's event loop keeps serving and storing; a batch is cut into
chunks so the first chunks are being inserted while the last are still being prepared.
"""

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Any

from kit.context import current_traceparent
from services.intake import rules, service
from services.intake.config import IntakeConfig
from services.intake.pii import PiiVault
from services.intake.screening import Screener

log = logging.getLogger("minsheng.intake.preparer")

_WORKER: dict[str, Any] = {}


def _init(config: IntakeConfig, pii_keys: list[str]) -> None:
    _WORKER.update(config=config, screener=Screener(config.screening), vault=PiiVault(pii_keys))


def prepare_items(
    items: list[tuple[int, Any]], *, scope: str, config, screener, vault, now: datetime
) -> tuple[list[service.Prepared], dict[int, service.Outcome]]:
    """Parse and prepare batch items; the ones that break a rule come back as rejected outcomes."""
    prepared, rejected = [], {}
    for i, raw in items:
        try:
            data = service.parse_item(raw)
            prepared.append(
                service.prepare(
                    index=i,
                    data=data,
                    client_id=scope,
                    config=config,
                    screener=screener,
                    vault=vault,
                    now=now,
                )
            )
        except rules.Rejected as err:
            rejected[i] = service.Outcome(i, "rejected", error=err)
    return prepared, rejected


def _in_worker(items: list[tuple[int, Any]], scope: str, now: datetime, trace: str | None):
    prepared, rejected = prepare_items(
        items,
        scope=scope,
        config=_WORKER["config"],
        screener=_WORKER["screener"],
        vault=_WORKER["vault"],
        now=now,
    )
    # The events too: building and serialising them is work the event loop need not do.
    for p in prepared:
        p.events = service.seal_events(p, trace=trace)
    # Exceptions do not pickle their own fields: send the rejections as plain tuples.
    return prepared, [(i, o.error.code, o.error.message, o.error.details) for i, o in rejected.items()]


class Preparer:
    """A lazily started pool of worker processes (none when `processes` is 0)."""

    def __init__(self, *, config: IntakeConfig, pii_keys: list[str], processes: int, chunk: int):
        self.config = config
        self.pii_keys = pii_keys
        self.processes = processes
        self.chunk = chunk
        self._pool: ProcessPoolExecutor | None = None

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=(self.config, self.pii_keys),
            )
        return self._pool

    def chunks(self, items: list[tuple[int, Any]], *, scope: str, now: datetime) -> list[asyncio.Future]:
        """Futures of (prepared, rejected) per chunk, in order, prepared in the worker processes."""
        loop = asyncio.get_running_loop()
        pool = self._ensure()
        trace = current_traceparent()
        futures = []
        for k in range(0, len(items), self.chunk):
            part = items[k : k + self.chunk]
            futures.append(loop.run_in_executor(pool, _in_worker, part, scope, now, trace))
        return futures

    async def unpack(self, future) -> tuple[list[service.Prepared], dict[int, service.Outcome]]:
        """A chunk's result with its rejections as outcomes again."""
        prepared, rejected = await future
        return prepared, {
            i: service.Outcome(i, "rejected", error=rules.Rejected(code, message, details))
            for i, code, message, details in rejected
        }

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
