"""The reconciler as the service's background task (RECONCILE_INTERVAL_SECONDS, 0 = off)."""

import asyncio

import pytest

from app.main import background_loops, open_services, reconcile_loop
from tests.conftest import StackFactory, make_settings
from tests.procs import free_port

DEADLINE_SECONDS = 30.0


def test_the_service_runs_the_reconciler_unless_the_interval_is_zero() -> None:
    assert reconcile_loop in background_loops(
        make_settings("sqlite+aiosqlite://", reconcile_interval_seconds=300)
    )
    assert reconcile_loop not in background_loops(make_settings("sqlite+aiosqlite://"))  # 0


async def test_the_loop_heals_a_lost_deposit_without_anyone_asking(
    stack_factory: StackFactory,
) -> None:
    # The first check of a code's budget one second after registration (10 minutes by
    # default): the loop, not the schedule, is what this test is about.
    async with stack_factory(reconcile_interval_seconds=0.05, reconcile_schedule="1s") as stack:
        payment = await stack.register()
        await stack.sim.settle_silently(payment["txid"])
        loop = asyncio.create_task(stack.services.reconciler.run_forever())
        try:
            deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
            while (await stack.payment(payment["reference_no"]))["status"] != "paid":
                assert asyncio.get_running_loop().time() < deadline, "not healed in time"
                await asyncio.sleep(0.05)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        assert loop.cancelled()
        events = (await stack.payment(payment["reference_no"]))["events"]
        assert events[-1]["source"] == "reconcile"


async def test_the_loop_outlives_a_database_outage(caplog: pytest.LogCaptureFixture) -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nicepay"
    settings = make_settings(nowhere, reconcile_interval_seconds=0.01)
    async with open_services(settings) as services:
        loop = asyncio.create_task(services.reconciler.run_forever())
        try:
            deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
            while len([r for r in caplog.records if "sweep crashed" in r.message]) < 2:
                assert not loop.done(), "the loop died"
                assert asyncio.get_running_loop().time() < deadline, "no sweep attempted"
                await asyncio.sleep(0.01)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
