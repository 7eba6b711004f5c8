"""The inquiry budget of a code, the expiry recorded in time, the rate cap shared by two
replicas, and the backlog."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.main import Services, open_services
from app.models import InquiryRate
from app.nicepay.schemas import InquiryResponse
from app.nicepay.wib import now_utc
from app.ratelimit import InquiryCap
from app.schedule import EXPIRY, SCHEDULE, Slot
from simulator.app import INQUIRY
from tests.conftest import Stack, StackFactory, make_settings
from tests.reconcile.helpers import history, payment_row

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def test_the_default_schedule_spends_four_inquiries_where_they_matter() -> None:
    schedule = make_settings("sqlite+aiosqlite://").check_schedule
    t = datetime(2026, 11, 23, 12, tzinfo=UTC)
    margin = 2 * MINUTE
    # A 24 h code: three looks for lost pushes, then the expiry check.
    day = t + 24 * HOUR
    assert schedule.slots(t, day) == [
        Slot(t + 10 * MINUTE, SCHEDULE),
        Slot(t + HOUR, SCHEDULE),
        Slot(t + 6 * HOUR, SCHEDULE),
        Slot(day + margin, EXPIRY),
    ]
    # A 1 h code: the registration checks past its expiry are dropped, late re-checks fill
    # the budget for a code NICEPAY still calls unpaid after its expiry check.
    hour = t + HOUR
    assert schedule.slots(t, hour) == [
        Slot(t + 10 * MINUTE, SCHEDULE),
        Slot(hour + margin, EXPIRY),
        Slot(hour + margin + 30 * MINUTE, EXPIRY),
        Slot(hour + margin + 2 * HOUR, EXPIRY),
    ]
    # A check done late skips the slots it passed; after the last one, none is left.
    assert schedule.next_after(t, day, t + 7 * HOUR) == Slot(day + margin, EXPIRY)
    assert schedule.next_after(t, day, day + margin) is None


async def sweep_every(stack: Stack, start: datetime, end: datetime, step: timedelta) -> None:
    """Sweeps every `step` (RECONCILE_INTERVAL_SECONDS) from `start` to `end`, the clock moved."""
    now = start
    while now <= end:
        await stack.services.reconciler.sweep(now=now)
        now += step


async def test_an_unpaid_code_never_costs_more_than_its_budget(stack: Stack) -> None:
    """Worst case: NICEPAY never records the expiry (its clock stands still here), sweeps
    run every five minutes for a day past the expiry."""
    expires_at = now_utc() + HOUR
    payment = await stack.register(expires_at=expires_at.isoformat())
    row = await payment_row(stack, payment["reference_no"])
    before = stack.sim.calls[INQUIRY]

    await sweep_every(stack, row.created_at, row.expires_at + 24 * HOUR, 5 * MINUTE)

    assert stack.sim.calls[INQUIRY] - before == 4
    row = await payment_row(stack, payment["reference_no"])
    assert (row.status, row.sweep_inquiries, row.next_check_at) == ("pending", 4, None)


async def test_expiry_is_recorded_within_a_sweep_of_the_expiry_check(stack: Stack) -> None:
    payment = await stack.register()  # 24 h
    row = await payment_row(stack, payment["reference_no"])
    clock = {"now": row.created_at}
    stack.sim.clock = lambda: clock["now"]  # NICEPAY's clock moves with ours
    before = stack.sim.calls[INQUIRY]
    interval = timedelta(seconds=300)

    now = row.created_at
    while (await payment_row(stack, payment["reference_no"])).status == "pending":
        assert now < row.expires_at + HOUR, "expiry not recorded"
        clock["now"] = now
        await stack.services.reconciler.sweep(now=now)
        now += interval

    expired = await stack.payment(payment["reference_no"])
    assert expired["status"] == "expired"
    recorded = datetime.fromisoformat(expired["events"][-1]["at"])
    margin = timedelta(seconds=stack.services.settings.reconcile_expiry_margin_seconds)
    assert row.expires_at + margin <= recorded < row.expires_at + margin + interval
    assert stack.sim.calls[INQUIRY] - before == 4  # 10m, 1h, 6h, the expiry check
    assert await history(stack, payment["reference_no"]) == [
        ("registered", "api"),
        ("expired", "reconcile"),
    ]


async def test_a_lost_push_is_healed_at_the_next_check_of_the_schedule(stack: Stack) -> None:
    payment = await stack.register()
    row = await payment_row(stack, payment["reference_no"])
    await sweep_every(stack, row.created_at, row.created_at + 30 * MINUTE, 5 * MINUTE)
    await stack.sim.settle_silently(payment["txid"])  # paid at 30 min, its push lost

    await sweep_every(stack, row.created_at + 35 * MINUTE, row.created_at + 55 * MINUTE, 5 * MINUTE)
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"
    await stack.services.reconciler.sweep(now=row.created_at + HOUR)
    assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


async def test_the_backlog_counts_due_checks_and_the_oldest_wait(stack: Stack) -> None:
    payments = [await stack.register() for _ in range(3)]
    first = await payment_row(stack, payments[0]["reference_no"])
    now = first.created_at + 15 * MINUTE
    reconciler = stack.services.reconciler

    backlog = await reconciler.backlog(now)
    assert backlog.due == 3
    assert 4 * 60 < backlog.oldest_overdue_seconds <= 5 * 60
    await reconciler.sweep(now=now)
    assert await reconciler.backlog(now) == type(backlog)(0, 0.0)


class FakeClock:
    """Seconds that pass only when someone waits: no real time, no timing in the test."""

    def __init__(self, start: float) -> None:
        self.now = start

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@asynccontextmanager
async def second_replica(stack: Stack) -> AsyncIterator[Services]:
    """Another process's services on the same database and the same NICEPAY."""
    transport = stack.nicepay_transport
    async with open_services(stack.services.settings, nicepay_transport=transport) as services:
        yield services


async def test_two_replicas_together_never_pass_the_cap(stack_factory: StackFactory) -> None:
    cap, count = 3, 30
    async with stack_factory(reconcile_max_inquiries_per_second=cap) as stack:
        for _ in range(count):
            await stack.register()
        await stack.sim.settle_silently(next(iter(stack.sim.transactions)))
        before = stack.sim.calls[INQUIRY]
        async with second_replica(stack) as other:
            fake = FakeClock(1_900_000_000)
            caps = []
            for services in (stack.services, other):
                reconciler = services.reconciler
                reconciler.cap = InquiryCap(
                    services.engine, cap, clock=fake.clock, sleep=fake.sleep
                )
                caps.append(reconciler.cap)
            now = now_utc() + 11 * MINUTE
            reports = await asyncio.gather(
                stack.services.reconciler.sweep(now=now), other.reconciler.sweep(now=now)
            )

        asked = stack.sim.calls[INQUIRY] - before
        assert asked == count  # each due code asked about once, by one of them
        assert sum(r.checked for r in reports) == count
        assert sum(r.healed for r in reports) == 1
        async with stack.services.sessions() as session:
            seconds = {r.second: r.used for r in await session.scalars(select(InquiryRate))}
        assert sum(seconds.values()) == count
        assert max(seconds.values()) <= cap  # never more than the cap in any second
        assert len(seconds) >= count // cap
        # Shared: each replica got its part of the cap.
        mine, theirs = (sum(c.taken.values()) for c in caps)
        assert mine + theirs == count
        assert min(mine, theirs) >= count // 4


async def test_when_the_cap_binds_the_most_overdue_checks_go_first(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(reconcile_max_inquiries_per_second=1) as stack:
        day = await stack.register()
        short = await stack.register(expires_at=(now_utc() + 30 * MINUTE).isoformat())
        created = (await payment_row(stack, day["reference_no"])).created_at
        reconciler = stack.services.reconciler
        fake = FakeClock(1_900_000_000)
        reconciler.cap = InquiryCap(stack.services.engine, 1, clock=fake.clock, sleep=fake.sleep)
        await reconciler.sweep(now=created + 11 * MINUTE)  # both first checks

        order: list[str] = []
        nicepay = stack.services.nicepay
        ask = nicepay.inquire

        async def recording(txid: str, reference_no: str, amount: int) -> InquiryResponse:
            order.append(reference_no)
            return await ask(txid, reference_no, amount)

        nicepay.inquire = recording  # type: ignore[method-assign,assignment]
        # At 1 h 5 min: the 24 h code's 1 h check is 5 min overdue, the 30 min code's expiry
        # check (at 32 min) over half an hour: the earlier deadline goes first.
        taken = len(reconciler.cap.taken)
        await reconciler.sweep(now=created + 65 * MINUTE)
        assert order == [short["reference_no"], day["reference_no"]]
        assert len(reconciler.cap.taken) == taken + 2  # one a second: the cap bound
