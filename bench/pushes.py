"""Valid traffic for the service: registered payments, and the deposit pushes NICEPAY would send.

Every push passes every check: the payment is registered through the storefront API (the
simulator issues its tXid), and the form is the simulator's own `notification_form`, so its
merchantToken is txid_token(iMid, tXid, amt, key) and its fields are NICEPAY's.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY
from app.nicepay.codes import NOTIFICATION_USER_AGENT, NotificationStatus
from app.nicepay.tokens import reference_token
from app.nicepay.wib import now_utc, to_wib_fields
from bench.http import Answer, HttpError, Request, fan_out
from simulator.app import SimTransaction, SimulatorState

STOREFRONT_KEY = "bench-key"
PAYMENTS_PATH = "/api/v1/cvs/payments"
NOTIFY_PATH = "/api/v1/nicepay/notifications"
REGISTER_PATH = "/nicepay/api/onePass.do"
FORM = "application/x-www-form-urlencoded"
JSON_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {STOREFRONT_KEY}"}
PUSH_HEADERS = {"Content-Type": FORM, "User-Agent": NOTIFICATION_USER_AGENT}
GOODS, BILLING = "Bench goods", "Bench Buyer"

_forms = SimulatorState(imid=SANDBOX_IMID, merchant_key=SANDBOX_MERCHANT_KEY)


@dataclass
class Registered:
    reference_no: str
    txid: str
    amount: int
    mitra_cd: str
    pay_no: str
    expires_at: datetime
    created_at: datetime


def registration_body(reference_no: str, amount: int) -> bytes:
    return json.dumps(
        {
            "reference_no": reference_no,
            "amount": amount,
            "store": "alfamart",
            "goods_name": GOODS,
            "customer": {"name": BILLING, "phone": "081234567890", "email": "buyer@example.com"},
        }
    ).encode()


def nicepay_registration_form(reference_no: str, amount: int, db_process_url: str) -> bytes:
    """The onePass.do form the service sends for `registration_body` (same fields, same sizes)."""
    valid_dt, valid_tm = to_wib_fields(now_utc() + timedelta(days=1))
    req_dt, req_tm = to_wib_fields(now_utc())
    form = {
        "iMid": SANDBOX_IMID,
        "payMethod": "03",
        "currency": "IDR",
        "amt": str(amount),
        "referenceNo": reference_no,
        "goodsNm": GOODS,
        "billingNm": BILLING,
        "billingPhone": "081234567890",
        "billingEmail": "buyer@example.com",
        # What the service sends for a buyer without an address: BILLING_DEFAULT_*.
        "billingCity": "Jakarta",
        "billingState": "DKI Jakarta",
        "billingPostCd": "10110",
        "billingCountry": "Indonesia",
        "callBackUrl": db_process_url.rsplit("/api/", 1)[0],
        "dbProcessUrl": db_process_url,
        "vat": "0",
        "fee": "0",
        "notaxAmt": "0",
        "description": GOODS,
        "merchantToken": reference_token(SANDBOX_IMID, reference_no, amount, SANDBOX_MERCHANT_KEY),
        "reqDt": req_dt,
        "reqTm": req_tm,
        "userIP": "127.0.0.1",
        "cartData": "{}",
        "mitraCd": "ALMA",
        "payValidDt": valid_dt,
        "payValidTm": valid_tm,
    }
    return urlencode(form).encode()


def _parse_registered(answer: Answer | HttpError) -> Registered:
    if isinstance(answer, HttpError) or answer.status != 201:
        detail = answer if isinstance(answer, HttpError) else answer.body[:300]
        raise RuntimeError(f"registration failed: {detail!r}")
    return registered_from(json.loads(answer.body))


def registered_from(data: dict[str, Any]) -> Registered:
    """The parts of a payment resource (the storefront API's JSON) a push is built from."""
    return Registered(
        reference_no=data["reference_no"],
        txid=data["txid"],
        amount=data["amount"],
        mitra_cd=data["mitra_cd"],
        pay_no=data["pay_no"],
        expires_at=datetime.fromisoformat(data["expires_at"]),
        created_at=datetime.fromisoformat(data["created_at"]),
    )


async def register_pool(
    port: int, prefix: str, count: int, *, concurrency: int = 16
) -> list[Registered]:
    """`count` payments registered through the storefront API (each calls the simulator)."""
    requests: list[Request] = [
        ("POST", PAYMENTS_PATH, registration_body(f"{prefix}-{i}", 10_000 + i % 5000), JSON_HEADERS)
        for i in range(count)
    ]
    return [_parse_registered(a) for a in await fan_out(port, requests, concurrency)]


async def settle_in_simulator(sim_port: int, pool: list[Registered], concurrency: int = 16) -> None:
    """Mark each code paid at NICEPAY without a push, so the status inquiry says paid."""
    requests: list[Request] = [
        ("POST", f"/sim/transactions/{p.txid}/settle", b"", {}) for p in pool
    ]
    for answer in await fan_out(sim_port, requests, concurrency):
        if isinstance(answer, HttpError) or answer.status != 200:
            raise RuntimeError(f"simulator settle failed: {answer!r}")


def deposit_form(payment: Registered) -> str:
    """The url-encoded status=0 push NICEPAY sends when the code is paid at the till."""
    tx = SimTransaction(
        txid=payment.txid,
        reference_no=payment.reference_no,
        amt=str(payment.amount),
        mitra_cd=payment.mitra_cd,
        pay_no=payment.pay_no,
        goods_nm=GOODS,
        billing_nm=BILLING,
        description=GOODS,
        callback_url="",
        db_process_url="",
        registered_at=payment.created_at,
        req_dt="",
        req_tm="",
        valid_until=payment.expires_at,
        deposited_at=now_utc(),
    )
    return urlencode(_forms.notification_form(tx, NotificationStatus.DEPOSIT))
