"""POST/GET /api/v1/cvs/payments against the simulator, on SQLite and PostgreSQL."""


from tests.conftest import Stack


async def test_register_returns_pending_code(stack: Stack) -> None:
    body = await stack.register(store="indomaret", amount=25000)
    assert body["status"] == "pending"
    assert body["mitra_cd"] == "INDO"
    assert body["pay_no"].startswith("0") and len(body["pay_no"]) == 12
    assert len(body["txid"]) == 30
    assert body["expires_at"].endswith("+07:00")
    assert [e["type"] for e in body["events"]] == ["registered"]
    again = await stack.payment(body["reference_no"])
    assert again["pay_no"] == body["pay_no"]
