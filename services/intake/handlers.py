"""What intake does with the events it receives."""

from kit.inbox import EventConsumer
from schema.events import MessageStatusChanged
from services.intake import service
from services.intake.models import InboxEvent

consumer = EventConsumer(inbox_model=InboxEvent)


@consumer.on_each("message.status_changed")
async def on_status_changed(session, event: MessageStatusChanged, state) -> None:
    """Keep the citizen view in step with the incident; queue the reply for the client's callback URL."""
    await service.apply_status_change(
        session=session, data=event.data, at=state.clock.now(), config=getattr(state, "config", None)
    )
