"""Benchmarks: each issue's figures, measured side by side in one run."""
