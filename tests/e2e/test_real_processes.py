"""End to end with real processes: the service under uvicorn and the NICEPAY simulator, each
its own process on loopback, talking HTTP to each other, on SQLite and on PostgreSQL.
"""

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import SANDBOX_MERCHANT_KEY
from tests.procs import (
    NOTIFICATIONS,
    RAW_TOKENS,
    Process,
    event_rows,
    fresh_database,
    ledger_rows,
    nicepay_client,
    payment,
    push_all,
    push_form,
    register,
    running,
    sim_post,
    start_service,
)

pytestmark = pytest.mark.slow

ACCESS_LINE = "POST /api/v1/nicepay/notifications 200"


def replies(pushes: dict[str, Any]) -> list[tuple[int, str]]:
    """The simulator's report of its pushes: (HTTP status, body) per copy."""
    return [(push["status_code"], push["body"]) for push in pushes["pushes"]]


def answered(responses: list[httpx.Response]) -> Counter[tuple[int, str]]:
    return Counter((response.status_code, response.text) for response in responses)


def assert_no_secret_in(text: str) -> None:
    assert SANDBOX_MERCHANT_KEY not in text
    leaked = [token for token in RAW_TOKENS if token in text]
    assert not leaked, f"raw merchantToken in the output: {leaked[:1]}"


async def test_till_flow_register_pay_duplicate_reverse_status(
    process_db: str, simulator: Process
) -> None:
    service = await start_service(process_db, simulator)
    async with running(service):
        created = await register(service)
        txid, reference_no = created["txid"], created["reference_no"]
        assert created["status"] == "pending"

        # The customer pays at the till; NICEPAY pushes once, then (its retries) three copies.
        assert replies(await sim_post(simulator, f"/sim/transactions/{txid}/pay")) == [(200, "OK")]
        again = await sim_post(simulator, f"/sim/transactions/{txid}/pay", copies=3)
        assert replies(again) == [(200, "OK")] * 3
        reversal = await sim_post(simulator, f"/sim/transactions/{txid}/reverse")
        assert replies(reversal) == [(200, "OK")]
        # A late copy of the reversal with its fields in the query string, as NICEPAY may send.
        async with nicepay_client() as client:
            late = await client.post(service.url + NOTIFICATIONS, params=push_form(created, "1"))
        assert (late.status_code, late.text) == (200, "OK")

        resource = await payment(service, reference_no)
        async with service.client() as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text

    assert resource["status"] == "reversed"
    assert resource["paid_at"] is not None
    assert [(e["type"], e["source"]) for e in resource["events"]] == [
        ("registered", "api"),
        ("paid", "notification"),
        ("reversed", "notification"),
    ]
    ledger = await ledger_rows(process_db)
    assert [(row["status"], row["outcome"]) for row in ledger] == [
        ("0", "applied"),
        *[("0", "duplicate")] * 3,
        ("1", "applied"),
        ("1", "duplicate"),
    ]
    assert {(row["http_status"], row["client_ip"], row["txid"]) for row in ledger} == {
        (200, "127.0.0.1", txid)
    }
    assert all(row["user_agent"] == "Jakarta Commons-HttpClient/3.1" for row in ledger)
    # The access log has one line per push, without the query string that carried a token.
    log = service.log()
    assert log.count(ACCESS_LINE) == 6
    assert_no_secret_in(log)


async def test_200_concurrent_copies_over_http_apply_once(
    process_db: str, simulator: Process
) -> None:
    """Issue 3: 200 copies of one deposit, all at once, to a real uvicorn server."""
    service = await start_service(process_db, simulator)
    async with running(service):
        created = await register(service)
        # Paid at the till; the push is ours, 200 times over.
        await sim_post(simulator, f"/sim/transactions/{created['txid']}/settle")
        responses = await push_all([service.url] * 200, [push_form(created)] * 200, limit=200)
        resource = await payment(service, created["reference_no"])

    assert answered(responses) == {(200, "OK"): 200}
    ledger = await ledger_rows(process_db)
    assert len(ledger) == 200
    odd = [r["reason"] for r in ledger if r["outcome"] not in ("applied", "duplicate")]
    assert Counter(row["outcome"] for row in ledger) == {"applied": 1, "duplicate": 199}, odd
    events = await event_rows(process_db)
    assert [e["type"] for e in events] == ["registered", "paid"]
    assert resource["status"] == "paid"
    assert [e["type"] for e in resource["events"]] == ["registered", "paid"]


async def test_two_replicas_on_one_postgresql_split_the_copies(
    simulator: Process, tmp_path: Path
) -> None:
    async with fresh_database("postgresql", tmp_path) as url:
        first = await start_service(url, simulator)
        async with running(first):
            second = await start_service(url, simulator)
            async with running(second):
                created = await register(first)
                txid, reference_no = created["txid"], created["reference_no"]
                assert (await payment(second, reference_no))["status"] == "pending"
                replicas = [first.url, second.url] * 50

                await sim_post(simulator, f"/sim/transactions/{txid}/settle")
                deposits = await push_all(replicas, [push_form(created, "0")] * 100)
                await sim_post(simulator, f"/sim/transactions/{txid}/reverse", copies=0)
                reversals = await push_all(replicas, [push_form(created, "1")] * 100)
                seen_by_first = await payment(first, reference_no)
        ledger = await ledger_rows(url)
        events = await event_rows(url)

    assert answered(deposits) == {(200, "OK"): 100}
    assert answered(reversals) == {(200, "OK"): 100}
    assert Counter((row["status"], row["outcome"]) for row in ledger) == {
        ("0", "applied"): 1,
        ("0", "duplicate"): 99,
        ("1", "applied"): 1,
        ("1", "duplicate"): 99,
    }
    assert [e["type"] for e in events] == ["registered", "paid", "reversed"]
    assert seen_by_first["status"] == "reversed"
    # Each replica really served its half.
    assert first.log().count(ACCESS_LINE) == 100
    assert second.log().count(ACCESS_LINE) == 100
    assert_no_secret_in(first.log() + second.log())
