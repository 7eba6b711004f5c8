"""Hypothesis: random histories of deposits, lost deposits, reversals, duplicate pushes,
expiries and reconciler sweeps, some of them racing each other, never reach an illegal
state and never apply one change twice. In-process, on SQLite and PostgreSQL.
"""

import asyncio
import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.models import Notification, Payment, PaymentEvent, PaymentStatus
from app.nicepay.codes import NotificationStatus
from app.nicepay.wib import now_utc
from app.payments.machine import TRANSITIONS
from tests.conftest import Stack
from tests.procs import RAW_TOKENS

S = PaymentStatus
URL = "/api/v1/nicepay/notifications"
STATUS_OF_EVENT = {
    "registered": S.PENDING,
    "paid": S.PAID,
    "reversed": S.REVERSED,
    "expired": S.EXPIRED,
    "cancelled": S.CANCELLED,
}
# The test command runs a fixed, repeatable sample; FUZZ_EXPLORE=1 draws new ones, 10x as many.
EXPLORE = bool(os.environ.get("FUZZ_EXPLORE"))
# Past the default 24 h code lifetime: a sweep "then" finds codes expired.
LATER = timedelta(days=2)
SOON = timedelta(minutes=10, seconds=5)  # a new code's first scheduled check has come

Step = tuple[str, int, int]  # (action, which payment, copies)
ACTIONS = ["deposit", "settle", "reverse", "duplicate", "expire", "sweep", "late_sweep", "race"]
# Expiry needs two steps in a row (NICEPAY drops the code, a sweep after the expiry): more of them.
WEIGHTED = [*ACTIONS, "expire", "late_sweep"]

steps = st.tuples(st.sampled_from(WEIGHTED), st.integers(0, 2), st.integers(1, 4))


@dataclass
class World:
    """What NICEPAY has said about each payment so far: the service may not claim more."""

    stack: Stack
    payments: list[dict[str, Any]]
    paid_at_till: set[int] = field(default_factory=set)
    reversal_pushed: set[int] = field(default_factory=set)
    dropped: set[int] = field(default_factory=set)  # expired at NICEPAY
    last_push: dict[int, dict[str, str]] = field(default_factory=dict)

    def txid(self, i: int) -> str:
        return str(self.payments[i]["txid"])

    def form(self, i: int, status: NotificationStatus) -> dict[str, str]:
        form = self.stack.sim.notification_form(self.stack.sim.transactions[self.txid(i)], status)
        RAW_TOKENS.add(form["merchantToken"])
        self.last_push[i] = form
        return form

    async def push(self, form: dict[str, str], copies: int) -> None:
        async with self.stack.nicepay() as nicepay:
            answers = await asyncio.gather(*(nicepay.post(URL, data=form) for _ in range(copies)))
        # Every push here is genuine: each is acknowledged, whatever it ends up doing.
        assert [(a.status_code, a.text) for a in answers] == [(200, "OK")] * copies

    async def run(self, action: str, i: int, copies: int) -> None:
        sim = self.stack.sim
        if action == "deposit":
            self.paid_at_till.add(i)
            await sim.pay(self.txid(i), copies=0)
            await self.push(self.form(i, NotificationStatus.DEPOSIT), copies)
        elif action == "settle":  # paid, but the push is lost
            self.paid_at_till.add(i)
            await sim.settle_silently(self.txid(i))
        elif action == "reverse":
            self.reversal_pushed.add(i)
            await sim.reverse(self.txid(i), copies=0)
            await self.push(self.form(i, NotificationStatus.REVERSAL), copies)
        elif action == "duplicate" and i in self.last_push:
            await self.push(self.last_push[i], copies)
        elif action == "expire":
            self.dropped.add(i)
            await sim.expire(self.txid(i))
        elif action == "sweep":
            await self.stack.services.reconciler.sweep(now=now_utc() + SOON)
        elif action == "late_sweep":
            await self.stack.services.reconciler.sweep(now=now_utc() + LATER)
        elif action == "race":  # a deposit's copies and a sweep at the same moment
            self.paid_at_till.add(i)
            await sim.pay(self.txid(i), copies=0)
            form = self.form(i, NotificationStatus.DEPOSIT)
            await asyncio.gather(
                self.push(form, copies), self.stack.services.reconciler.sweep(now=now_utc() + SOON)
            )

    async def check(self) -> None:
        """The invariants, for every payment of this history."""
        ids = {p["reference_no"] for p in self.payments}
        async with self.stack.services.sessions() as session:
            payments = {
                p.reference_no: p
                for p in await session.scalars(select(Payment).where(Payment.reference_no.in_(ids)))
            }
            by_id = {
                p.id: i for i, p in enumerate(payments[r["reference_no"]] for r in self.payments)
            }
            events = list(
                await session.scalars(
                    select(PaymentEvent)
                    .where(PaymentEvent.payment_id.in_(by_id))
                    .order_by(PaymentEvent.id)
                )
            )
            ledger = list(
                await session.scalars(
                    select(Notification).where(Notification.payment_id.in_(by_id))
                )
            )
            await session.commit()

        for payment_id, i in by_id.items():
            payment = next(p for p in payments.values() if p.id == payment_id)
            history = [
                e.type for e in events if e.payment_id == payment_id and e.type != "quarantined"
            ]
            # Never one change twice.
            repeated = [t for t, n in Counter(history).items() if n > 1]
            assert not repeated, f"payment {i}: {repeated} applied twice: {history}"
            # Every step of the history is a legal transition, and it ends where the row is.
            path = [STATUS_OF_EVENT[t] for t in history]
            assert path[0] is S.PENDING, history
            for before, after in itertools.pairwise(path):
                assert before in TRANSITIONS[after], f"payment {i}: {before} -> {after}"
            assert payment.status == path[-1], (payment.status, history)
            # Only what NICEPAY said can have happened.
            if payment.status in (S.PAID, S.REVERSED) or "paid" in history:
                assert i in self.paid_at_till, f"payment {i} paid, but nobody paid: {history}"
            if "reversed" in history:
                assert i in self.reversal_pushed, history
            if payment.status in (S.EXPIRED, S.CANCELLED):
                assert i in self.dropped, history
            # The ledger applied each kind of push at most once.
            applied = Counter(
                r.status for r in ledger if r.payment_id == payment_id and r.outcome == "applied"
            )
            assert all(n == 1 for n in applied.values()), applied


@settings(
    max_examples=250 if EXPLORE else 25,
    derandomize=not EXPLORE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    count=st.integers(1, 3),
    history=st.lists(steps, min_size=1, max_size=12),
)
async def test_random_histories_stay_legal(stack: Stack, count: int, history: list[Step]) -> None:
    world = World(stack, [await stack.register() for _ in range(count)])
    for action, i, copies in history:
        await world.run(action, i % count, copies)
        await world.check()
