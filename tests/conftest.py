"""Shared fixtures: real SQLite and real PostgreSQL (every database test runs on both),
the NICEPAY simulator in-process, and the service app with its lifespan running.

PostgreSQL is the local server (127.0.0.1:5432, trust auth, or TEST_POSTGRES_URL); each
test session makes its own throwaway database and migrates it with the real migrations.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.health import alembic_config
from app.main import Services, create_app
from app.models import EventSource, PaymentStatus
from app.nicepay.wib import now_utc
from simulator.app import SimulatorState, create_simulator

PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
STOREFRONT_KEY = "test-storefront-key"
NICEPAY_IP = "103.20.51.10"  # inside NICEPAY's allowlist
TABLES = (
    "webhook_attempts",
    "webhook_events",
    "payment_events",
    "notifications",
    "payments",
    "inquiry_rate",
)


def migrate(url: str, revision: str = "head", *, down: bool = False) -> None:
    config = alembic_config()
    config.attributes["database_url"] = url
    config.attributes["configure_logging"] = False
    (command.downgrade if down else command.upgrade)(config, revision)


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for the duration of the block."""
    name = f"nicepay_test_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A migrated database, one per backend per test session."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
        await asyncio.to_thread(migrate, url)
        yield url
        return
    async with postgres_database() as url:
        await asyncio.to_thread(migrate, url)
        yield url


@pytest.fixture
async def clean_db(database_url: str) -> AsyncIterator[str]:
    """The database, emptied before the test."""
    engine = create_async_engine(database_url)
    async with engine.begin() as connection:
        if database_url.startswith("postgresql"):
            await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:
                await connection.execute(text(f"DELETE FROM {table}"))
    await engine.dispose()
    yield database_url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_env": "test",
        "database_url": database_url,
        "nicepay_base_url": "http://nicepay",
        "public_base_url": "http://service",
        "storefront_api_keys": [STOREFRONT_KEY],
        "reconcile_interval_seconds": 0,
        "log_format": "text",
        **overrides,
    }
    return Settings(_env_file=None, **values)


@dataclass
class Stack:
    """The service with the simulator as NICEPAY, all in-process."""

    app: Any
    services: Services
    sim: SimulatorState
    client: httpx.AsyncClient  # the storefront, with a valid bearer key
    nicepay_transport: httpx.AsyncBaseTransport  # the in-process simulator, as NICEPAY

    def nicepay(self, ip: str = NICEPAY_IP) -> httpx.AsyncClient:
        """A client that reaches the dbProcessUrl from `ip` (the TCP peer)."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(ip, 40000)),
            base_url="http://service",
            headers={"User-Agent": "Jakarta Commons-HttpClient/3.1"},
        )

    async def register(self, **overrides: Any) -> dict[str, Any]:
        response = await self.client.post("/api/v1/cvs/payments", json=payment_body(**overrides))
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def payment(self, reference_no: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/cvs/payments/{reference_no}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def move(
    services: Services, reference_no: str, to: PaymentStatus, source: EventSource
) -> bool:
    """Move a payment as another path would (through the store, the only writer)."""
    payment = await services.store.payment_by_reference(reference_no)
    assert payment is not None
    return await services.store.transition(payment, to, source, now_utc()) is not None


def payment_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference_no": f"ORD-{uuid.uuid4().hex[:12]}",
        "amount": 10000,
        "store": "alfamart",
        "goods_name": "Kopi Susu 1L",
        "customer": {
            "name": "Budi Santoso",
            "phone": "081234567890",
            "email": "budi@example.co.id",
        },
        "customer_ip": "203.0.113.7",
    }
    body.update(overrides)
    return body


StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


@pytest.fixture
def stack_factory(clean_db: str) -> StackFactory:
    @asynccontextmanager
    async def build(**overrides: Any) -> AsyncIterator[Stack]:
        settings = make_settings(clean_db, **overrides)
        sim_app = create_simulator(merchant_key=settings.nicepay_merchant_key.get_secret_value())
        sim: SimulatorState = sim_app.state.sim
        nicepay_transport = httpx.ASGITransport(app=sim_app)
        app = create_app(settings, nicepay_transport=nicepay_transport, run_background=False)
        sim.push_transport = httpx.ASGITransport(app=app, client=(NICEPAY_IP, 40000))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=("198.51.100.20", 5000)),
                base_url="http://service",
                headers={"Authorization": f"Bearer {STOREFRONT_KEY}"},
            ) as client,
        ):
            yield Stack(app, app.state.services, sim, client, nicepay_transport)

    return build


@pytest.fixture
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory() as built:
        yield built


@pytest.fixture(scope="session")
def repo_root() -> Iterator[Path]:
    yield Path(__file__).resolve().parent.parent
