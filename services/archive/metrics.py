"""Archive's Prometheus metrics (DB-backed gauges are refreshed when /metrics is scraped)."""

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func
from sqlmodel import select

from services.archive.models import ChainHead, Dossier

SEALED = Counter("minsheng_archive_dossiers_sealed_total", "Dossier versions sealed", ["level"])
SEAL_SECONDS = Histogram(
    "minsheng_archive_seal_seconds",
    "Time to build and seal one dossier (after its messages and notifications were fetched)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CHAIN_LENGTH = Gauge("minsheng_archive_chain_length", "Dossiers on the hash chain")
VERIFICATIONS = Counter("minsheng_archive_verifications_total", "Chain verifications run", ["result"])
VERIFICATION_FAILURES = Counter(
    "minsheng_archive_verification_failures_total", "Dossiers found altered or out of place by a verification"
)
LAST_VERIFICATION_PROBLEMS = Gauge(
    "minsheng_archive_last_verification_problems", "Problems the most recent verification found"
)
INDEX_LAG = Gauge("minsheng_archive_index_lag", "Sealed dossiers not yet in the full-text index")
DISPOSAL_DUE = Gauge("minsheng_archive_disposal_due", "Dossiers whose retention period has ended")
EXPORTS = Counter("minsheng_archive_exports_total", "Dossier exports produced")
REPORTS = Counter("minsheng_archive_reports_total", "Reports produced", ["kind", "format"])


async def refresh_metrics(state) -> None:
    """Set the gauges that need the database."""
    async with state.sessions() as session:
        head = await session.get(ChainHead, 1)
        CHAIN_LENGTH.set(head.seq if head else 0)
        due = (
            await session.exec(
                select(func.count()).select_from(Dossier).where(Dossier.retention_until <= state.clock.now())
            )
        ).one()
        DISPOSAL_DUE.set(due)
        from services.archive.indexer import index_lag  # the indexer imports these metrics

        await index_lag(session)
