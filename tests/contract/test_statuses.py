"""Each route's documented statuses against what it answers: for every (method, path,
status) in the OpenAPI document a request that gets exactly that status, and no scenario
for a status the document does not list. Every 4xx and 5xx body has the one error shape
(`error` and `detail`). The fuzz tests (tests/fuzz/test_openapi.py) check the other way
round: whatever a random request gets is documented."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.main import create_app
from app.nicepay.codes import NotificationStatus
from app.webhooks import loop
from simulator.app import Faults, create_simulator
from tests.conftest import NICEPAY_IP, TABLES, Stack, StackFactory, make_settings, migrate
from tests.conftest import payment_body as body

PAYMENTS = "/api/v1/cvs/payments"
PAYMENT = PAYMENTS + "/{reference_no}"
CANCEL = PAYMENT + "/cancel"
REFRESH = PAYMENT + "/refresh"
EVENTS = "/api/v1/cvs/webhooks/events"
EVENT = EVENTS + "/{event_id}"
RESEND = EVENT + "/resend"
NOTIFICATIONS = "/api/v1/nicepay/notifications"
NO_KEY = {"Authorization": "Bearer not-the-key"}
HUGE: dict[str, Any] = {
    "content": b"x" * (64 * 1024 + 1),
    "headers": {"Content-Type": "application/json"},
}
WEBHOOKS = {
    "merchant_webhook_url": "http://storefront.invalid/hooks",  # never called: no dispatcher
    "merchant_webhook_secret": "whsec_c3RvcmVmcm9udC13ZWJob29rLXNlY3JldC0wMDAxISE=",
}

Key = tuple[str, str, int]  # (method, path as documented, status)
Scenario = Callable[[Stack], Awaitable[httpx.Response]]


def ref() -> str:
    return f"ORD-{uuid.uuid4().hex[:12]}"


async def registered(stack: Stack) -> dict[str, Any]:
    return await stack.register()


async def replayed(stack: Stack) -> httpx.Response:
    request = body()
    assert (await stack.client.post(PAYMENTS, json=request)).status_code == 201
    return await stack.client.post(PAYMENTS, json=request)


async def reused(stack: Stack) -> httpx.Response:
    request = body()
    assert (await stack.client.post(PAYMENTS, json=request)).status_code == 201
    return await stack.client.post(PAYMENTS, json={**request, "amount": request["amount"] + 1})


async def read(stack: Stack) -> httpx.Response:
    return await stack.client.get(f"{PAYMENTS}/{(await registered(stack))['reference_no']}")


async def cancel(stack: Stack, faults: Faults | None = None) -> httpx.Response:
    reference_no = (await registered(stack))["reference_no"]
    stack.sim.faults = faults or Faults()
    try:
        return await stack.client.post(f"{PAYMENTS}/{reference_no}/cancel")
    finally:
        stack.sim.faults = Faults()


async def event_id(stack: Stack) -> str:
    reference_no = (await registered(stack))["reference_no"]
    events = (await stack.client.get(EVENTS, params={"reference_no": reference_no})).json()
    return str(events[0]["event_id"])


async def with_faults(stack: Stack, faults: Faults, call: Scenario) -> httpx.Response:
    stack.sim.faults = faults
    try:
        return await call(stack)
    finally:
        stack.sim.faults = Faults()


async def push(stack: Stack, ip: str = NICEPAY_IP, **kwargs: Any) -> httpx.Response:
    async with stack.nicepay(ip) as nicepay:
        return await nicepay.post(NOTIFICATIONS, **kwargs)


async def deposit(stack: Stack, ip: str = NICEPAY_IP) -> httpx.Response:
    tx = stack.sim.transactions[(await registered(stack))["txid"]]
    return await push(stack, ip, data=stack.sim.notification_form(tx, NotificationStatus.DEPOSIT))


async def refresh(stack: Stack, faults: Faults | None = None) -> httpx.Response:
    reference_no = (await registered(stack))["reference_no"]
    stack.sim.faults = faults or Faults()
    try:
        return await stack.client.post(f"{PAYMENTS}/{reference_no}/refresh")
    finally:
        stack.sim.faults = Faults()


async def refresh_twice(stack: Stack) -> httpx.Response:
    reference_no = (await registered(stack))["reference_no"]
    assert (await stack.client.post(f"{PAYMENTS}/{reference_no}/refresh")).status_code == 200
    return await stack.client.post(f"{PAYMENTS}/{reference_no}/refresh")


async def cancel_twice(stack: Stack) -> httpx.Response:
    reference_no = (await registered(stack))["reference_no"]
    assert (await stack.client.post(f"{PAYMENTS}/{reference_no}/cancel")).status_code == 200
    return await stack.client.post(f"{PAYMENTS}/{reference_no}/cancel")


async def read_event(stack: Stack) -> httpx.Response:
    return await stack.client.get(f"{EVENTS}/{await event_id(stack)}")


async def resend(stack: Stack) -> httpx.Response:
    return await stack.client.post(f"{EVENTS}/{await event_id(stack)}/resend")


async def resend_in_flight(stack: Stack) -> httpx.Response:
    event = await event_id(stack)
    claimed = await loop.claim_due(stack.services)
    assert event in [claim.event_id for claim in claimed]
    return await stack.client.post(f"{EVENTS}/{event}/resend")


SLOW = Faults(delay_seconds=1.0)
BROKEN = Faults(http_status=500)
JSON = {"Content-Type": "application/json"}

SCENARIOS: dict[Key, Scenario] = {
    ("POST", PAYMENTS, 201): lambda s: s.client.post(PAYMENTS, json=body()),
    ("POST", PAYMENTS, 200): replayed,
    ("POST", PAYMENTS, 400): lambda s: s.client.post(
        PAYMENTS, content=b'{"reference_no":', headers=JSON
    ),
    ("POST", PAYMENTS, 401): lambda s: s.client.post(PAYMENTS, json=body(), headers=NO_KEY),
    ("POST", PAYMENTS, 409): reused,
    ("POST", PAYMENTS, 413): lambda s: s.client.post(PAYMENTS, **HUGE),
    ("POST", PAYMENTS, 422): lambda s: s.client.post(PAYMENTS, json={}),
    ("POST", PAYMENTS, 502): lambda s: with_faults(
        s, BROKEN, lambda s: s.client.post(PAYMENTS, json=body())
    ),
    ("POST", PAYMENTS, 504): lambda s: with_faults(
        s, SLOW, lambda s: s.client.post(PAYMENTS, json=body())
    ),
    ("GET", PAYMENT, 200): read,
    ("GET", PAYMENT, 401): lambda s: s.client.get(f"{PAYMENTS}/{ref()}", headers=NO_KEY),
    ("GET", PAYMENT, 404): lambda s: s.client.get(f"{PAYMENTS}/{ref()}"),
    ("GET", PAYMENT, 422): lambda s: s.client.get(f"{PAYMENTS}/ORD%20X"),
    ("POST", CANCEL, 200): cancel,
    ("POST", CANCEL, 401): lambda s: s.client.post(f"{PAYMENTS}/{ref()}/cancel", headers=NO_KEY),
    ("POST", CANCEL, 404): lambda s: s.client.post(f"{PAYMENTS}/{ref()}/cancel"),
    ("POST", CANCEL, 409): cancel_twice,
    ("POST", CANCEL, 413): lambda s: s.client.post(f"{PAYMENTS}/{ref()}/cancel", **HUGE),
    ("POST", CANCEL, 422): lambda s: s.client.post(f"{PAYMENTS}/ORD%20X/cancel"),
    ("POST", CANCEL, 502): lambda s: cancel(s, BROKEN),
    ("POST", CANCEL, 504): lambda s: cancel(s, SLOW),
    ("POST", REFRESH, 200): refresh,
    ("POST", REFRESH, 401): lambda s: s.client.post(f"{PAYMENTS}/{ref()}/refresh", headers=NO_KEY),
    ("POST", REFRESH, 404): lambda s: s.client.post(f"{PAYMENTS}/{ref()}/refresh"),
    ("POST", REFRESH, 413): lambda s: s.client.post(f"{PAYMENTS}/{ref()}/refresh", **HUGE),
    ("POST", REFRESH, 422): lambda s: s.client.post(f"{PAYMENTS}/ORD%20X/refresh"),
    ("POST", REFRESH, 429): refresh_twice,
    ("POST", REFRESH, 502): lambda s: refresh(s, BROKEN),
    ("POST", REFRESH, 504): lambda s: refresh(s, SLOW),
    ("GET", EVENTS, 200): lambda s: s.client.get(EVENTS),
    ("GET", EVENTS, 401): lambda s: s.client.get(EVENTS, headers=NO_KEY),
    ("GET", EVENTS, 422): lambda s: s.client.get(EVENTS, params={"limit": 0}),
    ("GET", EVENT, 200): read_event,
    ("GET", EVENT, 401): lambda s: s.client.get(f"{EVENTS}/msg_x", headers=NO_KEY),
    ("GET", EVENT, 404): lambda s: s.client.get(f"{EVENTS}/msg_unknown"),
    ("GET", EVENT, 422): lambda s: s.client.get(f"{EVENTS}/not-an-id"),
    ("POST", RESEND, 202): resend,
    ("POST", RESEND, 401): lambda s: s.client.post(f"{EVENTS}/msg_x/resend", headers=NO_KEY),
    ("POST", RESEND, 404): lambda s: s.client.post(f"{EVENTS}/msg_unknown/resend"),
    ("POST", RESEND, 409): resend_in_flight,
    ("POST", RESEND, 413): lambda s: s.client.post(f"{EVENTS}/msg_x/resend", **HUGE),
    ("POST", RESEND, 422): lambda s: s.client.post(f"{EVENTS}/not-an-id/resend"),
    ("GET", "/healthz", 200): lambda s: s.client.get("/healthz"),
    ("GET", "/readyz", 200): lambda s: s.client.get("/readyz"),
    ("GET", "/whoami", 200): lambda s: s.client.get("/whoami"),
    ("GET", "/metrics", 200): lambda s: s.client.get("/metrics"),
    ("POST", NOTIFICATIONS, 200): deposit,
    ("POST", NOTIFICATIONS, 400): lambda s: push(s, data={"tXid": "x"}),
    ("POST", NOTIFICATIONS, 403): lambda s: deposit(s, "198.51.100.1"),
    ("POST", NOTIFICATIONS, 413): lambda s: push(s, data={"goodsNm": "x" * 20_000}),
}

# With the database gone (its tables dropped), every route that uses it answers 503.
DATABASE_GONE: dict[Key, Scenario] = {
    ("POST", PAYMENTS, 503): lambda s: s.client.post(PAYMENTS, json=body()),
    ("GET", PAYMENT, 503): lambda s: s.client.get(f"{PAYMENTS}/{ref()}"),
    ("POST", CANCEL, 503): lambda s: s.client.post(f"{PAYMENTS}/{ref()}/cancel"),
    ("POST", REFRESH, 503): lambda s: s.client.post(f"{PAYMENTS}/{ref()}/refresh"),
    ("GET", EVENTS, 503): lambda s: s.client.get(EVENTS),
    ("GET", EVENT, 503): lambda s: s.client.get(f"{EVENTS}/msg_x"),
    ("POST", RESEND, 503): lambda s: s.client.post(f"{EVENTS}/msg_x/resend"),
    ("GET", "/readyz", 503): lambda s: s.client.get("/readyz"),
    ("POST", NOTIFICATIONS, 503): lambda s: push(s, data={"tXid": "x"}),
}


def documented(app: Any) -> set[Key]:
    return {
        (method.upper(), path, int(status))
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        for status in operation["responses"]
    }


def answered(key: Key, response: httpx.Response) -> list[str]:
    """What is wrong with `response` as the answer of `key` (nothing, ideally)."""
    method, path, status = key
    problems = []
    if response.status_code != status:
        problems.append(
            f"{method} {path}: {response.status_code} {response.text[:200]}, not {status}"
        )
    elif status >= 400 and path != "/readyz":
        error = response.json()
        if not (isinstance(error, dict) and {"error", "detail"} <= error.keys()):
            problems.append(f"{method} {path} {status}: not the error shape: {response.text[:200]}")
    return problems


def test_every_documented_status_has_a_scenario() -> None:
    app = create_app(make_settings("sqlite+aiosqlite://"))
    scenarios = SCENARIOS.keys() | DATABASE_GONE.keys()
    assert sorted(documented(app) - scenarios) == [], "documented, but no request gets it"
    assert sorted(scenarios - documented(app)) == [], "answered, but not documented"


async def test_each_route_answers_its_documented_statuses(stack_factory: StackFactory) -> None:
    async with stack_factory(
        nicepay_read_timeout_seconds=0.2, nicepay_connect_timeout_seconds=0.1, **WEBHOOKS
    ) as stack:
        problems = [p for key, run in SCENARIOS.items() for p in answered(key, await run(stack))]
    assert problems == []


@pytest.fixture
async def database_gone(tmp_path: Any) -> AsyncIterator[Stack]:
    """The service on a SQLite database whose tables were dropped under it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'gone.db'}"
    await asyncio.to_thread(migrate, url)
    settings = make_settings(url, **WEBHOOKS)
    sim_app = create_simulator()
    nicepay_transport = httpx.ASGITransport(app=sim_app)
    app = create_app(settings, nicepay_transport=nicepay_transport)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://service",
            headers={
                "Authorization": f"Bearer {settings.storefront_api_keys[0].get_secret_value()}"
            },
        ) as client,
    ):
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            for table in (*TABLES, "alembic_version"):
                await connection.execute(text(f"DROP TABLE {table}"))
        await engine.dispose()
        yield Stack(app, app.state.services, sim_app.state.sim, client, nicepay_transport)


async def test_without_its_database_each_route_answers_503(database_gone: Stack) -> None:
    responses = {key: await run(database_gone) for key, run in DATABASE_GONE.items()}
    assert [p for key, response in responses.items() for p in answered(key, response)] == []
