"""One .env for every entry point: `python -m app ...` run where a .env is (the repository
root, where scripts/dev.sh writes it from .env.example) reads it, so an operator's second
terminal sees the simulator, the dev storefront key and the allowlist the service uses."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import REPO, child_env, free_port

pytestmark = pytest.mark.slow


def doctor(cwd: Path, **settings: str) -> dict[str, str]:
    """{check name: detail} from `python -m app doctor` run in `cwd` with only `settings`
    in its environment."""
    completed = subprocess.run(
        [sys.executable, "-m", "app", "doctor"],
        cwd=cwd,
        env=child_env(**settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line.split(None, 1)[1] for line in completed.stdout.splitlines()[:-1]]
    return dict(line.split(": ", 1) for line in lines)


async def test_the_cli_reads_the_env_file_where_it_runs(tmp_path: Path) -> None:
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    checks = doctor(tmp_path)
    assert checks["settings"] == f"APP_ENV=development, from the environment and {tmp_path}/.env"
    assert "127.0.0.1/32" in checks["NICEPAY allowed IPs"]
    assert checks["storefront keys"] == "1 set"
    assert "http://127.0.0.1:8900" in checks["NICEPAY"]  # the simulator, not NICEPAY's sandbox


async def test_without_an_env_file_the_cli_says_so(tmp_path: Path) -> None:
    # Loopback addresses nobody listens on: no call to NICEPAY's real sandbox from a test.
    nowhere = f"http://127.0.0.1:{free_port()}"
    checks = doctor(tmp_path, nicepay_base_url=nowhere, public_base_url=nowhere)
    assert checks["settings"] == "APP_ENV=development, from the environment (no .env here)"
    assert "127.0.0.1" not in checks["NICEPAY allowed IPs"]
    assert checks["storefront keys"].startswith("none")
