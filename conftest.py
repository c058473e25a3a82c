"""Shared test fixtures for every test folder (tests/ and each service's own tests)."""

pytest_plugins = ["tests.fixtures"]
