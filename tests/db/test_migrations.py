"""The real migrations go up, down and up again on SQLite and on PostgreSQL."""

import asyncio
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import migrate, postgres_database

TABLES = {
    "payments",
    "payment_events",
    "notifications",
    "webhook_events",
    "webhook_attempts",
    "inquiry_rate",
    "operators",
}


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return names - {"alembic_version"}


async def _round_trip(url: str) -> None:
    await asyncio.to_thread(migrate, url)
    assert await _tables(url) == TABLES
    await asyncio.to_thread(migrate, url, "0001_payments", down=True)
    assert await _tables(url) == {"payments", "payment_events"}
    await asyncio.to_thread(migrate, url, "base", down=True)
    assert await _tables(url) == set()
    await asyncio.to_thread(migrate, url)
    assert await _tables(url) == TABLES


async def test_sqlite_round_trip(tmp_path: Path) -> None:
    await _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


async def test_postgresql_round_trip() -> None:
    async with postgres_database() as url:
        await _round_trip(url)


async def test_models_match_migrations(tmp_path: Path) -> None:
    """alembic's autogenerate finds nothing to add: models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.db import Base

    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    await asyncio.to_thread(migrate, url)
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    await engine.dispose()
    assert diff == []
