"""The onePass.do requests NICEPAY's own SDKs and samples send (REFERENCE.md §6, §9), written
here from those descriptions, posted to the real simulator process: each gets the resultCd
NICEPAY documents for it. What the simulator refuses, the service must never send; what it
accepts, it must accept from the service too (tests/conformance/test_requests.py)."""

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest

from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY
from app.nicepay.tokens import reference_token
from app.nicepay.wib import now_utc, to_wib_fields
from tests.procs import Process

pytestmark = pytest.mark.slow

REGISTER = "/nicepay/api/onePass.do"


def base(reference_no: str) -> dict[str, str]:
    """REFERENCE.md §1.2's required fields, as every official sample fills them."""
    return {
        "iMid": SANDBOX_IMID,
        "payMethod": "03",
        "currency": "IDR",
        "amt": "10000",
        "referenceNo": reference_no,
        "goodsNm": "Test Transaction",
        "billingNm": "John Doe",
        "billingPhone": "081234567890",
        "billingEmail": "john@example.com",
        "billingCity": "Jakarta",
        "billingState": "DKI Jakarta",
        "billingPostCd": "12345",
        "billingCountry": "Indonesia",
        "callBackUrl": "https://merchant.com/callBackUrl",
        "dbProcessUrl": "https://merchant.com/dbProcessUrl",
        "description": "test item",
        "userIP": "127.0.0.1",
        "cartData": "{}",
        "mitraCd": "ALMA",
    }


def signed(form: dict[str, str]) -> dict[str, str]:
    token = reference_token(form["iMid"], form["referenceNo"], form["amt"], SANDBOX_MERCHANT_KEY)
    return {**form, "merchantToken": token}


def tomorrow_by_adding_one(today: str) -> str:
    """The Java CVS sample's "tomorrow": the yyyymmdd integer plus one (REFERENCE.md §6)."""
    return str(int(today) + 1)


def php_nicepaylib(reference_no: str) -> dict[str, str]:
    """PLUGS-PHP NicepayLib::requestCVS: billing and delivery set, instalment fields set even
    for CVS, vat/fee/notaxAmt "0", goodsNm = description (REFERENCE.md §6)."""
    valid_dt, valid_tm = to_wib_fields(now_utc() + timedelta(days=1))
    return signed(
        {
            **base(reference_no),
            "goodsNm": "test item",
            "billingAddr": "Jln Cendrawasih",
            "deliveryNm": "John Doe",
            "deliveryPhone": "081234567890",
            "deliveryAddr": "Jln Merak",
            "deliveryCity": "Jakarta",
            "deliveryState": "DKI Jakarta",
            "deliveryPostCd": "14350",
            "deliveryCountry": "Indonesia",
            "vat": "0",
            "fee": "0",
            "notaxAmt": "0",
            "instmntMon": "1",
            "instmntType": "1",
            "reqDomain": "merchant.com",
            "reqServerIP": "127.0.0.1",
            "reqClientVer": "1.0",
            "userSessionID": "userSessionID",
            "userAgent": "Mozilla",
            "userLanguage": "en-US",  # size 2 in the table, en-US in every sample
            "payValidDt": valid_dt,
            "payValidTm": valid_tm,
        }
    )


def python_sdk(reference_no: str) -> dict[str, str]:
    """python-nicepay's V1 builder: empty expiry strings, merFixAcctId, compact cartData
    (REFERENCE.md §1.2, §6)."""
    return signed(
        {
            **base(reference_no),
            "payValidDt": "",
            "payValidTm": "",
            "merFixAcctId": "",
            "cartData": '{"count":"1","item":[{"goods_name":"Kopi","goods_amt":"10000"}]}',
        }
    )


def without(form: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in form.items() if k not in names}


def cases() -> list[Any]:
    ref = "SDK-" + uuid.uuid4().hex[:12]
    today, _ = to_wib_fields(now_utc())
    month_end = f"{int(today[:4]) + 1}0131"  # a January 31st to come
    timestamp = today + "000000"
    ts_token = hashlib.sha256(
        (timestamp + SANDBOX_IMID + f"{ref}-ts" + "10000" + SANDBOX_MERCHANT_KEY).encode()
    ).hexdigest()
    rows = [
        ("php-nicepaylib", php_nicepaylib(f"{ref}-php"), "0000"),
        ("python-sdk", python_sdk(f"{ref}-py"), "0000"),
        # "one official SDK forgets it and gets 9024" (REFERENCE.md §9)
        ("no-userIP", without(signed(base(f"{ref}-noip")), "userIP"), "9024"),
        # rust-nicepay's serde camelCase turns user_ip into userIp (REFERENCE.md §6)
        (
            "userIp-camel-case",
            {**without(signed(base(f"{ref}-camel")), "userIP"), "userIp": "127.0.0.1"},
            "9024",
        ),
        # a storefront with name, phone and email only, sent as is (REFERENCE.md §9)
        (
            "name-phone-email-only",
            without(
                signed(base(f"{ref}-bare")),
                "billingCity",
                "billingState",
                "billingPostCd",
                "billingCountry",
            ),
            "9025",
        ),
        ("empty-billingState", signed({**base(f"{ref}-st"), "billingState": ""}), "9026"),
        ("empty-billingPostCd", signed({**base(f"{ref}-pc"), "billingPostCd": ""}), "9027"),
        ("empty-billingCountry", signed({**base(f"{ref}-co"), "billingCountry": ""}), "9028"),
        ("no-callBackUrl", without(signed(base(f"{ref}-cb")), "callBackUrl"), "9019"),
        ("no-currency", without(signed(base(f"{ref}-cur")), "currency"), "9013"),
        # golang-nicepay V1 puts a V2 timeStamp in front of the token (REFERENCE.md §1.3, §6)
        ("timestamped-token", {**base(f"{ref}-ts"), "merchantToken": ts_token}, "9010"),
        # decimals in amt (REFERENCE.md §1.2, 9008)
        ("amt-with-decimals", signed({**base(f"{ref}-dec"), "amt": "10000.00"}), "9008"),
    ]
    valid = {"payValidDt": tomorrow_by_adding_one(month_end), "payValidTm": "235959"}
    rows.append(("java-tomorrow-at-month-end", signed({**base(f"{ref}-java"), **valid}), "9510"))
    return [pytest.param(form, code, id=name) for name, form, code in rows]


@pytest.mark.parametrize(("form", "code"), cases())
async def test_sdk_registration(simulator: Process, form: dict[str, str], code: str) -> None:
    async with simulator.client() as client:
        response = await client.post(REGISTER, data=form)
    assert response.status_code == 200
    answer = response.json()
    assert answer["resultCd"] == code, answer
    if code == "0000":
        assert answer["amount"] == form["amt"] and answer["payNo"]
    else:
        assert set(answer) == {"resultCd", "resultMsg"}
