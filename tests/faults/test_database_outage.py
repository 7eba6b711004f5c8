"""PostgreSQL dies in the middle of a notification load (`pg_ctl stop -m immediate` on a
throwaway cluster) and comes back: nothing answered OK is lost, everything else got 503,
and the service recovers by itself.
"""

import asyncio
from collections import Counter

import httpx
import pytest

from app.main import create_app
from tests.conftest import NICEPAY_IP, STOREFRONT_KEY, make_settings, payment_body
from tests.faults.conftest import Cluster
from tests.procs import (
    NOTIFICATIONS,
    PAYMENTS,
    Process,
    event_rows,
    free_port,
    ledger_rows,
    nicepay_client,
    push_form,
    register,
    running,
    sim_post,
    start_service,
)

pytestmark = pytest.mark.slow

HOW_MANY = 24
COPIES = 3  # each deposit is pushed three times, as NICEPAY's retries would
CONCURRENCY = 8
STOP_AFTER_OK = 15  # answers committed before the database dies
AFTER_CRASH = 16  # pushes held back until it is dead
LOAD_SECONDS = 120.0
RECOVERY_SECONDS = 90.0


async def test_postgresql_killed_mid_load(cluster: Cluster, simulator: Process) -> None:
    service = await start_service(cluster.url, simulator)
    async with running(service):
        created = await asyncio.gather(*(register(service) for _ in range(HOW_MANY)))
        for resource in created:
            await sim_post(simulator, f"/sim/transactions/{resource['txid']}/settle")
        # Each push carries a nonce, kept in its ledger row's fields: the answer can be matched.
        pushes = {
            f"n{i}-{copy}": push_form(resource, nonce=f"n{i}-{copy}")
            for copy in range(COPIES)
            for i, resource in enumerate(created)
        }
        # The last pushes wait for the crash: some of the load surely meets the outage, while
        # the pushes in flight when the server dies meet it wherever they happen to be.
        after_crash = set(list(pushes)[-AFTER_CRASH:])
        answers: dict[str, int] = {}
        ok, crashed = asyncio.Event(), asyncio.Event()
        gate = asyncio.Semaphore(CONCURRENCY)

        async def send(client: httpx.AsyncClient, nonce: str) -> None:
            if nonce in after_crash:
                await crashed.wait()
            async with gate:
                response = await client.post(service.url + NOTIFICATIONS, data=pushes[nonce])
            answers[nonce] = response.status_code
            if response.status_code == 200:
                assert response.text == "OK"
            if sum(code == 200 for code in answers.values()) >= STOP_AFTER_OK:
                ok.set()

        async def kill_when_enough_committed() -> None:
            await ok.wait()
            await cluster.crash()
            crashed.set()

        async with nicepay_client() as client:
            async with asyncio.timeout(LOAD_SECONDS):  # a hang fails here, not at pytest-timeout
                await asyncio.gather(
                    kill_when_enough_committed(), *(send(client, nonce) for nonce in pushes)
                )

            # Down: the service answers (no hang), says 503, and only readiness fails.
            down = await client.post(service.url + NOTIFICATIONS, data=pushes["n0-0"])
            assert (down.status_code, down.json()["error"]) == (503, "database_unavailable")
            assert (await client.get(service.url + "/healthz")).status_code == 200
            assert (await client.get(service.url + "/readyz")).status_code == 503

            await cluster.start()
            # NICEPAY retries what was not acknowledged until the service takes it.
            retried = await retry_until_ok(client, service, pushes, answers)
            assert (await client.get(service.url + "/readyz")).status_code == 200

    assert set(Counter(answers.values())) <= {200, 503}, answers
    assert {answers[nonce] for nonce in after_crash} == {503}
    ledger = await ledger_rows(cluster.url)
    recorded = {row["fields"].get("nonce") for row in ledger}
    acknowledged = {nonce for nonce, code in answers.items() if code == 200}
    assert acknowledged <= recorded, f"answered OK but lost: {acknowledged - recorded}"
    assert retried <= recorded
    # Every payment paid exactly once, however many copies and retries reached it.
    events = await event_rows(cluster.url)
    paid = Counter(e["payment_id"] for e in events if e["type"] == "paid")
    assert len(paid) == HOW_MANY and set(paid.values()) == {1}
    assert {row["outcome"] for row in ledger} <= {"applied", "duplicate"}
    # While it was down the service said so in its log, and never answered 500.
    log = service.log()
    assert "database unavailable: notification NOT recorded" in log
    assert f"{NOTIFICATIONS} 500" not in log


async def retry_until_ok(
    client: httpx.AsyncClient,
    service: Process,
    pushes: dict[str, dict[str, str]],
    answers: dict[str, int],
) -> set[str]:
    """Resend every push that got 503 until each is answered OK; their nonces."""
    pending = {nonce for nonce, code in answers.items() if code != 200}
    retried = set(pending)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECOVERY_SECONDS
    while pending:
        assert loop.time() < deadline, f"no recovery: {len(pending)} pushes still refused"
        for nonce in sorted(pending):
            response = await client.post(service.url + NOTIFICATIONS, data=pushes[nonce])
            if response.status_code == 200:
                pending.discard(nonce)
            else:
                assert response.status_code == 503, response.text
                await asyncio.sleep(0.2)
                break
    return retried


@pytest.mark.parametrize(
    "database_url",
    [
        f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/gone",  # nothing listens there
        "sqlite+aiosqlite:////nonexistent-directory/gone.db",
    ],
    ids=["postgresql", "sqlite"],
)
async def test_every_route_answers_while_the_database_is_unreachable(database_url: str) -> None:
    """Not a hang, not a 500: 503 where the database is needed, and liveness stays up."""
    app = create_app(make_settings(database_url), run_background=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(NICEPAY_IP, 1))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://service") as client,
    ):
        push = await client.post(NOTIFICATIONS, data={"tXid": "x"})
        assert (push.status_code, push.json()["error"]) == (503, "database_unavailable")
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        auth = {"Authorization": f"Bearer {STOREFRONT_KEY}"}
        storefront = [
            await client.get(f"{PAYMENTS}/ORD-1", headers=auth),
            await client.post(PAYMENTS, json=payment_body(), headers=auth),
            await client.post(f"{PAYMENTS}/ORD-1/cancel", headers=auth),
        ]
        answers = [
            (r.status_code, r.json().get("error") if r.status_code != 500 else r.text)
            for r in storefront
        ]
        assert answers == [(503, "database_unavailable")] * 3
