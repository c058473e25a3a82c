"""The workflow's events from other services: a citizen's feedback (回访) from intake.

Registered on grading's consumer from here (imported by main.py), beside the message.received handler.
"""

from schema.events import MessageFeedback
from services.grading import workflow
from services.grading.handlers import consumer


@consumer.on("message.feedback")
async def on_feedback(session, event: MessageFeedback, state) -> None:
    """Record the rating; satisfied closes the loop, unsatisfied reopens the matter (重办)."""
    ctx = workflow.Ctx(session=session, outbox=state.outbox, rt=state.grading, now=state.clock.now())
    await workflow.apply_feedback(ctx, data=event.data)
