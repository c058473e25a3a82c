"""Minsheng's services: intake, grading, notify, archive."""
