"""Benchmarks: `python -m bench.<name>` from the repo root; each prints its figures."""
