"""Real-process fixtures (tests/procs.py) for the console's browser tests."""

from tests.procs import process_db, simulator

__all__ = ["process_db", "simulator"]
