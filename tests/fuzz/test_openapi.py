"""schemathesis against the service's own OpenAPI schema: the storefront routes (with a
valid bearer key, and without one) and the notification route (from NICEPAY's address),
on SQLite and PostgreSQL. No 5xx, except the documented 503 of the notification route;
every answer matches the schema, and every error answer is `{"error": ..., "detail": ...}`.
tests/contract/test_statuses.py checks the other way round: each documented status is answered.
"""

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from simulator.app import create_simulator
from tests.conftest import NICEPAY_IP, STOREFRONT_KEY, make_settings, migrate, postgres_database

# The test command runs a fixed, repeatable sample; FUZZ_EXPLORE=1 draws new cases, 10x as many.
EXPLORE = bool(os.environ.get("FUZZ_EXPLORE"))
EXAMPLES = 300 if EXPLORE else 30
NOTIFICATIONS = "/api/v1/nicepay/notifications"
API = r"^/api/v1/"
AUTH = {"Authorization": f"Bearer {STOREFRONT_KEY}"}
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=not EXPLORE,
    deadline=None,
    database=None,  # nothing left behind in .hypothesis/
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Not `negative_data_rejection`: the bearer key is added to every call, so a case that
# leaves it out on purpose still gets in; and FastAPI rightly ignores unknown query
# parameters. Invalid bodies are covered by tests/security instead.
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


def from_nicepay(app: ASGIApp) -> ASGIApp:
    """Every request arrives from NICEPAY's address, so pushes get past the IP check."""

    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": (NICEPAY_IP, 40000)}
        await app(scope, receive, send)

    return wrapped


def _openapi() -> dict[str, Any]:
    """The service's schema, without create_app's logging set-up leaking into the session."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        document: dict[str, Any] = create_app(make_settings("sqlite+aiosqlite://")).openapi()
    finally:
        root.handlers[:], root.level = handlers, level
    return document


schema = schemathesis.openapi.from_dict(_openapi()).include(path_regex=API)


async def service(database_url: str) -> ASGIApp:
    """The service on a migrated database, its NICEPAY the simulator (in-process)."""
    await asyncio.to_thread(migrate, database_url)
    app = create_app(
        make_settings(database_url),
        nicepay_transport=httpx.ASGITransport(app=create_simulator()),
        run_background=False,
    )
    # schemathesis starts the lifespan in its own event-loop thread at the first call.
    return from_nicepay(app)


@pytest.fixture(scope="module")
async def sqlite_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ASGIApp]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    yield await service(f"sqlite+aiosqlite:///{path}")
    schemathesis_asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
async def postgresql_app() -> AsyncIterator[ASGIApp]:
    async with postgres_database() as url:
        yield await service(url)
        schemathesis_asgi.shutdown_lifespans()  # before the database is dropped


def json_broken(response: Any) -> bool:
    """The 400 for a body that is not JSON at all (truncated, not UTF-8, too deep)."""
    return bool(response.status_code == 400 and response.json().get("error") == "invalid_json")


def check(case: Any, app: ASGIApp, headers: dict[str, str]) -> Any:
    response = case.call(app=app, headers=headers)
    case.validate_response(response, checks=CHECKS)
    status: int = response.status_code
    if status >= 500:
        assert (case.path, status) == (NOTIFICATIONS, 503), f"{case.method} {case.path}: {status}"
    if status >= 400:  # one error shape for every error answer
        assert {"error", "detail"} <= response.json().keys(), (case.path, response.text[:300])
    return response


@schema.parametrize()
@FUZZ
def test_api_on_sqlite(case: Any, sqlite_app: ASGIApp) -> None:
    check(case, sqlite_app, AUTH)


@schema.parametrize()
@FUZZ
def test_api_on_postgresql(case: Any, postgresql_app: ASGIApp) -> None:
    check(case, postgresql_app, AUTH)


@schema.parametrize()
@settings(FUZZ, max_examples=EXAMPLES // 3)
def test_storefront_without_a_key_is_401(case: Any, sqlite_app: ASGIApp) -> None:
    response = check(case, sqlite_app, {"Authorization": "Bearer not-the-key"})
    status = response.status_code
    if case.path != NOTIFICATIONS:
        # A method the route does not have is refused before anyone looks at the key, and
        # FastAPI parses a JSON body before the key is checked: broken JSON is a 4xx first.
        wrong_method = case.method.upper() != case.operation.method.upper()
        assert status == 401 or (status == 405 and wrong_method) or json_broken(response), (
            case.method,
            case.path,
            status,
        )
