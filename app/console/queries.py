"""What the console's pages read. Every query is bounded and walks an index: a page costs
the same on a database of a million payments as on an empty one (counts of open backlogs are
capped, lists are keyset- or limit-paged on an indexed order, searches are exact matches on
indexed columns). The EXPLAIN checks are in tests/console/test_queries.py."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.models import (
    Notification,
    Outcome,
    Payment,
    PaymentEvent,
    PaymentStatus,
    WebhookAttempt,
    WebhookEvent,
    WebhookStatus,
)
from app.nicepay.wib import WIB
from app.reconcile import due_checks

PAGE = 50
BACKLOG_CAP = 10_000  # counts of open work stop here ("10,000+"): no scan of a huge backlog
OVERVIEW_TYPES = ("registered", "paid", "expired", "cancelled")


# --- overview ------------------------------------------------------------------------------


@dataclass
class Period:
    label: str
    since: datetime
    cells: dict[tuple[str, str], tuple[int, int]]  # (event type, store) -> (count, amount)

    def total(self, type_: str) -> tuple[int, int]:
        pairs = [v for (t, _s), v in self.cells.items() if t == type_]
        return sum(c for c, _ in pairs), sum(a for _, a in pairs)

    @property
    def stores(self) -> list[str]:
        return sorted({s for _t, s in self.cells})


@dataclass
class HourBar:
    hour: datetime  # WIB
    count: int
    amount: int


@dataclass
class CallHealth:
    endpoint: str
    calls: int
    errors: int
    mean_ms: float | None
    p95_ms: float | None  # the upper bound of the bucket holding the 95th percentile


@dataclass
class Backlog:
    reconcile_due: int
    registering: int
    awaiting_confirmation: int
    quarantined_unreviewed: int
    webhooks_pending: int
    webhooks_given_up: int
    oldest_pending_webhook: datetime | None
    last_sweep: datetime | None


def period_starts(now: datetime) -> tuple[datetime, datetime]:
    """Today and this week (from Monday) in Jakarta time: the merchant's calendar."""
    local = now.astimezone(WIB)
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return today, today - timedelta(days=today.weekday())


async def period(session: AsyncSession, label: str, since: datetime) -> Period:
    """Counts and amounts by event type and store since `since` (the index on events' `at`)."""
    rows = await session.execute(
        select(PaymentEvent.type, Payment.store, func.count(), func.sum(Payment.amount))
        .join(Payment, Payment.id == PaymentEvent.payment_id)
        .where(PaymentEvent.at >= since, PaymentEvent.type.in_(OVERVIEW_TYPES))
        .group_by(PaymentEvent.type, Payment.store)
    )
    cells = {(type_, store): (int(n), int(amount or 0)) for type_, store, n, amount in rows}
    return Period(label, since, cells)


async def paid_per_hour(session: AsyncSession, now: datetime, hours: int = 24) -> list[HourBar]:
    """Deposits per hour over the last `hours`, oldest first, empty hours included."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    if session.get_bind().dialect.name == "postgresql":
        bucket: Any = func.date_trunc("hour", PaymentEvent.at)
    else:
        bucket = func.strftime("%Y-%m-%d %H:00:00", PaymentEvent.at)
    rows = await session.execute(
        select(bucket, func.count(), func.sum(Payment.amount))
        .join(Payment, Payment.id == PaymentEvent.payment_id)
        .where(PaymentEvent.at >= start, PaymentEvent.type == "paid")
        .group_by(bucket)
    )
    found: dict[datetime, tuple[int, int]] = {}
    for hour, count, amount in rows:
        if isinstance(hour, str):
            hour = datetime.fromisoformat(hour).replace(tzinfo=start.tzinfo)
        found[hour.astimezone(start.tzinfo)] = (int(count), int(amount or 0))
    every_hour = [start + timedelta(hours=i) for i in range(hours)]
    return [HourBar(hour.astimezone(WIB), *found.get(hour, (0, 0))) for hour in every_hour]


def nicepay_health() -> list[CallHealth]:
    """NICEPAY calls by endpoint from this process's metrics registry (since it started)."""
    calls: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    for sample in next(iter(metrics.NICEPAY_CALLS.collect())).samples:
        if sample.name.endswith("_total"):
            endpoint = sample.labels["endpoint"]
            calls[endpoint] += int(sample.value)
            if sample.labels["result_cd"] != "0000":
                errors[endpoint] += int(sample.value)
    # Per endpoint: its cumulative buckets in ascending order, then "count", "sum", "created".
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    totals: dict[str, dict[str, float]] = defaultdict(dict)
    for sample in next(iter(metrics.NICEPAY_LATENCY.collect())).samples:
        endpoint = sample.labels["endpoint"]
        if sample.name.endswith("_bucket"):
            buckets[endpoint].append((float(sample.labels["le"]), sample.value))
        else:
            totals[endpoint][sample.name.rpartition("_")[2]] = sample.value
    health = []
    for endpoint in sorted(set(calls) | set(totals)):
        n = totals[endpoint].get("count", 0.0)
        mean = totals[endpoint]["sum"] / n * 1000 if n else None
        p95 = next((le * 1000 for le, below in buckets[endpoint] if n and below >= 0.95 * n), None)
        health.append(CallHealth(endpoint, calls[endpoint], errors[endpoint], mean, p95))
    return health


async def capped_count(session: AsyncSession, *where: Any) -> int:
    """Rows matching `where`, counted up to BACKLOG_CAP + 1 (no scan past it)."""
    bounded = select(literal(1)).where(*where).limit(BACKLOG_CAP + 1)
    return int(await session.scalar(select(func.count()).select_from(bounded.subquery())) or 0)


async def backlog(session: AsyncSession, now: datetime) -> Backlog:
    # "Due" is the sweep's own claim condition (app/reconcile.due_checks): a pending code
    # whose next check has come; NULL means its budget is spent, not that it is due.
    due = await capped_count(session, due_checks(now).whereclause)
    registering = await capped_count(session, Payment.status == PaymentStatus.REGISTERING)
    awaiting = await capped_count(
        session,
        Notification.outcome == Outcome.AWAITING_CONFIRMATION,
        Notification.resolved_at.is_(None),
    )
    quarantined = await capped_count(session, *_quarantined(reviewed=False))
    pending = await capped_count(session, WebhookEvent.status == WebhookStatus.PENDING)
    given_up = await capped_count(session, WebhookEvent.status == WebhookStatus.GIVEN_UP)
    oldest = await session.scalar(
        select(WebhookEvent.next_attempt_at)
        .where(WebhookEvent.status == WebhookStatus.PENDING)
        .order_by(WebhookEvent.next_attempt_at)
        .limit(1)
    )
    swept = next(iter(metrics.RECONCILE_LAST_SWEEP.collect())).samples[0].value  # 0: never
    last_sweep = datetime.fromtimestamp(swept, WIB) if swept else None
    return Backlog(due, registering, awaiting, quarantined, pending, given_up, oldest, last_sweep)


# --- payments -----------------------------------------------------------------------------


async def search(session: AsyncSession, q: str) -> list[Payment]:
    """Exact matches on reference_no, txid, pay_no, customer email or phone (all indexed);
    the page asks only when `q` is not blank."""
    q = q.strip()
    rows = await session.scalars(
        select(Payment)
        .where(
            or_(
                Payment.reference_no == q,
                Payment.txid == q,
                Payment.pay_no == q,
                Payment.customer_email == q.lower(),
                Payment.customer_phone == q,
            )
        )
        .order_by(Payment.id.desc())
        .limit(PAGE)
    )
    return list(rows)


async def latest(session: AsyncSession, before: int | None) -> list[Payment]:
    """Newest first, a page at a time: keyset on the primary key (`before` = last id shown)."""
    query = select(Payment).order_by(Payment.id.desc()).limit(PAGE)
    if before is not None:
        query = query.where(Payment.id < before)
    return list(await session.scalars(query))


@dataclass
class PaymentPage:
    payment: Payment
    events: list[PaymentEvent]
    ledger: list[Notification]
    webhooks: list[tuple[WebhookEvent, list[WebhookAttempt]]]


LEDGER_CAP = 200


async def payment_page(session: AsyncSession, reference_no: str) -> PaymentPage | None:
    payment = await session.scalar(select(Payment).where(Payment.reference_no == reference_no))
    if payment is None:
        return None
    events = await session.scalars(
        select(PaymentEvent).where(PaymentEvent.payment_id == payment.id).order_by(PaymentEvent.id)
    )
    # Pushes that named this tXid but were not tied to the payment (a wrong referenceNo) too.
    mine = Notification.payment_id == payment.id
    ledger = await session.scalars(
        select(Notification)
        .where(or_(mine, Notification.txid == payment.txid) if payment.txid else mine)
        .order_by(Notification.id)
        .limit(LEDGER_CAP)
    )
    hooks = list(
        await session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.payment_id == payment.id)
            .order_by(WebhookEvent.id)
        )
    )
    attempts: dict[int, list[WebhookAttempt]] = defaultdict(list)
    if hooks:
        for attempt in await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.webhook_event_id.in_([h.id for h in hooks]))
            .order_by(WebhookAttempt.id)
        ):
            attempts[attempt.webhook_event_id].append(attempt)
    return PaymentPage(payment, list(events), list(ledger), [(h, attempts[h.id]) for h in hooks])


# --- quarantine and webhooks ---------------------------------------------------------------


def _quarantined(*, reviewed: bool) -> tuple[Any, ...]:
    """The quarantine queue's condition: quarantined ledger rows, reviewed or not."""
    review = (
        Notification.reviewed_at.is_not(None) if reviewed else Notification.reviewed_at.is_(None)
    )
    return Notification.outcome == Outcome.QUARANTINED, review


async def quarantine(
    session: AsyncSession, *, reviewed: bool, before: int | None
) -> list[tuple[Notification, str | None]]:
    """Quarantined ledger rows, newest first (the index on outcome, id), with their payment's
    reference_no when the push named a known payment."""
    query = (
        select(Notification, Payment.reference_no)
        .where(*_quarantined(reviewed=reviewed))
        .outerjoin(Payment, Payment.id == Notification.payment_id)
        .order_by(Notification.id.desc())
        .limit(PAGE)
    )
    if before is not None:
        query = query.where(Notification.id < before)
    return [(row, ref) for row, ref in (await session.execute(query)).all()]


FAILING = {"given_up": WebhookStatus.GIVEN_UP, "retrying": WebhookStatus.PENDING}


async def failing_webhooks(
    session: AsyncSession, kind: str, page: int
) -> list[tuple[WebhookEvent, str]]:
    """Deliveries that gave up, or that are being retried after a failure, latest first
    (the index on status, next_attempt_at)."""
    query = (
        select(WebhookEvent, Payment.reference_no)
        .join(Payment, Payment.id == WebhookEvent.payment_id)
        .where(WebhookEvent.status == FAILING[kind])
        .order_by(WebhookEvent.next_attempt_at.desc())
        .limit(PAGE)
        .offset(page * PAGE)
    )
    if kind == "retrying":
        query = query.where(WebhookEvent.attempts > 0)
    return [(event, ref) for event, ref in (await session.execute(query)).all()]
