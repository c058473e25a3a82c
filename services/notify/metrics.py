"""Notify's Prometheus metrics (module level); database-backed gauges are refreshed on scrape."""

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func
from sqlmodel import select

DELIVERIES = Counter(
    "minsheng_notify_deliveries_total", "Deliveries by channel and status reached", ["channel", "status"]
)
FAILURES = Counter(
    "minsheng_notify_failures_total",
    "Provider calls that did not deliver, by provider and verdict",
    ["provider", "verdict"],
)
PROVIDER_LATENCY = Histogram(
    "minsheng_notify_provider_seconds",
    "Time a provider took to answer",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
FAILOVERS = Counter(
    "minsheng_notify_failovers_total", "SMS sent by a later provider after an earlier one failed"
)
GROUPED = Counter("minsheng_notify_grouped_total", "Alerts folded into a waiting delivery", ["channel"])
ESCALATIONS = Counter("minsheng_notify_escalation_steps_total", "Escalation steps taken", ["kind"])
UNACKNOWLEDGED = Counter(
    "minsheng_notify_unacknowledged_total", "Alerts whose chain ran out unacknowledged", ["kind"]
)
ACKS = Counter("minsheng_notify_acks_total", "Acknowledgements", ["channel"])
PENDING_ESCALATIONS = Gauge("minsheng_notify_pending_escalations", "Alerts waiting for an acknowledgement")
QUEUED = Gauge("minsheng_notify_queued_deliveries", "Deliveries not yet sent")
OLDEST_QUEUED = Gauge(
    "minsheng_notify_oldest_queued_seconds", "Age of the oldest delivery due and not yet sent"
)
SCHEDULER_LEADER = Gauge("minsheng_notify_scheduler_leader", "1 when this replica runs the scheduler")


async def refresh(state) -> None:
    """Gauges that need the database (called when /metrics is scraped)."""
    from services.notify.models import Alert, Delivery

    now = state.clock.now()
    async with state.sessions() as s:
        PENDING_ESCALATIONS.set((await s.exec(select(func.count()).where(Alert.status == "open"))).one())
        QUEUED.set((await s.exec(select(func.count()).where(Delivery.status == "queued"))).one())
        oldest = (
            await s.exec(
                select(func.min(Delivery.next_attempt_at)).where(
                    Delivery.status == "queued", Delivery.next_attempt_at <= now
                )
            )
        ).one()
    OLDEST_QUEUED.set((now - oldest).total_seconds() if oldest else 0.0)
