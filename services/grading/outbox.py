"""Which service receives each event grading emits."""

EVENT_ROUTES: dict[str, list[str]] = {
    "message.status_changed": ["intake"],
    "incident.graded": ["notify"],
    "incident.escalated": ["notify"],
    "incident.closed": ["archive", "notify"],
    "notification.requested": ["notify"],
}
