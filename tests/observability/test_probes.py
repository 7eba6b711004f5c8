"""/healthz answers without a database; /readyz only when the database answers and its
schema is at the migrations' head."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.health import head_revision
from app.main import create_app
from tests.conftest import PG_ADMIN_URL, Stack, StackFactory, make_settings, postgres_database
from tests.procs import free_port

PG_SERVER = PG_ADMIN_URL.rsplit("/", 1)[0]


@asynccontextmanager
async def service(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The service (lifespan running) on `database_url`, whatever state that database is in."""
    app = create_app(make_settings(database_url), run_background=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service"
        ) as client,
    ):
        yield client


async def probe(client: httpx.AsyncClient, path: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(path)
    return response.status_code, response.json()


async def test_ready_when_the_database_answers_at_head(stack: Stack) -> None:
    assert await probe(stack.client, "/healthz") == (200, {"status": "ok"})
    status, body = await probe(stack.client, "/readyz")
    assert (status, body) == (
        200,
        {"status": "ok", "database": "ok", "migration": head_revision()},
    )


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nicepay",  # nobody listening
        f"{PG_SERVER}/nicepay_no_such_database",
    ],
    ids=["closed-port", "no-such-database"],
)
async def test_not_ready_when_the_database_is_down(url: str) -> None:
    async with service(url) as client:
        assert await probe(client, "/healthz") == (200, {"status": "ok"})
        status, body = await probe(client, "/readyz")
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["database"].startswith("unreachable")


async def test_not_ready_before_migrations(tmp_path: Path) -> None:
    async with postgres_database() as url, service(url) as client:
        status, body = await probe(client, "/readyz")
    assert (status, body["database"], body["migration"]) == (503, "ok", None)
    assert body["head"] == head_revision()

    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
    async with service(sqlite_url) as client:
        status, body = await probe(client, "/readyz")
    assert (status, body["migration"]) == (503, None)


async def test_whoami_resolves_the_client_ip_through_trusted_proxies(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(trusted_proxies=["10.0.0.0/8"]) as stack:
        direct = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stack.app, client=("103.20.51.10", 4000)),
            base_url="http://service",
        )
        proxied = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stack.app, client=("10.1.2.3", 4000)),
            base_url="http://service",
        )
        async with direct, proxied:
            seen = (await direct.get("/whoami", headers={"X-Forwarded-For": "1.2.3.4"})).json()
            assert seen["client_ip"] == "103.20.51.10"  # the header is not believed
            assert seen["nicepay_allowed"] is True
            seen = (
                await proxied.get("/whoami", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.9"})
            ).json()
    assert seen == {
        "client_ip": "198.51.100.9",
        "peer_ip": "10.1.2.3",
        "peer_is_trusted_proxy": True,
        "x_forwarded_for": ["6.6.6.6, 198.51.100.9"],
        "nicepay_allowed": False,
    }
