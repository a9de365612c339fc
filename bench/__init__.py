"""Benchmarks: `python -m bench [name ...]` prints each one's figures."""
