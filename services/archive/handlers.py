"""What archive does with the events it receives."""

import asyncio

from kit.inbox import EventConsumer
from schema.events import IncidentClosed
from services.archive import service
from services.archive.clients.platform import fetch_messages, fetch_notifications
from services.archive.models import InboxEvent

consumer = EventConsumer(inbox_model=InboxEvent)


LOOKUPS_AT_ONCE = 8  # notification look-ups in flight per batch (notify answers each from its own DB)
IDS_PER_LOOKUP = 500  # message ids per intake look-up (intake takes up to 1000)


@consumer.on_batch("incident.closed")
async def on_closed(session, events: list[IncidentClosed], state) -> None:
    """Closings (one, or a relay batch): look up their messages and notifications, then seal every new
    dossier version in one transaction.

    A look-up that fails raises, so nothing is sealed half-filled: the inbox then applies a batch's
    events one by one, and only the failing one waits for the relay's retry.
    """
    ids = list(dict.fromkeys(m for e in events for m in e.data.message_ids))
    gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    async def messages_part(part: list[str]):
        async with gate:
            return await fetch_messages(http=state.http, settings=state.settings, message_ids=part)

    async def notifications_of(incident_id: str):
        async with gate:
            return await fetch_notifications(
                http=state.http, settings=state.settings, incident_id=incident_id
            )

    parts = [ids[k : k + IDS_PER_LOOKUP] for k in range(0, len(ids), IDS_PER_LOOKUP)]
    incident_ids = list(dict.fromkeys(e.data.id for e in events))
    found = await asyncio.gather(
        *(messages_part(p) for p in parts), *(notifications_of(i) for i in incident_ids)
    )
    by_id = {m.id: m for chunk in found[: len(parts)] for m in chunk}
    notes = dict(zip(incident_ids, found[len(parts) :], strict=True))
    items = [(e.data, [by_id[m] for m in e.data.message_ids if m in by_id], notes[e.data.id]) for e in events]
    await service.seal_many(
        session=session, items=items, policy=state.policy, settings=state.settings, now=state.clock.now()
    )
    state.indexer.after_commit_of(session)
