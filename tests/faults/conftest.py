"""Fault-test fixtures: real processes (tests/procs.py), and a PostgreSQL cluster of the
test's own that it may stop, crash and restart."""

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import migrate
from tests.procs import free_port, process_db, simulator

__all__ = ["Cluster", "cluster", "process_db", "simulator"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class Cluster:
    """A PostgreSQL cluster of our own, owned by the postgres user, in a temp directory."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    async def pg_ctl(self, *args: str) -> None:
        data = str(self.directory / "data")
        await _as_postgres(str(PG_BIN / "pg_ctl"), "-D", data, "-w", "-t", "60", *args)

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        await self.pg_ctl("-o", options, "-l", str(self.directory / "server.log"), "start")

    async def restart(self) -> None:
        """A clean restart: the server ends every client connection, then comes back."""
        data = str(self.directory / "data")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        await _as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            data,
            "-w",
            "-t",
            "60",
            "-m",
            "fast",
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "restart",
        )

    async def crash(self) -> None:
        """No checkpoint, no goodbye to clients: what a killed server looks like."""
        await self.pg_ctl("-m", "immediate", "stop")


async def _as_postgres(*command: str, check: bool = True) -> None:
    """Run a PostgreSQL server program as the postgres user (it refuses to run as root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    done = await asyncio.to_thread(
        subprocess.run, [*prefix, *command], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 or not check, f"{command[0]} failed: {done.stdout}{done.stderr}"


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL 15 server binaries and runuser")
    directory = Path(tempfile.mkdtemp(prefix="nicepay-pg-"))
    try:
        shutil.chown(directory, "postgres")
        initdb = str(PG_BIN / "initdb")
        data = str(directory / "data")
        await _as_postgres(initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        built = Cluster(directory, free_port())
        await built.start()
        try:
            await asyncio.to_thread(migrate, built.url)
            yield built
        finally:
            await _as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", data, "-m", "immediate", "stop", check=False
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
