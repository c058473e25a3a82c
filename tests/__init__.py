"""Cross-service tests and the shared test support."""
