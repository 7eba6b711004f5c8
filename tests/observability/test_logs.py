"""Logs: JSON lines with a request id in production, readable text in development, and no
secret in any line, whatever the code logs by mistake."""

import io
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from app.logs import secrets_of
from app.nicepay.codes import NotificationStatus
from app.nicepay.tokens import txid_token
from tests.conftest import STOREFRONT_KEY, Stack, StackFactory, make_settings
from tests.reconcile.test_sweep import soon

MERCHANT_KEY = "LogTest+Merchant/Key0123456789abcdefABCDEF=="
PREVIOUS_KEY = "LogTestPreviousMerchantKey9876543210"
OTHER_STOREFRONT_KEY = "second-storefront-key-7f3a9c"
WEBHOOK_SECRET = "whsec_bG9nLXRlc3Qtd2ViaG9vay1zZWNyZXQtdmFsdWU="
SECRETS = [MERCHANT_KEY, PREVIOUS_KEY, STOREFRONT_KEY, OTHER_STOREFRONT_KEY, WEBHOOK_SECRET]
NOTIFICATIONS = "/api/v1/nicepay/notifications"


@asynccontextmanager
async def logged_stack(
    factory: StackFactory, log_format: str
) -> AsyncIterator[tuple[Stack, io.StringIO]]:
    """A stack whose log handler (the service's own, as configured) writes to a buffer."""
    async with factory(
        log_format=log_format,
        nicepay_merchant_key=MERCHANT_KEY,
        nicepay_previous_merchant_key=PREVIOUS_KEY,
        storefront_api_keys=[STOREFRONT_KEY, OTHER_STOREFRONT_KEY],
        merchant_webhook_url="http://storefront.test/hooks",
        merchant_webhook_secret=WEBHOOK_SECRET,
    ) as stack:
        [handler] = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
        buffer = io.StringIO()
        handler.setStream(buffer)
        yield stack, buffer


async def traffic(stack: Stack) -> list[str]:
    """Everything that could leak: registrations, pushes (token in the body, in the query, and
    wrong), a sweep, and code logging a secret by mistake. Returns the raw token NICEPAY sent."""
    payment = await stack.register()
    response = await stack.client.get(
        f"/api/v1/cvs/payments/{payment['reference_no']}", headers={"X-Request-ID": "req-abc"}
    )
    assert response.headers["x-request-id"] == "req-abc"
    assert await stack.sim.pay(payment["txid"]) == [(200, "OK")]
    tx = stack.sim.transactions[payment["txid"]]
    form = stack.sim.notification_form(tx, NotificationStatus.DEPOSIT)
    async with stack.nicepay() as nicepay:
        duplicate = await nicepay.post(NOTIFICATIONS, params=form)  # token in the query string
        forged = await nicepay.post(NOTIFICATIONS, params={**form, "merchantToken": "f" * 64})
    assert (duplicate.status_code, forged.status_code) == (200, 403)
    lost = await stack.register()
    await stack.sim.settle_silently(lost["txid"])
    assert (await stack.services.reconciler.sweep(now=soon())).healed == 1

    careless = logging.getLogger("app.careless")
    careless.error("the key is %s", MERCHANT_KEY, extra={"settings": {"key": MERCHANT_KEY}})
    try:
        raise RuntimeError(f"cannot use {WEBHOOK_SECRET} with {OTHER_STOREFRONT_KEY}")
    except RuntimeError:
        careless.exception("failed with %s", PREVIOUS_KEY)
    assert form["merchantToken"] == txid_token(
        stack.services.settings.nicepay_imid, tx.txid, tx.amt, MERCHANT_KEY
    )
    return [form["merchantToken"]]


def assert_no_secret(text: str, tokens: list[str]) -> None:
    for secret in [*SECRETS, *tokens]:
        assert secret not in text
        assert json.dumps(secret)[1:-1] not in text
    assert "***" in text  # the careless lines were masked, not dropped


async def test_production_logs_are_json_with_a_request_id_and_no_secret(
    stack_factory: StackFactory,
) -> None:
    async with logged_stack(stack_factory, "json") as (stack, buffer):
        tokens = await traffic(stack)
    text = buffer.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines
    assert all({"ts", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "app.http"]
    assert any(
        line["request_id"] == "req-abc" and line["message"].startswith("GET /api/v1/cvs/payments/")
        for line in access
    )
    assert all(line["request_id"] != "-" for line in access)
    assert all("?" not in line["message"] for line in access)  # no query string, no token
    sweeps = [line for line in lines if line["message"].startswith("reconcile sweep")]
    assert sweeps and sweeps[0]["request_id"].startswith("reconcile-")
    assert sweeps[0]["healed"] == 1
    assert_no_secret(text, tokens)


async def test_development_logs_are_readable_text_and_have_no_secret(
    stack_factory: StackFactory,
) -> None:
    async with logged_stack(stack_factory, "text") as (stack, buffer):
        tokens = await traffic(stack)
    text = buffer.getvalue()
    assert "[req-abc] app.http: GET /api/v1/cvs/payments/" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])
    assert_no_secret(text, tokens)


def test_the_database_password_is_a_secret_too() -> None:
    settings = make_settings("postgresql+asyncpg://svc:Db-Passw0rd-xyz@db.internal:5432/cvs")
    assert "Db-Passw0rd-xyz" in secrets_of(settings)
