"""Archive's HTTP API."""
