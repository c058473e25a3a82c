"""Which service receives each event intake emits."""

EVENT_ROUTES: dict[str, list[str]] = {
    "message.received": ["grading"],
    "message.feedback": ["grading"],
}
