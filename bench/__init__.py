"""Benchmarks: `python -m bench` measures the service and writes docs/BENCHMARKS.md."""
