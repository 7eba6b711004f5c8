"""The sweep's rate cap on NICEPAY, shared by every replica through the database.

Each second has a row in `inquiry_rate` counting the inquiries spent in it. A replica spends
one with a compare-and-set (`used = used + 1 WHERE used < cap`), or creates the second's
row; when the second is full it waits for the next one. All replicas draw from the same
row, so together they never pass the cap, and within a second it is first come, first
served (fair in practice: each asks for one token at a time). PostgreSQL and SQLite alike.

The clock and the sleep are injectable: the simulated day (bench/day.py) moves time on
instead of waiting.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import InquiryRate

KEEP_SECONDS = 3600  # rows older than this are deleted now and then


@dataclass(eq=False)
class InquiryCap:
    engine: AsyncEngine
    per_second: int
    _: KW_ONLY
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # Tokens taken by this replica, per second (the bench reads it).
    taken: Counter[int] = field(default_factory=Counter, init=False)

    async def take(self) -> int:
        """Wait for one inquiry's token; returns the second it was spent in."""
        while True:
            second = int(self.clock())
            if self.per_second <= 0 or await self._spend(second):
                self.taken[second] += 1
                return second
            await self.sleep(max(second + 1 - self.clock(), 0.001))

    async def _spend(self, second: int) -> bool:
        bump = (
            update(InquiryRate)
            .where(InquiryRate.second == second, InquiryRate.used < self.per_second)
            .values(used=InquiryRate.used + 1)
        )
        if await self._bump(bump):
            return True
        try:
            async with self.engine.begin() as connection:
                await connection.execute(insert(InquiryRate).values(second=second, used=1))
                expired = InquiryRate.second < second - KEEP_SECONDS
                await connection.execute(delete(InquiryRate).where(expired))
            return True
        except IntegrityError:  # another replica made the row first: spend from it
            return await self._bump(bump)

    async def _bump(self, bump: Any) -> bool:
        if self.engine.dialect.name == "postgresql":
            # One statement, autocommitted: one round trip.
            async with self.engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                return (await autocommit.execute(bump)).rowcount == 1
        async with self.engine.begin() as connection:
            return (await connection.execute(bump)).rowcount == 1
