"""/metrics: the counters an operator alerts on move with the traffic that should move them."""

from prometheus_client.parser import text_string_to_metric_families

from app.nicepay.codes import NotificationStatus
from tests.conftest import Stack
from tests.reconcile.test_sweep import soon

DEPOSIT = NotificationStatus.DEPOSIT
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(stack: Stack) -> Samples:
    response = await stack.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_counters_move_with_traffic(stack: Stack) -> None:
    before = await scrape(stack)

    paid = await stack.register()
    assert await stack.sim.pay(paid["txid"]) == [(200, "OK")]
    lost = await stack.register()
    await stack.sim.settle_silently(lost["txid"])
    form = stack.sim.notification_form(stack.sim.transactions[paid["txid"]], DEPOSIT)
    async with stack.nicepay() as nicepay:
        forged = {**form, "merchantToken": "0" * 64}
        response = await nicepay.post("/api/v1/nicepay/notifications", data=forged)
    assert response.status_code == 403
    assert (await stack.services.reconciler.sweep(now=soon())).healed == 1

    after = await scrape(stack)
    assert moved(before, after, "cvs_registrations_total", result="registered") == 2
    assert moved(before, after, "nicepay_calls_total", endpoint="onePass.do", result_cd="0000") == 2
    # One inquiry confirming the push, one by the sweep.
    assert (
        moved(before, after, "nicepay_calls_total", endpoint="onePassStatus.do", result_cd="0000")
        == 2
    )
    assert moved(before, after, "nicepay_call_seconds_count", endpoint="onePass.do") == 2
    assert moved(before, after, "nicepay_notifications_total", outcome="applied") == 1
    assert moved(before, after, "nicepay_notifications_total", outcome="rejected") == 1
    assert moved(before, after, "nicepay_notification_check_failures_total", check="token") == 1
    assert moved(before, after, "reconcile_payments_total", outcome="healed") == 1
    assert moved(before, after, "payment_transitions_total", to="paid") == 2
    assert after[("reconcile_last_sweep_timestamp_seconds", frozenset())] > 0
    # Inquiries by reason: the push's confirmation and the sweep's first scheduled check.
    assert moved(before, after, "nicepay_inquiries_total", reason="push_confirmation") == 1
    assert moved(before, after, "nicepay_inquiries_total", reason="schedule") == 1
    # The sweep's backlog, as it started: the unpaid code's first check was due.
    assert after[("reconcile_backlog", frozenset())] == 1
    assert after[("reconcile_oldest_overdue_seconds", frozenset())] > 0


async def test_a_refresh_is_counted_as_its_own_reason(stack: Stack) -> None:
    payment = await stack.register()
    before = await scrape(stack)
    response = await stack.client.post(f"/api/v1/cvs/payments/{payment['reference_no']}/refresh")
    assert response.status_code == 200
    after = await scrape(stack)
    assert moved(before, after, "nicepay_inquiries_total", reason="refresh") == 1
    assert moved(before, after, "nicepay_inquiries_total", reason="schedule") == 0
