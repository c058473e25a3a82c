"""What grading does with the events it receives."""

from kit.inbox import EventConsumer
from schema.events import MessageReceived
from services.grading import matters
from services.grading.models import InboxEvent

consumer = EventConsumer(inbox_model=InboxEvent)


@consumer.on_batch("message.received")
async def on_messages_received(session, events: list[MessageReceived], state) -> None:
    """Grade a delivery's messages into their incidents (new ones, or the open incidents of their
    matters) in one transaction; the kit applies them one by one if that fails."""
    await matters.ingest_many(
        session=session,
        outbox=state.outbox,
        rt=state.grading,
        msgs=[e.data for e in events],
        now=state.clock.now(),
    )
