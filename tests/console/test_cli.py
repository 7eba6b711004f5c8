"""`python -m app operators add|list|remove` as a process, on a migrated SQLite file and a
PostgreSQL database: the password comes from standard input and is stored only hashed."""

import asyncio
import subprocess
import sys

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Operator
from tests.procs import ARTIFACTS, child_env

PASSWORD = "a passphrase for the test"


def operators(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "operators", *args],
        input=stdin,
        cwd=ARTIFACTS,
        env=child_env(database_url=database_url, app_env="test"),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def stored_hashes(database_url: str) -> list[str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return list(await connection.scalars(select(Operator.password_hash)))
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_add_list_remove(process_db: str) -> None:
    run = asyncio.to_thread
    added = await run(operators, process_db, "add", "budi", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    (stored,) = await stored_hashes(process_db)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored

    again = await run(operators, process_db, "add", "budi", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "exists" in again.stderr
    short = await run(operators, process_db, "add", "ani", stdin="short\n")
    assert short.returncode == 2 and "at least 10" in short.stderr
    bad_name = await run(operators, process_db, "add", "no spaces", stdin=PASSWORD + "\n")
    assert bad_name.returncode == 2

    listed = await run(operators, process_db, "list")
    assert listed.returncode == 0 and listed.stdout.startswith("budi\t")
    assert "$argon2" not in listed.stdout

    removed = await run(operators, process_db, "remove", "budi")
    assert removed.returncode == 0
    assert await stored_hashes(process_db) == []
    missing = await run(operators, process_db, "remove", "budi")
    assert missing.returncode == 1
