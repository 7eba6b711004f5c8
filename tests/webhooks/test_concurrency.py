"""Several dispatchers on one database (two Runtimes: two engines, two connection pools)
share the work and never hold, nor send, one event at the same time."""

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update

from app.main import Services, open_services
from app.models import WebhookEvent
from app.nicepay.wib import now_utc
from app.webhooks import loop
from tests.conftest import Stack, make_settings
from tests.webhooks.conftest import all_in, eventually, outbox, webhook_settings
from tests.webhooks.receiver import Received, Receiver


async def _registered_and_paid(stack: Stack, payments: int) -> list[str]:
    references = []
    for _ in range(payments):
        created = await stack.register()
        await stack.sim.pay(created["txid"])
        references.append(created["reference_no"])
    return references


async def test_racing_claims_never_share_an_event(
    hooked: Stack, receiver: Receiver, clean_db: str
) -> None:
    await _registered_and_paid(hooked, 10)
    events = await outbox(hooked.services)
    registered = {e.id for e in events if e.type == "cvs_payment.registered"}
    settings = make_settings(clean_db, **webhook_settings(receiver))
    async with open_services(settings) as one, open_services(settings) as two:
        for runtime in (one, two):  # connected first, so neither gets a head start
            async with runtime.engine.connect() as connection:
                await connection.execute(select(1))
        # Both see the same ten candidates and compare-and-set each in the same order: for
        # every event both UPDATEs run, and only one may match.
        first, second = await asyncio.gather(loop.claim_due(one), loop.claim_due(two))
        mine, theirs = {c.id for c in first}, {c.id for c in second}
        assert not mine & theirs
        assert mine | theirs == registered  # the paid events wait behind their payment's first
        assert await loop.claim_due(one) == []  # everything due is leased

        # A lease that runs out (its holder died) lets the event be claimed again, unchanged.
        victim = next(iter(mine | theirs))
        async with one.sessions() as session:
            await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == victim)
                .values(lease_until=now_utc() - timedelta(seconds=1))
            )
            await session.commit()
        [again] = await loop.claim_due(two)
        before = next(c for c in first + second if c.id == victim)
        assert (again.id, again.event_id, again.body) == (victim, before.event_id, before.body)
    assert receiver.received() == []


async def test_two_dispatchers_deliver_everything_once_without_overlap(
    hooked: Stack, receiver: Receiver, clean_db: str
) -> None:
    tries: Counter[str] = Counter()

    def answer(request: Received) -> int:
        # Paid events fail once: retries are claimed again, by either dispatcher.
        tries[request.webhook_id] += 1
        return 500 if request.type == "cvs_payment.paid" and tries[request.webhook_id] == 1 else 200

    receiver.answer = answer
    receiver.delay = 0.02  # keep each request in flight long enough to be seen twice if ever
    references = await _registered_and_paid(hooked, 12)
    settings = make_settings(clean_db, **webhook_settings(receiver))
    stop = asyncio.Event()
    passes: Counter[str] = Counter()

    async def dispatch(name: str, runtime: Services) -> None:
        while not stop.is_set():
            passes[name] += await loop.deliver_due(runtime)
            await asyncio.sleep(0)

    async with open_services(settings) as one, open_services(settings) as two:
        workers = [
            asyncio.create_task(dispatch("one", one)),
            asyncio.create_task(dispatch("two", two)),
        ]
        try:
            await eventually(all_in(hooked.services, "delivered"), "every event delivered")
        finally:
            stop.set()
            await asyncio.gather(*workers)

    assert receiver.overlaps == []
    events = await outbox(hooked.services)
    delivered = Counter(r.webhook_id for r in receiver.delivered())
    assert delivered == Counter({e.event_id: 1 for e in events})  # each exactly once
    for reference in references:
        arrivals = [
            (r.type, r.answered) for r in receiver.received() if r.reference_no == reference
        ]
        assert arrivals == [
            ("cvs_payment.registered", 200),
            ("cvs_payment.paid", 500),
            ("cvs_payment.paid", 200),
        ]
    assert sum(passes.values()) == len(receiver.received())  # every attempt went on the wire
