"""The outside tools a run uses, found or installed: wrk (Debian) and py-spy (PyPI).

Both are optional: without wrk the closed-loop runs fall back to the Python generator
(the report says so), without py-spy the report has no profile section.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import LOAD_CPU, pinned

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("BENCH_CACHE_DIR", Path.home() / ".cache" / "nicepay-bench"))
TOOLS = CACHE / "tools"


def _quiet(argv: list[str], timeout: float) -> bool:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ensure_wrk() -> str | None:
    """wrk from PATH, or installed with apt-get when we are root on Debian; else None."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("bench: wrk not found, installing it with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if not _quiet(install, 300):
        subprocess.run(
            ["apt-get", "update", "-q"], capture_output=True, timeout=300, check=False, env=env
        )
        _quiet(install, 300)
    return shutil.which("wrk")


def ensure_py_spy() -> str | None:
    """py-spy from PATH or this venv, or pip-installed into the bench's tool cache; else None."""
    for candidate in (
        shutil.which("py-spy"),
        Path(sys.executable).with_name("py-spy"),
        TOOLS / "bin" / "py-spy",
    ):
        if candidate and Path(candidate).exists():
            return str(candidate)
    print(f"bench: py-spy not found, installing it into {TOOLS}", flush=True)
    binary = TOOLS / "bin" / "py-spy"
    # The project's venv (made by uv) has no pip: the interpreter it was made from has.
    for python in (sys.executable, getattr(sys, "_base_executable", ""), "python3"):
        if python and not binary.exists():
            pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            _quiet([*pip, "--target", str(TOOLS), "py-spy"], 300)
    return str(binary) if binary.exists() else None


@dataclass
class WrkRun:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50: float  # seconds
    p99: float
    max: float


async def run_wrk(
    wrk: str,
    port: int,
    path: str,
    bodies_file: Path,
    seconds: float,
    *,
    connections: int,
    content_type: str,
    user_agent: str,
) -> WrkRun:
    """wrk on the load core: one thread, `connections` keep-alive connections, bodies in turn."""
    argv = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    argv += ["-s", str(HERE / "post.lua"), f"http://127.0.0.1:{port}{path}"]
    argv += ["--", str(bodies_file), content_type, user_agent]
    process = await asyncio.create_subprocess_exec(
        *pinned(argv, LOAD_CPU), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {text[-500:]}")
    data = json.loads(line.split(" ", 1)[1])
    socket_errors = sum(
        data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return WrkRun(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        non_2xx=data["status_errors"],
        socket_errors=socket_errors,
        p50=data["p50_us"] / 1e6,
        p99=data["p99_us"] / 1e6,
        max=data["max_us"] / 1e6,
    )
