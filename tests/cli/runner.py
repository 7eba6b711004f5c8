"""Run `python -m app ...` as a fresh clone would: another working directory (no .env), only
the settings given, its output kept with the other process logs for the suite's secret grep."""

import asyncio
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from tests.procs import ARTIFACTS, LOG_FILES, child_env

TIMEOUT_SECONDS = 120.0


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run_cli(*args: str, **settings: Any) -> Run:
    """`python -m app <args>` with `settings` (names as in API.md) as its environment."""
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", *args],
        cwd=ARTIFACTS,
        env=child_env(**settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    log_path = ARTIFACTS / f"cli-{args[0]}-{uuid.uuid4().hex[:8]}.log"
    log_path.write_text(completed.stdout + completed.stderr)
    LOG_FILES.append(log_path)
    return Run(completed.returncode, completed.stdout, completed.stderr)
