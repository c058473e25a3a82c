"""Grading's HTTP API."""
