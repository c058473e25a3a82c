"""Which service receives each event notify emits (none yet: acknowledgements stay here)."""

EVENT_ROUTES: dict[str, list[str]] = {}
