"""When the reconciler asks NICEPAY about a pending code: at most RECONCILE_BUDGET status
inquiries from sweeps over its whole life, at fixed times worked out from its registration
and its expiry:

- RECONCILE_SCHEDULE (default `10m,1h,6h`) after registration, for pushes that got lost
  (most codes that are paid at all are paid early); those at or after the expiry are dropped;
- the expiry check, at `expires_at` + RECONCILE_EXPIRY_MARGIN_SECONDS (NICEPAY's clock must
  have recorded the expiry): always kept, one slot of the budget is reserved for it;
- RECONCILE_LATE_CHECKS (default `30m,2h`) after the expiry check, while the budget lasts.

A check done late (a backlog) uses up every slot it passed, so a code is never asked about
twice to catch up. Inquiries asked for by pushes and by people (`refresh`) are not counted.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

SCHEDULE, EXPIRY = "schedule", "expiry"  # the reasons a sweep asks (metrics label)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_duration(text: str) -> timedelta:
    """`90s`, `10m`, `6h`, `1d`."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 10m, 6h or 1d")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def parse_offsets(texts: list[str]) -> tuple[timedelta, ...]:
    offsets = tuple(parse_duration(t) for t in texts)
    if list(offsets) != sorted(set(offsets)):
        raise ValueError("offsets must be increasing: " + ",".join(texts))
    return offsets


@dataclass(frozen=True)
class Slot:
    at: datetime
    reason: str  # SCHEDULE or EXPIRY


@dataclass(frozen=True)
class Schedule:
    after_registration: tuple[timedelta, ...]
    expiry_margin: timedelta
    late: tuple[timedelta, ...]
    budget: int

    def slots(self, registered_at: datetime, expires_at: datetime) -> list[Slot]:
        """Every check this code may get while it stays unpaid, at most `budget` of them."""
        expiry_check = expires_at + self.expiry_margin
        early = [registered_at + o for o in self.after_registration]
        early = [at for at in early if at < expires_at][: max(self.budget - 1, 0)]
        slots = [Slot(at, SCHEDULE) for at in early] + [Slot(expiry_check, EXPIRY)]
        slots += [Slot(expiry_check + o, EXPIRY) for o in self.late]
        return slots[: self.budget]

    def next_after(
        self, registered_at: datetime, expires_at: datetime, now: datetime
    ) -> Slot | None:
        """The first check still ahead of `now`; None when the budget is spent."""
        return next((s for s in self.slots(registered_at, expires_at) if s.at > now), None)

    def reason_at(self, expires_at: datetime, now: datetime) -> str:
        """Why a check made at `now` is made: to record the expiry, or a scheduled look."""
        return EXPIRY if now >= expires_at + self.expiry_margin else SCHEDULE

    def first(self, registered_at: datetime, expires_at: datetime) -> datetime | None:
        return next((slot.at for slot in self.slots(registered_at, expires_at)), None)
