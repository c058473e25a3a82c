"""Grading's per-process runtime: the bundle in use, the engine and model, the same-matter index."""

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import select as sa_select
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.grading.bundle import Bundle, BundleHolder, ReloadResult
from services.grading.classifier import CategoryModel
from services.grading.clustering import Features, MatterIndex, words
from services.grading.grader import Engine
from services.grading.models import IncidentMessage, MatterSignature
from services.grading.routing_model import RouteModel

log = logging.getLogger("minsheng.grading.runtime")

# pg_advisory_xact_lock key of same-matter decisions: replicas take turns, so two messages of one
# matter arriving at two replicas at once never open two incidents.
CLUSTER_LOCK_KEY = 0x4D53_4752  # "MSGR"
SYNC_BATCH = 5000


class GradingRuntime:
    """What one grading process holds in memory."""

    def __init__(
        self,
        *,
        bundle_dir: Path,
        model_path: Path | None,
        timezone: str,
        route_model_path: Path | None = None,
    ):
        self.holder = BundleHolder(bundle_dir)
        self.model_path = model_path
        self.route_model_path = route_model_path
        self.timezone = timezone
        self.model: CategoryModel | None = None
        self.route_model: RouteModel | None = None
        self.model_error: str | None = None
        self.load_model()
        self.engine = self._engine(self.holder.current)
        self.index = MatterIndex(self.bundle.policy.clustering)
        words("预热分词词典")  # load the segmenter's dictionary now, not on the first message
        self.lock = asyncio.Lock()
        self.index_ready = False

    @property
    def bundle(self) -> Bundle:
        return self.holder.current

    def _engine(self, bundle: Bundle) -> Engine:
        return Engine(bundle, self.model, route_model=self.route_model, timezone=self.timezone)

    def load_model(self) -> None:
        """Load the trained models when their files exist; else the taxonomy's cold start and rules."""
        self.model, self.route_model, self.model_error = None, None, None
        if self.route_model_path is not None and self.route_model_path.exists():
            try:
                self.route_model = RouteModel.load(self.route_model_path)
                log.info("routing model loaded: %d samples", self.route_model.samples)
            except Exception as exc:  # the rules still route
                self.model_error = f"routing model: {type(exc).__name__}: {exc}"
                log.error("cannot load the routing model %s: %s", self.route_model_path, exc)
        if self.model_path is None or not self.model_path.exists():
            log.info("no trained category model at %s: cold start from the taxonomy", self.model_path)
            return
        try:
            self.model = CategoryModel.load(self.model_path)
            log.info("category model loaded: %d samples, labels %s", self.model.samples, self.model.labels)
        except Exception as exc:  # a broken file must not stop grading: the cold start still works
            self.model_error = f"{type(exc).__name__}: {exc}"
            log.error("cannot load the category model %s: %s; using the cold start", self.model_path, exc)

    def reload_bundle(self) -> ReloadResult:
        """Reload the bundle; a good one replaces the engine (the index too if clustering changed)."""
        before = self.bundle.policy.clustering
        result = self.holder.reload()
        if result.ok:
            self.engine = self._engine(result.bundle)
            if result.bundle.policy.clustering != before:
                self.index = MatterIndex(result.bundle.policy.clustering)
                self.index_ready = False
        return result

    def reload_model(self) -> None:
        """Reload the model file and rebuild the engine around it."""
        self.load_model()
        self.engine = self._engine(self.bundle)

    async def sync_index(self, session: AsyncSession, *, now: datetime) -> int:
        """Bring the in-memory index up to what every replica has written (incremental by sequence)."""
        window = timedelta(days=self.bundle.policy.clustering.window_days)
        sig, msg = MatterSignature.__table__.c, IncidentMessage.__table__.c
        added = 0
        while True:
            # One statement: the signatures and the incidents they belong to (usually none are new).
            q = (
                sa_select(
                    sig.seq,
                    sig.message_id,
                    sig.received_at,
                    sig.hashvalues,
                    sig.title_words,
                    sig.tf,
                    msg.incident_id,
                )
                .select_from(
                    MatterSignature.__table__.outerjoin(
                        IncidentMessage.__table__, msg.message_id == sig.message_id
                    )
                )
                .where(sig.seq > self.index.watermark)
                .order_by(sig.seq)
                .limit(SYNC_BATCH)
            )
            if not self.index_ready:
                q = q.where(sig.received_at >= now - window)
            rows = (await (await session.connection()).execute(q)).all()
            if not rows:
                break
            await asyncio.to_thread(self._add_rows, rows)
            added += len(rows)
            if len(rows) < SYNC_BATCH:
                break
        self.index_ready = True
        return added

    def _add_rows(self, rows) -> None:
        for seq, message_id, received_at, hashvalues, title_words, tf, incident_id in rows:
            if incident_id is None:
                self.index.watermark = max(self.index.watermark, seq or 0)
                continue
            f = Features(np.frombuffer(hashvalues, dtype=np.uint32).copy(), list(title_words), dict(tf))
            self.index.add(message_id, incident_id, f, received_at, seq=seq or 0)


async def cluster_lock(session: AsyncSession) -> None:
    """On PostgreSQL, serialise same-matter decisions across replicas until the transaction ends."""
    if session.bind.dialect.name == "postgresql":
        await session.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=CLUSTER_LOCK_KEY))
