"""The service stopped mid-delivery and started again: the same event goes out again, same
webhook-id, same bytes. Once stopped gracefully (in-process lifespan), once killed with
SIGKILL (a real `python -m app serve` process), on SQLite and PostgreSQL."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from app.config import Settings
from app.main import create_app
from tests import procs
from tests.conftest import STOREFRONT_KEY, Stack, make_settings
from tests.webhooks.conftest import (
    SECRET,
    all_in,
    attempts_of,
    eventually,
    outbox,
    verify,
    webhook_settings,
)
from tests.webhooks.receiver import Receiver


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[None]:
    """The service in-process with its background loops (the dispatcher) running."""
    app = create_app(settings, run_background=True)
    async with app.router.lifespan_context(app):
        yield


def requests_arrived(receiver: Receiver, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(receiver.received()) >= count

    return check


@pytest.mark.usefixtures("quick_poll")
async def test_graceful_stop_mid_delivery_then_restart(
    hooked: Stack, receiver: Receiver, clean_db: str
) -> None:
    receiver.hold = 1  # the first request hangs until the service is gone
    await hooked.register()
    [event] = await outbox(hooked.services)
    settings = make_settings(clean_db, **webhook_settings(receiver))

    async with serving(settings):
        await eventually(requests_arrived(receiver, 1), "the first attempt")
    [stopped] = await outbox(hooked.services)
    assert (stopped.status, stopped.lease_until) == ("pending", None)  # freed on the way out
    [interrupted] = await attempts_of(hooked.services, event.event_id)
    assert interrupted.status_code is None and "interrupted" in (interrupted.error or "")

    async with serving(settings):
        await eventually(all_in(hooked.services, "delivered"), "delivered after the restart")

    first, second = receiver.received()
    assert first.webhook_id == second.webhook_id == event.event_id
    assert first.body == second.body == event.body.encode()
    assert verify(first) == verify(second)
    assert [a.status_code for a in await attempts_of(hooked.services, event.event_id)] == [
        None,
        200,
    ]


# The service process, with a short lease and poll so the test need not wait half a minute.
LAUNCHER = """
import sys
from app.webhooks import loop
loop.LEASE_MARGIN_SECONDS = 0.5
loop.POLL_SECONDS = 0.05
from app.cli import main
main(["serve", "--host", "127.0.0.1", "--port", sys.argv[1]])
"""


async def start_service(database_url: str, receiver: Receiver) -> procs.Process:
    port = procs.free_port()
    env = procs.child_env(
        app_env="test",
        database_url=database_url,
        nicepay_base_url="http://127.0.0.1:9",  # never called here
        public_base_url=f"http://127.0.0.1:{port}",
        storefront_api_keys=STOREFRONT_KEY,
        reconcile_interval_seconds=0,
        log_format="json",
        merchant_webhook_url=receiver.url,
        merchant_webhook_secret=SECRET,
        webhook_timeout_seconds=1,
    )
    return await procs.spawn("webhook-service", ["-c", LAUNCHER, str(port)], env, port, "/healthz")


@pytest.mark.slow
async def test_killed_mid_delivery_then_restarted(
    hooked: Stack, receiver: Receiver, clean_db: str
) -> None:
    receiver.hold = 1
    await hooked.register()
    [event] = await outbox(hooked.services)

    first_service = await start_service(clean_db, receiver)
    async with procs.running(first_service):
        await eventually(requests_arrived(receiver, 1), "the first attempt")
        first_service.child.kill()  # SIGKILL: no shutdown, no cleanup, the lease stays
        await first_service.child.wait()
    [killed] = await outbox(hooked.services)
    assert killed.status == "pending" and killed.lease_until is not None
    assert await attempts_of(hooked.services, event.event_id) == []  # died before recording

    second_service = await start_service(clean_db, receiver)
    async with procs.running(second_service):
        await eventually(all_in(hooked.services, "delivered"), "delivered once the lease ran out")

    first, second = receiver.received()
    assert first.webhook_id == second.webhook_id == event.event_id
    assert first.body == second.body == event.body.encode()
    assert verify(first) == verify(second)
    [delivered] = await attempts_of(hooked.services, event.event_id)
    assert delivered.status_code == 200
    assert SECRET.removeprefix("whsec_") not in first_service.log() + second_service.log()
