"""Engine and session factory, and the declarative Base.

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` (every transaction takes the write
lock up front, so two writers serialize instead of failing on lock upgrade); PostgreSQL
gets asyncpg and row locks where the services ask for them.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData, TypeDecorator, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC moments only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_engine(url: str, *, pool_size: int = 10, timeout: float = 5.0) -> AsyncEngine:
    """The ORM's engine (reads, operator queries, the webhook outbox). Every wait has a
    deadline: `timeout` seconds for a connection from the pool, for the database's lock,
    and for each statement."""
    if url.startswith("sqlite"):
        # One connection: SQLite has one writer anyway, and queueing in the pool is
        # fairer and faster than many connections spinning on the busy handler.
        engine = create_async_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=timeout,
            connect_args={"timeout": timeout},
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            sqlite_setup(dbapi_connection, busy_timeout=timeout)

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # A fixed pool (no overflow churn: a new asyncpg connection re-prepares every statement);
    # pre-ping replaces a connection the server ended (a restart) before it is used: the hot
    # paths run on the payments store's own pool, so the round trip is paid only here.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_recycle=1800,
        pool_pre_ping=True,
        pool_timeout=timeout,
        connect_args={"command_timeout": timeout, "timeout": timeout},
    )


def sqlite_setup(dbapi_connection: Any, *, busy_timeout: float) -> None:
    """Every SQLite connection the service opens (the engine's, the store's writer)."""
    # Take transaction control away from the driver so BEGIN IMMEDIATE is the only BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
