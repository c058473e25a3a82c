"""Intake's Prometheus metrics (domain figures; HTTP and outbox metrics come from the kit)."""

from prometheus_client import Counter, Gauge
from sqlalchemy import func
from sqlmodel import select

RECEIVED = Counter("minsheng_intake_messages_received_total", "Messages stored, by channel", ["channel"])
SCREENED = Counter(
    "minsheng_intake_screened_out_total", "Messages screened out as junk, by reason", ["reason"]
)
RELEASED = Counter("minsheng_intake_released_total", "Screened-out messages released by staff")
DUPLICATES = Counter(
    "minsheng_intake_duplicates_total",
    "Submissions answered with an existing message or stored answer",
    ["kind"],  # natural_key | idempotency_replay
)
REJECTED = Counter("minsheng_intake_rejected_total", "Submissions refused, by error code", ["code"])
FEEDBACK = Counter("minsheng_intake_feedback_total", "Satisfaction feedback received", ["satisfaction"])
UPLOADS = Counter("minsheng_intake_uploads_total", "Files uploaded", ["outcome"])
CALLBACKS_DELIVERED = Counter(
    "minsheng_intake_callbacks_delivered_total", "Reply callbacks that answered 2xx"
)
CALLBACK_FAILURES = Counter(
    "minsheng_intake_callback_failures_total", "Failed callback attempts", ["client_id"]
)
CALLBACKS_PENDING = Gauge("minsheng_intake_callbacks_pending", "Reply callbacks not yet delivered")
CALLBACKS_FAILING = Gauge(
    "minsheng_intake_callbacks_failing", "Undelivered reply callbacks that have failed at least once"
)
SCREENED_WAITING = Gauge("minsheng_intake_screened_out_waiting", "Messages currently screened out")


async def refresh(state) -> None:
    """Refresh the gauges that need the database (called when /metrics is scraped)."""
    from services.intake.models import Callback, Message

    async with state.sessions() as s:
        pending, failing = (
            await s.exec(
                select(func.count(), func.count(Callback.last_error)).where(Callback.delivered_at.is_(None))
            )
        ).one()
        screened = (
            await s.exec(
                select(func.count()).select_from(Message).where(Message.citizen_status == "screened_out")
            )
        ).one()
    CALLBACKS_PENDING.set(pending)
    CALLBACKS_FAILING.set(failing)
    SCREENED_WAITING.set(screened)
