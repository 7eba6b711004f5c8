"""Every operator command, run as its own process from a fresh checkout (no .env), against
real databases, the simulator process and, where NICEPAY must push, a served app."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.db import create_engine
from app.health import current_revision, head_revision
from app.main import create_app
from tests.cli.runner import run_cli
from tests.conftest import STOREFRONT_KEY, make_settings, payment_body, postgres_database
from tests.procs import (
    Process,
    event_rows,
    free_port,
    ledger_rows,
    payment,
    register,
    running,
    service_settings,
    start_service,
)

pytestmark = pytest.mark.slow

COMMANDS = ["migrate", "serve", "reconcile", "simulate", "replay", "doctor"]


@asynccontextmanager
async def storefront(database_url: str, simulator: Process) -> AsyncIterator[httpx.AsyncClient]:
    """The service in-process, calling the simulator process over HTTP: to register codes."""
    # A code's first scheduled check at once (10 minutes by default): `reconcile`, run
    # from the command line right after, has something due to ask about.
    settings = make_settings(database_url, nicepay_base_url=simulator.url, reconcile_schedule="0s")
    app = create_app(settings, run_background=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://service",
            headers={"Authorization": f"Bearer {STOREFRONT_KEY}"},
        ) as client,
    ):
        yield client


async def created(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/api/v1/cvs/payments", json=payment_body())
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_help_for_every_command() -> None:
    runs = await asyncio.gather(
        run_cli("--help"), *(run_cli(command, "--help") for command in COMMANDS)
    )
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    for command in COMMANDS:
        assert command in runs[0].stdout
    for command, run in zip(COMMANDS, runs[1:], strict=True):
        assert run.stdout.startswith(f"usage: python -m app {command}")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_migrate_a_fresh_database(kind: str, tmp_path: Path) -> None:
    async with postgres_database() as pg_url:
        url = pg_url if kind == "postgresql" else f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
        for _ in range(2):  # and again: already at head, nothing to do
            run = await run_cli("migrate", database_url=url)
            assert run.returncode == 0, run.stderr
            engine = create_engine(url)
            try:
                assert await current_revision(engine) == head_revision()
            finally:
                await engine.dispose()


async def test_simulate_settle_and_expire_then_reconcile(
    process_db: str, simulator: Process
) -> None:
    async with storefront(process_db, simulator) as client:
        lost, dead = await created(client), await created(client)
    env = {"database_url": process_db, "nicepay_base_url": simulator.url}

    settle = await run_cli("simulate", "settle", lost["reference_no"], **env)
    assert settle.returncode == 0, settle.stderr
    assert json.loads(settle.stdout)["lifecycle"] == "paid"
    expire = await run_cli("simulate", "expire", dead["txid"], **env)
    assert expire.returncode == 0, expire.stderr
    assert json.loads(expire.stdout)["status"] == "4"

    run = await run_cli("reconcile", **env)
    assert run.returncode == 0, run.stderr
    # NICEPAY's 4 without a cancelAmt is an expiry, even before the service's own clock says so.
    assert json.loads(run.stdout) == {
        "checked": 2,
        "healed": 1,
        "expired": 1,
        "cancelled": 0,
        "confirmed": 0,
        "quarantined": 0,
        "abandoned": 0,
        "left": 0,
        "failed": 0,
    }
    async with storefront(process_db, simulator) as client:
        healed = (await client.get(f"/api/v1/cvs/payments/{lost['reference_no']}")).json()
        expired = (await client.get(f"/api/v1/cvs/payments/{dead['reference_no']}")).json()
    assert (healed["status"], healed["events"][-1]["source"]) == ("paid", "reconcile")
    assert (expired["status"], expired["events"][-1]["source"]) == ("expired", "reconcile")

    again = await run_cli("reconcile", **env)
    assert json.loads(again.stdout)["checked"] == 0  # nothing pending any more


async def test_reconcile_exits_non_zero_when_nicepay_is_down(
    process_db: str, simulator: Process
) -> None:
    async with storefront(process_db, simulator) as client:
        await created(client)
    nowhere = f"http://127.0.0.1:{free_port()}"
    run = await run_cli("reconcile", database_url=process_db, nicepay_base_url=nowhere)
    assert run.returncode == 1
    assert json.loads(run.stdout)["failed"] == 1
    assert "status inquiry unreachable" in run.stderr


async def test_serve_simulate_pay_twice_replay_reverse_doctor(
    process_db: str, simulator: Process
) -> None:
    service = await start_service(process_db, simulator)
    async with running(service):
        env = service_settings(process_db, simulator, service.port)
        code = await register(service)

        pay = await run_cli("simulate", "duplicate", code["reference_no"], **env)
        assert pay.returncode == 0, pay.stderr
        assert [p["body"] for p in json.loads(pay.stdout)["pushes"]] == ["OK", "OK"]
        assert (await payment(service, code["reference_no"]))["status"] == "paid"
        outcomes = sorted(row["outcome"] for row in await ledger_rows(process_db))
        assert outcomes == ["applied", "duplicate"]

        applied = next(r for r in await ledger_rows(process_db) if r["outcome"] == "applied")
        replay = await run_cli("replay", str(applied["id"]), **env)
        assert replay.returncode == 0, replay.stderr
        verdict = json.loads(replay.stdout)
        assert (verdict["replay_of"], verdict["outcome"]) == (applied["id"], "duplicate")
        assert verdict["checks"]["token"] == "pass"  # verified by digest, as the original
        missing = await run_cli("replay", "999999", **env)
        assert missing.returncode == 1
        assert "no notification 999999" in missing.stderr

        reverse = await run_cli("simulate", "reverse", code["txid"], **env)
        assert reverse.returncode == 0, reverse.stderr
        assert (await payment(service, code["reference_no"]))["status"] == "reversed"
        paid_events = [e for e in await event_rows(process_db) if e["type"] == "paid"]
        assert len(paid_events) == 1

        doctor = await run_cli("doctor", "--service-url", service.url, **env)
        assert doctor.returncode == 0, doctor.output
        assert "fail" not in doctor.stdout.split()
        assert "ok   client IP: the service sees this host as 127.0.0.1" in doctor.stdout
        assert "would be allowed" in doctor.stdout

        unknown = await run_cli("simulate", "pay", "ORD-NOT-A-PAYMENT", **env)
        assert unknown.returncode == 1
    # In production format, every line the service wrote is JSON, uvicorn's own included.
    lines = [line for line in service.log().splitlines() if line.strip()]
    assert any("Uvicorn running" in json.loads(line)["message"] for line in lines)
    assert all("request_id" in json.loads(line) for line in lines)


async def test_reconcile_says_so_when_the_database_is_down() -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nicepay"
    run = await run_cli("reconcile", database_url=nowhere)
    assert run.returncode == 1
    assert "reconcile: the database is unavailable" in run.stderr
    assert "Traceback" not in run.stderr
