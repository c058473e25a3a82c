"""Signed internal look-ups in intake and notify; a failure raises, so the event is retried later."""

import httpx

from kit.security import ServiceAuth
from schema.dto import MessageRecord, NotificationRecord


async def fetch_messages(*, http: httpx.AsyncClient, settings, message_ids: list[str]) -> list[MessageRecord]:
    """The incident's messages as intake holds them."""
    if not message_ids:
        return []
    resp = await http.get(
        f"{settings.intake_url}/internal/messages",
        params=[("ids", i) for i in message_ids],
        auth=ServiceAuth(settings.service_secret),
    )
    resp.raise_for_status()
    return [MessageRecord.model_validate(m) for m in resp.json()]


async def fetch_notifications(
    *, http: httpx.AsyncClient, settings, incident_id: str
) -> list[NotificationRecord]:
    """The notifications sent about the incident."""
    resp = await http.get(
        f"{settings.notify_url}/internal/notifications",
        params={"incident_id": incident_id},
        auth=ServiceAuth(settings.service_secret),
    )
    resp.raise_for_status()
    return [NotificationRecord.model_validate(n) for n in resp.json()]
