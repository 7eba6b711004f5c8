"""The dispatcher against a real receiver on loopback: order, signatures, retries, giving up,
re-sending, and what goes into the delivery log (on SQLite and PostgreSQL)."""

import base64
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.config import Settings
from app.models import WebhookStatus
from app.webhooks import loop
from tests.conftest import Stack, StackFactory, make_settings
from tests.webhooks.conftest import (
    NEXT_SECRET,
    SECRET,
    all_in,
    attempts_of,
    captured_logs,
    outbox,
    pump,
    verify,
    webhook_settings,
)
from tests.webhooks.receiver import Received, Receiver

EVENTS = "/api/v1/cvs/webhooks/events"


async def test_events_arrive_in_order_per_payment_signed(hooked: Stack, receiver: Receiver) -> None:
    tries: Counter[str] = Counter()

    def answer(request: Received) -> int:
        # Each payment's first event fails twice: its later events must wait for it.
        tries[request.webhook_id] += 1
        registered = request.type == "cvs_payment.registered"
        return 500 if registered and tries[request.webhook_id] <= 2 else 200

    receiver.answer = answer
    references = []
    for _ in range(4):
        created = await hooked.register()
        await hooked.sim.pay(created["txid"])
        await hooked.sim.reverse(created["txid"])
        references.append(created["reference_no"])

    await pump(hooked.services, all_in(hooked.services, "delivered"), "every event delivered")

    stored = {e.event_id: e for e in await outbox(hooked.services)}
    for reference in references:
        arrivals = [
            (r.type, r.answered) for r in receiver.received() if r.reference_no == reference
        ]
        assert arrivals == [
            ("cvs_payment.registered", 500),
            ("cvs_payment.registered", 500),
            ("cvs_payment.registered", 200),
            ("cvs_payment.paid", 200),
            ("cvs_payment.reversed", 200),
        ]
    for request in receiver.received():
        event = stored[request.webhook_id]
        assert request.body == event.body.encode()  # byte for byte what the outbox holds
        assert request.headers["content-type"] == "application/json"
        assert verify(request) == json.loads(event.body)
    for event in stored.values():
        expected = [500, 500, 200] if event.type == "cvs_payment.registered" else [200]
        assert [
            a.status_code for a in await attempts_of(hooked.services, event.event_id)
        ] == expected
        assert event.attempts == len(expected)


async def test_500_three_times_then_200_is_delivered(hooked: Stack, receiver: Receiver) -> None:
    receiver.script(500, 500, 500)
    receiver.reply_text = "é" * 2000
    await hooked.register()
    await pump(hooked.services, all_in(hooked.services, "delivered"), "delivered after retries")

    [event] = await outbox(hooked.services)
    requests = receiver.received()
    assert [r.answered for r in requests] == [500, 500, 500, 200]
    assert {r.webhook_id for r in requests} == {event.event_id}
    assert {r.body for r in requests} == {event.body.encode()}
    for request in requests:
        verify(request)  # each attempt is signed over its own webhook-timestamp
    assert event.attempts == 4
    assert event.delivered_at is not None and event.lease_until is None
    assert event.last_error is None
    log = await attempts_of(hooked.services, event.event_id)
    assert [a.status_code for a in log] == [500, 500, 500, 200]
    assert all(a.response_excerpt == "é" * 500 for a in log)  # truncated to 500 characters
    assert all(a.error is None and a.duration_ms >= 0 for a in log)
    assert [a.at for a in log] == sorted(a.at for a in log)


async def test_given_up_then_resent_by_api(stack_factory: StackFactory, receiver: Receiver) -> None:
    receiver.answer = lambda r: 500 if r.type == "cvs_payment.registered" else 200
    async with stack_factory(**webhook_settings(receiver, webhook_max_attempts=3)) as stack:
        created = await stack.register()
        await stack.sim.pay(created["txid"])

        async def settled() -> bool:
            return {e.status for e in await outbox(stack.services)} == {"given_up", "delivered"}

        await pump(stack.services, settled, "registered given up, paid delivered")
        registered, paid = await outbox(stack.services)
        assert (registered.status, registered.attempts) == ("given_up", 3)
        assert registered.last_error == "HTTP 500"
        assert paid.status == "delivered"  # a given-up event does not block the later ones

        listed = (await stack.client.get(EVENTS, params={"status": "given_up"})).json()
        assert [(e["event_id"], e["status"], e["attempts"]) for e in listed] == [
            (registered.event_id, "given_up", 3)
        ]
        assert listed[0]["reference_no"] == created["reference_no"]
        detail = (await stack.client.get(f"{EVENTS}/{registered.event_id}")).json()
        assert [a["status_code"] for a in detail["delivery_log"]] == [500, 500, 500]
        assert detail["payload"] == json.loads(registered.body)

        receiver.answer = lambda r: 200
        response = await stack.client.post(f"{EVENTS}/{registered.event_id}/resend")
        assert response.status_code == 202, response.text
        assert (response.json()["status"], response.json()["attempts"]) == ("pending", 0)
        await pump(stack.services, all_in(stack.services, "delivered"), "the re-sent event")

        first, *_, last = [r for r in receiver.received() if r.webhook_id == registered.event_id]
        assert (last.answered, last.body) == (200, first.body)  # same id, same bytes
        verify(last)
        detail = (await stack.client.get(f"{EVENTS}/{registered.event_id}")).json()
        assert [a["status_code"] for a in detail["delivery_log"]] == [500, 500, 500, 200]
        assert detail["status"] == "delivered" and detail["delivered_at"] is not None


async def test_events_api_answers_errors(hooked: Stack) -> None:
    await hooked.register()
    [event] = await outbox(hooked.services)
    assert (await hooked.client.get(f"{EVENTS}/msg_unknown")).status_code == 404
    assert (await hooked.client.post(f"{EVENTS}/msg_unknown/resend")).status_code == 404
    assert (await hooked.client.get(EVENTS, params={"status": "lost"})).status_code == 422
    anonymous = await hooked.client.get(EVENTS, headers={"Authorization": ""})
    assert anonymous.status_code == 401

    # Leased (in flight): a re-send now could put it on the wire twice at once.
    [claim] = await loop.claim_due(hooked.services)
    assert claim.event_id == event.event_id
    response = await hooked.client.post(f"{EVENTS}/{event.event_id}/resend")
    assert response.status_code == 409
    assert response.json()["error"] == "delivery_in_progress"


async def test_rotation_signs_with_every_secret(
    stack_factory: StackFactory, receiver: Receiver
) -> None:
    overrides = webhook_settings(receiver, merchant_webhook_secret=f"{SECRET} {NEXT_SECRET}")
    async with stack_factory(**overrides) as stack:
        await stack.register()
        await pump(stack.services, all_in(stack.services, "delivered"), "delivered")
    [request] = receiver.received()
    entries = request.headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries)
    assert verify(request, SECRET) == verify(request, NEXT_SECRET) == request.payload
    stranger = "whsec_" + base64.b64encode(b"someone-else-entirely-0123456789").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(request.body, request.headers)
    tampered = request.body.replace(b'"amount":10000', b'"amount":1')
    assert tampered != request.body
    with pytest.raises(WebhookVerificationError):
        verify(Received(request.headers, tampered))


async def test_no_answer_in_time_is_a_failed_attempt(
    stack_factory: StackFactory, receiver: Receiver
) -> None:
    receiver.hold = 1  # the first request never gets an answer in time
    # Generous: only the held request may run out of time, even on a loaded machine.
    async with stack_factory(**webhook_settings(receiver, webhook_timeout_seconds=2.0)) as stack:
        await stack.register()
        await pump(stack.services, all_in(stack.services, "delivered"), "delivered on the retry")
        [event] = await outbox(stack.services)
        log = await attempts_of(stack.services, event.event_id)
    timed_out, delivered = log[0], log[-1]
    assert timed_out.status_code is None
    assert timed_out.error == "no complete answer within 2s"
    assert delivered.status_code == 200
    assert [r.webhook_id for r in receiver.received()] == [event.event_id] * len(log)


async def test_secrets_stay_out_of_logs_and_the_delivery_log(
    stack_factory: StackFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    url_token = "url-token-3b1f9c0e7d"
    dead_url = f"http://127.0.0.1:9/hooks?token={url_token}"  # port 9: nobody listens
    secrets = [SECRET, SECRET.removeprefix("whsec_"), url_token]
    overrides = webhook_settings(receiver, merchant_webhook_url=dead_url, webhook_max_attempts=2)
    async with stack_factory(**overrides) as stack:
        await stack.register()
        with captured_logs(caplog):
            await pump(stack.services, all_in(stack.services, "given_up"), "given up")
        [event] = await outbox(stack.services)
        log = await attempts_of(stack.services, event.event_id)
    assert len(log) == 2 and all(a.status_code is None and a.error for a in log)
    stored = " ".join(f"{a.error} {a.response_excerpt}" for a in log) + str(event.last_error)
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in stored
    assert "given up after 2 attempts" in caplog.text


async def test_no_secret_means_nothing_is_sent(
    stack_factory: StackFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    async with stack_factory(**webhook_settings(receiver, merchant_webhook_secret="")) as stack:
        await stack.register()
        with pytest.raises(loop.WebhookConfigError, match="MERCHANT_WEBHOOK_SECRET"):
            await loop.deliver_due(stack.services)
        with captured_logs(caplog):
            await loop.run_forever(stack.services)  # logs why and returns: no loop runs
        assert [e.status for e in await outbox(stack.services)] == ["pending"]
    assert receiver.received() == []
    assert "webhook dispatcher not started" in caplog.text


def _settings(**overrides: Any) -> Settings:
    return make_settings("sqlite+aiosqlite://", **overrides)


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    settings = _settings(webhook_backoff_base_seconds=5, webhook_backoff_cap_seconds=3600)
    for attempts in range(1, 40):
        ceiling = min(3600.0, 5 * 2 ** (attempts - 1))
        for _ in range(20):
            wait = loop.backoff(settings, attempts)
            assert timedelta(seconds=ceiling * 0.5) <= wait <= timedelta(seconds=ceiling)
    assert loop.backoff(settings, 10_000) <= timedelta(seconds=3600)


def test_lease_outlasts_the_http_deadline() -> None:
    settings = _settings(webhook_timeout_seconds=10)
    assert loop.lease_seconds(settings) > settings.webhook_timeout_seconds


def test_statuses_match_the_model() -> None:
    assert {s.value for s in WebhookStatus} == {"pending", "delivered", "given_up"}
