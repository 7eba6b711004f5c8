"""NICEPAY slow, failing, answering garbage or not there at all, over real sockets: during
registration the storefront gets its documented 504/502 and a retryable payment; during
the status inquiry of a push, the push is still acknowledged (recorded, awaiting
confirmation) and the background reconciler completes it once NICEPAY is back.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.config import SANDBOX_MERCHANT_KEY
from tests.conftest import STOREFRONT_KEY, payment_body
from tests.procs import (
    PAYMENTS,
    Process,
    event_rows,
    free_port,
    fresh_database,
    ledger_rows,
    payment,
    register,
    running,
    sim_post,
    sim_put,
    start_service,
)

pytestmark = pytest.mark.slow

TIMEOUTS = {"nicepay_connect_timeout_seconds": 1, "nicepay_read_timeout_seconds": 1}
SLOW = 4.0  # seconds NICEPAY takes when slow: past the service's 2 s deadline
RECONCILED_WITHIN = 60.0

FAULTS: dict[str, dict[str, Any]] = {
    "slow": {"delay_seconds": SLOW},
    "failing": {"http_status": 503},
    "garbage": {"garbage": True},
}


@pytest.fixture(scope="module")
async def database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with fresh_database("sqlite", tmp_path_factory.mktemp("faults")) as url:
        yield url


@pytest.fixture(scope="module")
async def service(database: str, simulator: Process) -> AsyncIterator[Process]:
    """One service for the module, with short NICEPAY timeouts and a reconciler every second."""
    process = await start_service(database, simulator, reconcile_interval_seconds=1, **TIMEOUTS)
    async with running(process):
        yield process


@pytest.fixture
async def faults(simulator: Process) -> AsyncIterator[None]:
    yield
    await sim_put(simulator, "/sim/faults", {})  # the next test meets a healthy NICEPAY


async def storefront_post(service: Process, body: dict[str, Any]) -> httpx.Response:
    async with service.client(headers={"Authorization": f"Bearer {STOREFRONT_KEY}"}) as client:
        return await client.post(PAYMENTS, json=body)


@pytest.mark.parametrize("fault", FAULTS)
async def test_registration_when_nicepay_misbehaves(
    fault: str, service: Process, simulator: Process, faults: None
) -> None:
    await sim_put(simulator, "/sim/faults", {**FAULTS[fault], "endpoints": ["onePass.do"]})
    body = payment_body()
    response = await storefront_post(service, body)

    expected = (504, "nicepay_timeout") if fault == "slow" else (502, "nicepay_unavailable")
    assert (response.status_code, response.json()["error"]) == expected
    assert response.json()["status"] == "registering"
    assert SANDBOX_MERCHANT_KEY not in response.text
    assert (await payment(service, body["reference_no"]))["status"] == "registering"

    await sim_put(simulator, "/sim/faults", {})
    retry = await storefront_post(service, body)
    resource = await payment(service, body["reference_no"])
    if fault == "slow":
        # NICEPAY did the work before it answered too late, so the retry meets 9009 and the
        # payment is closed as failed (documented in the 504 body), never left half-known.
        assert (retry.status_code, retry.json()["nicepay_code"]) == (502, "9009")
        assert resource["status"] == "failed"
    else:
        assert retry.status_code == 201, retry.text
        assert resource["status"] == "pending"
        async with simulator.client() as client:
            known = (await client.get(f"/sim/transactions/{resource['txid']}")).json()
        assert known["referenceNo"] == body["reference_no"]


async def test_registration_when_nicepay_is_not_there(database: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    service = await start_service(database, nowhere, **TIMEOUTS)
    async with running(service):
        body = payment_body()
        response = await storefront_post(service, body)
        assert (response.status_code, response.json()["error"]) == (502, "nicepay_unavailable")
        assert (await payment(service, body["reference_no"]))["status"] == "registering"
        async with service.client() as client:
            assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("fault", FAULTS)
async def test_status_inquiry_fails_during_a_push(
    fault: str, service: Process, simulator: Process, database: str, faults: None
) -> None:
    created = await register(service)
    txid = created["txid"]
    await sim_put(simulator, "/sim/faults", {**FAULTS[fault], "endpoints": ["onePassStatus.do"]})
    pushes = await sim_post(simulator, f"/sim/transactions/{txid}/pay")
    # Recorded, so acknowledged: NICEPAY need not retry; the reconciler owns it now.
    assert [(p["status_code"], p["body"]) for p in pushes["pushes"]] == [(200, "OK")]
    [row] = [r for r in await ledger_rows(database) if r["txid"] == txid]
    assert (row["outcome"], row["checks"]["inquiry"]) == ("awaiting_confirmation", "unreachable")
    assert (await payment(service, created["reference_no"]))["status"] == "pending"

    await sim_put(simulator, "/sim/faults", {})
    resource = await wait_for_status(service, created["reference_no"], "paid")
    assert [(e["type"], e["source"]) for e in resource["events"]] == [
        ("registered", "api"),
        ("paid", "reconcile"),
    ]
    [row] = [r for r in await ledger_rows(database) if r["txid"] == txid]
    assert row["outcome"] == "awaiting_confirmation"  # the verdict is never rewritten
    assert row["resolved_at"] is not None
    paid = [e for e in await event_rows(database) if e["type"] == "paid"]
    assert [e["notification_id"] for e in paid if e["payment_id"] == row["payment_id"]] == [
        row["id"]
    ]


async def wait_for_status(service: Process, reference_no: str, status: str) -> dict[str, Any]:
    """Poll the payment until it has `status` (the reconciler runs every second)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECONCILED_WITHIN
    while True:
        resource = await payment(service, reference_no)
        if resource["status"] == status:
            return resource
        assert loop.time() < deadline, f"still {resource['status']} after {RECONCILED_WITHIN}s"
        await asyncio.sleep(0.25)
