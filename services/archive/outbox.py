"""Which service receives each event archive emits (none yet)."""

EVENT_ROUTES: dict[str, list[str]] = {}
