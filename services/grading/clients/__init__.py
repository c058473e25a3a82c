"""Calls grading makes to other services (none yet: it talks through events)."""
