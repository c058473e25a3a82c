"""What intake does with the events it receives."""

from kit.inbox import EventConsumer
from schema.events import MessageStatusChanged
from services.intake import service
from services.intake.models import InboxEvent

consumer = EventConsumer(inbox_model=InboxEvent)


@consumer.on_batch("message.status_changed")
async def on_status_changed(session, events: list[MessageStatusChanged], state) -> None:
    """Keep the citizen view in step with the incident; queue the reply for the client's callback URL.
    A run of changes is applied together: one read of its messages, one write of their timeline."""
    await service.apply_status_changes(
        session=session,
        changes=[(e.data, state.clock.now()) for e in events],
        config=getattr(state, "config", None),
    )
