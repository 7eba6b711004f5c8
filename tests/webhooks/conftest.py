"""Fixtures and helpers for the outbound-event tests: a loopback receiver, a stack whose
MERCHANT_WEBHOOK_URL points at it, and ways to run the dispatcher until something holds."""

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from app.main import Services
from app.models import Payment, WebhookAttempt, WebhookEvent
from app.webhooks import loop
from tests.conftest import Stack, StackFactory
from tests.webhooks.receiver import Received, Receiver, running_receiver

SECRET = "whsec_" + base64.b64encode(b"storefront-webhook-secret-0001!!").decode()
NEXT_SECRET = "whsec_" + base64.b64encode(b"storefront-webhook-secret-0002??").decode()
DEADLINE_SECONDS = 60.0  # for conditions awaited by polling; generous for a loaded machine


def webhook_settings(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    """Settings that send events to `receiver`, with retries in milliseconds, not minutes."""
    return {
        "merchant_webhook_url": receiver.url,
        "merchant_webhook_secret": SECRET,
        "webhook_backoff_base_seconds": 0.01,
        "webhook_backoff_cap_seconds": 0.05,
        "webhook_timeout_seconds": 10,
        **overrides,
    }


def verify(request: Received, secret: str = SECRET) -> dict[str, Any]:
    """What a storefront does: the standardwebhooks library checks the signature."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


async def eventually(
    condition: Callable[[], Awaitable[bool]], what: str, seconds: float = DEADLINE_SECONDS
) -> None:
    """Poll `condition` until it holds; fail after `seconds` (a deadline, not a timing assert)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {seconds}s: {what}")
        await asyncio.sleep(0.01)


async def pump(runtime: Services, condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Run dispatcher passes (deliver_due) until `condition` holds."""

    async def one_pass_then_check() -> bool:
        await loop.deliver_due(runtime)
        return await condition()

    await eventually(one_pass_then_check, what)


async def outbox(runtime: Services) -> list[WebhookEvent]:
    """Every outbox row, oldest first."""
    async with runtime.sessions() as session:
        rows = list(await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
        await session.commit()
    return rows


async def attempts_of(runtime: Services, event_id: str) -> list[WebhookAttempt]:
    async with runtime.sessions() as session:
        rows = list(
            await session.scalars(
                select(WebhookAttempt)
                .join(WebhookEvent, WebhookEvent.id == WebhookAttempt.webhook_event_id)
                .where(WebhookEvent.event_id == event_id)
                .order_by(WebhookAttempt.id)
            )
        )
        await session.commit()
    return rows


async def payment_id(runtime: Services, reference_no: str) -> int:
    async with runtime.sessions() as session:
        found = await session.scalar(select(Payment.id).where(Payment.reference_no == reference_no))
        await session.commit()
    assert found is not None
    return found


def all_in(runtime: Services, status: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        events = await outbox(runtime)
        return bool(events) and all(e.status == status for e in events)

    return check


@contextmanager
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Route every log record to caplog, unmasked (create_app's logging setup replaced
    the root handlers, and its secret-masking filter must not be what keeps a test green)."""
    root = logging.getLogger()
    level = root.level
    root.addHandler(caplog.handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(caplog.handler)
        root.setLevel(level)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
async def hooked(stack_factory: StackFactory, receiver: Receiver) -> AsyncIterator[Stack]:
    """The service stack with outbound events on, aimed at the loopback receiver."""
    async with stack_factory(**webhook_settings(receiver)) as built:
        yield built


@pytest.fixture
def quick_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_forever's idle pause shortened, so background-loop tests do not wait a second."""
    monkeypatch.setattr(loop, "POLL_SECONDS", 0.02)
