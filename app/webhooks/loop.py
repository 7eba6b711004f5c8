"""The delivery loop (the dispatcher): delivers outbox events to MERCHANT_WEBHOOK_URL as Standard Webhooks.

One pass (`deliver_due`):
1. Pick due events: pending, `next_attempt_at` reached, not leased, and the oldest pending
   event of their payment (one given up does not block), so at most one event per payment is
   in flight, in outbox order.
2. Claim each with a compare-and-set lease, one short transaction per claim: whichever
   dispatcher's UPDATE wins holds the event, on SQLite and PostgreSQL alike. The lease outlasts
   the whole HTTP call, so two dispatchers never send one event at once; if the process dies
   mid-delivery the lease expires and the next pass sends the same webhook-id and body again.
3. With no session open, POST the stored body, signed with every configured secret.
4. One transaction: the attempt row, and the event delivered, rescheduled with backoff and
   jitter, or given up after WEBHOOK_MAX_ATTEMPTS.

Delivery is at least once: a receiver dedupes on webhook-id. Secrets and the merchant URL
never reach a log line or an attempt row.
"""

import asyncio
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from standardwebhooks import Webhook

from app import metrics
from app.config import Settings
from app.models import WebhookAttempt, WebhookEvent, WebhookStatus
from app.nicepay.wib import now_utc
from app.webhooks.schemas import Answer, Claim

log = logging.getLogger("app.webhooks")

POLL_SECONDS = 1.0  # idle wait between passes of run_forever; tests shorten it
BATCH_SIZE = 16  # events claimed (and sent concurrently, one per payment) per pass
LEASE_MARGIN_SECONDS = 30.0  # lease beyond the HTTP deadline: room to record the outcome
EXCERPT_CHARS = 500  # of the receiver's answer, kept in webhook_attempts
ERROR_CHARS = 255
MAX_IDLE_AFTER_ERRORS_SECONDS = 30.0
USER_AGENT = "nicepay-cvs-webhooks/1"

Pending = WebhookStatus.PENDING


class DeliveryDeps(Protocol):
    """What the loop uses: the ORM sessions (the outbox), the settings, one HTTP client."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    webhook_http: httpx.AsyncClient


class WebhookConfigError(ValueError):
    """MERCHANT_WEBHOOK_URL / MERCHANT_WEBHOOK_SECRET cannot be used (never echoes a value)."""


# --- signing ----------------------------------------------------------------------------


def signers(settings: Settings) -> list[Webhook]:
    """One Standard Webhooks signer per secret in MERCHANT_WEBHOOK_SECRET (space-separated)."""
    if not settings.merchant_webhook_url:
        raise WebhookConfigError("MERCHANT_WEBHOOK_URL is not set")
    secrets = settings.merchant_webhook_secret.get_secret_value().split()
    if not secrets:
        raise WebhookConfigError(
            "MERCHANT_WEBHOOK_SECRET is empty: events stay queued; none is sent unsigned"
        )
    try:
        return [Webhook(secret) for secret in secrets]
    except Exception:
        raise WebhookConfigError(
            "MERCHANT_WEBHOOK_SECRET holds a value that is not a whsec_<base64> secret"
        ) from None


def signed_headers(
    keys: Sequence[Webhook], event_id: str, at: datetime, body: str
) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt made at `at` (an aware UTC moment)."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        # "v1,<sig> v1,<sig>": one per secret, so a receiver holding either one verifies.
        "webhook-signature": " ".join(key.sign(event_id, at, body) for key in keys),
    }


def backoff(settings: Settings, attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure: min(cap, base * 2**(attempts-1)), scaled by
    a random factor in [0.5, 1.0] so receivers recovering from an outage are not stampeded."""
    exponent = min(attempts - 1, 60)  # beyond this the cap applies anyway; avoids overflow
    ceiling = min(
        settings.webhook_backoff_cap_seconds, settings.webhook_backoff_base_seconds * 2**exponent
    )
    return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))


def lease_seconds(settings: Settings) -> float:
    return settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS


# --- one pass ---------------------------------------------------------------------------


def _due(now: datetime) -> ColumnElement[bool]:
    """Pending, due, lease free, and no earlier event of the same payment still pending."""
    earlier = aliased(WebhookEvent)
    blocked = (
        select(earlier.id)
        .where(
            earlier.payment_id == WebhookEvent.payment_id,
            earlier.status == Pending,
            earlier.id < WebhookEvent.id,
        )
        .exists()
    )
    return and_(
        WebhookEvent.status == Pending,
        WebhookEvent.next_attempt_at <= now,
        WebhookEvent.unleased(now),
        ~blocked,
    )


async def claim_due(deps: DeliveryDeps, limit: int = BATCH_SIZE) -> list[Claim]:
    """Lease up to `limit` due events; each claim is its own compare-and-set transaction."""
    lease = timedelta(seconds=lease_seconds(deps.settings))
    claims: list[Claim] = []
    async with deps.sessions() as session:
        candidates = list(
            await session.scalars(
                select(WebhookEvent.id)
                .where(_due(now_utc()))
                .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id)
                .limit(limit)
            )
        )
        await session.commit()
        for event_pk in candidates:
            now = now_utc()  # each lease runs from its own claim
            lease_until = now + lease
            row = (
                await session.execute(
                    update(WebhookEvent)
                    .where(WebhookEvent.id == event_pk, _due(now))
                    .values(lease_until=lease_until)
                    .returning(WebhookEvent.event_id, WebhookEvent.body, WebhookEvent.attempts)
                    .execution_options(synchronize_session=False)
                )
            ).one_or_none()
            await session.commit()
            if row is not None:  # else another dispatcher won it
                claims.append(Claim(event_pk, row.event_id, row.body, row.attempts, lease_until))
    return claims


async def deliver_due(deps: DeliveryDeps) -> int:
    """One pass: claim due events and deliver them; returns how many were attempted."""
    keys = signers(deps.settings)
    claims = await claim_due(deps)
    async with asyncio.TaskGroup() as group:
        for claim in claims:
            group.create_task(_deliver(deps, keys, claim))
    return len(claims)


async def run_forever(deps: DeliveryDeps) -> None:
    """The background loop: a pass, then another at once if it found work, else a pause."""
    try:
        signers(deps.settings)
    except WebhookConfigError as exc:
        log.error("webhook dispatcher not started: %s", exc)
        return
    log.info("webhook dispatcher started")
    failures = 0
    while True:
        try:
            attempted = await deliver_due(deps)
            failures = 0
        except Exception:
            # The database is away, most likely: keep the loop alive, back off the noise.
            failures += 1
            attempted = 0
            log.exception("webhook dispatch pass failed (%d in a row)", failures)
        if not attempted:
            pause = min(POLL_SECONDS * 2 ** min(failures, 10), MAX_IDLE_AFTER_ERRORS_SECONDS)
            await asyncio.sleep(pause)


async def _deliver(deps: DeliveryDeps, keys: Sequence[Webhook], claim: Claim) -> None:
    at = now_utc()
    headers = signed_headers(keys, claim.event_id, at, claim.body)
    try:
        answer = await _post(deps.webhook_http, deps.settings, claim.body, headers)
    except asyncio.CancelledError:
        # The service is stopping mid-request: log the attempt and free the lease so the
        # next process sends the event again at once (same id and body) instead of waiting.
        await _record_interrupted(deps, claim, at)
        raise
    try:
        await _record(deps, claim, at, answer)
    except Exception:
        # Left leased: once the lease expires the event is sent again (at least once).
        log.exception("could not record webhook attempt for %s", claim.event_id)


async def _post(
    client: httpx.AsyncClient, settings: Settings, body: str, headers: dict[str, str]
) -> Answer:
    """POST the body verbatim; a status code, an excerpt of the answer, or what went wrong."""
    url = settings.merchant_webhook_url
    deadline = settings.webhook_timeout_seconds
    status_code: int | None = None
    received = bytearray()
    error: str | None = None
    started = time.perf_counter()
    try:
        # One deadline for the whole exchange: httpx's timeouts are per read, and the lease
        # must outlast the call however slowly a receiver trickles its answer.
        async with (
            asyncio.timeout(deadline),
            client.stream("POST", url, content=body.encode(), headers=headers) as response,
        ):
            status_code = response.status_code
            async for chunk in response.aiter_bytes():
                received += chunk
                if len(received) >= EXCERPT_CHARS * 4:  # enough for 500 characters of UTF-8
                    break
    except (TimeoutError, httpx.TimeoutException):
        error = f"no complete answer within {deadline:g}s"
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        message = str(exc).replace(url, "<MERCHANT_WEBHOOK_URL>")  # the URL may carry a token
        error = f"{type(exc).__name__}: {message}"[:ERROR_CHARS] if message else type(exc).__name__
    duration_ms = round((time.perf_counter() - started) * 1000)
    excerpt = received.decode("utf-8", errors="replace")[:EXCERPT_CHARS] if received else None
    return Answer(status_code, excerpt, error, duration_ms)


async def _record(deps: DeliveryDeps, claim: Claim, at: datetime, answer: Answer) -> None:
    """Record the attempt: the event delivered, rescheduled or given up."""
    now = now_utc()
    event_id = claim.event_id
    attempts = claim.attempts + 1
    failure = answer.error or f"HTTP {answer.status_code}"
    values: dict[str, Any] = {"attempts": attempts, "lease_until": None}
    if answer.ok:
        outcome = "delivered"
        values |= {"status": WebhookStatus.DELIVERED, "delivered_at": now, "last_error": None}
        # Delivered is delivered, even if a slow pass lost its lease meanwhile.
        owned = WebhookEvent.status == Pending
    else:
        values["last_error"] = failure
        if attempts >= deps.settings.webhook_max_attempts:
            outcome = "given_up"
            values["status"] = WebhookStatus.GIVEN_UP
        else:
            outcome = "failed"
            values["next_attempt_at"] = now + backoff(deps.settings, attempts)
        owned = and_(WebhookEvent.status == Pending, WebhookEvent.lease_until == claim.lease_until)
    recorded = await _save(deps, claim, at, answer, owned, values)
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    extra = {"event_id": event_id, "attempt": attempts, "status_code": answer.status_code}
    if not recorded:
        log.warning("webhook %s: lease lost before the outcome was recorded", event_id)
    elif outcome == "delivered":
        log.info("webhook %s delivered (attempt %d)", event_id, attempts, extra=extra)
    elif outcome == "given_up":
        log.error(
            "webhook %s given up after %d attempts: %s", event_id, attempts, failure, extra=extra
        )
    else:
        log.warning(
            "webhook %s attempt %d failed: %s; next at %s",
            event_id,
            attempts,
            failure,
            values["next_attempt_at"].isoformat(),
            extra=extra,
        )


async def _record_interrupted(deps: DeliveryDeps, claim: Claim, at: datetime) -> None:
    """Best effort on shutdown; if it fails the lease simply runs out."""
    duration_ms = round((now_utc() - at).total_seconds() * 1000)
    answer = Answer(None, None, "interrupted: the service stopped during the attempt", duration_ms)
    try:
        owned = WebhookEvent.lease_until == claim.lease_until
        await _save(deps, claim, at, answer, owned, {"lease_until": None})
    except Exception:
        log.warning("webhook %s: lease left to expire", claim.event_id, exc_info=True)


async def _save(
    deps: DeliveryDeps,
    claim: Claim,
    at: datetime,
    answer: Answer,
    owned: ColumnElement[bool],
    values: dict[str, Any],
) -> bool:
    """The attempt row and, if `owned` still holds, the event's new `values`: one transaction."""
    async with deps.sessions() as session:
        session.add(WebhookAttempt(webhook_event_id=claim.id, at=at, **asdict(answer)))
        result = await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == claim.id, owned)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]
