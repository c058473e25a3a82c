"""Calls the gateway makes to the services (health, OpenAPI documents) go through the shared client."""
