"""POST /api/v1/cvs/payments/{reference_no}/cancel: onePassAllCancel.do, then `cancelled`."""

from simulator.app import CANCEL, Faults, Lifecycle
from tests.conftest import Stack
from tests.reconcile.helpers import history
from tests.reconcile.test_sweep import soon


async def cancel(stack: Stack, reference_no: str) -> tuple[int, dict[str, object]]:
    response = await stack.client.post(f"/api/v1/cvs/payments/{reference_no}/cancel")
    return response.status_code, response.json()


async def test_cancel_a_pending_code(stack: Stack) -> None:
    payment = await stack.register()
    status, body = await cancel(stack, payment["reference_no"])
    assert status == 200, body
    assert body["status"] == "cancelled"
    assert stack.sim.transactions[payment["txid"]].lifecycle is Lifecycle.CANCELLED
    assert await history(stack, payment["reference_no"]) == [
        ("registered", "api"),
        ("cancelled", "api"),
    ]
    # Cancelling again: 409, and NICEPAY is not asked again.
    calls = stack.sim.calls[CANCEL]
    status, body = await cancel(stack, payment["reference_no"])
    assert (status, body["error"], body["status"]) == (409, "conflict", "cancelled")
    assert stack.sim.calls[CANCEL] == calls


async def test_cancel_refuses_a_paid_code(stack: Stack) -> None:
    payment = await stack.register()
    assert await stack.sim.pay(payment["txid"]) == [(200, "OK")]
    calls = stack.sim.calls[CANCEL]
    status, body = await cancel(stack, payment["reference_no"])
    assert (status, body["error"], body["status"]) == (409, "conflict", "paid")
    assert stack.sim.calls[CANCEL] == calls
    assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


async def test_cancel_of_a_code_paid_without_a_push_is_refused_by_nicepay(stack: Stack) -> None:
    """The service thinks it is pending, NICEPAY knows it is paid: 502, nothing changes,
    and the reconciler then finds the deposit."""
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    status, body = await cancel(stack, payment["reference_no"])
    assert (status, body["error"], body["nicepay_code"]) == (502, "nicepay_error", "9330")
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"

    assert (await stack.services.reconciler.sweep(now=soon())).healed == 1
    assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


async def test_cancel_when_nicepay_is_down_leaves_the_payment_unchanged(stack: Stack) -> None:
    payment = await stack.register()
    stack.sim.faults = Faults(http_status=503, endpoints=[CANCEL])
    status, body = await cancel(stack, payment["reference_no"])
    assert (status, body["error"]) == (502, "nicepay_unavailable")
    assert "unchanged" in str(body["detail"])
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"


async def test_cancel_needs_the_storefront_key_and_a_known_reference(stack: Stack) -> None:
    payment = await stack.register()
    response = await stack.client.post(
        f"/api/v1/cvs/payments/{payment['reference_no']}/cancel",
        headers={"Authorization": "Bearer wrong-key"},
    )
    assert response.status_code == 401
    status, body = await cancel(stack, "ORD-NO-SUCH-ORDER")
    assert (status, body["error"]) == (404, "not_found")
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"
