"""The NICEPAY V1 CVS simulator: endpoints, in-memory ledger, till pushes and fault switches.

Protocol facts come from /work/shared/nicepay/REFERENCE.md §1-5; tokens, codes and WIB time
come from `app.nicepay` so the simulator and the service cannot drift apart on the wire format.
Everything lives in one `SimulatorState` (`app.state.sim`), which tests drive in-process or over
the `/sim/...` control routes.
"""

import asyncio
import itertools
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from http import HTTPStatus
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import httpx
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY
from app.nicepay.codes import (
    CURRENCY,
    MITRA_CODES,
    NOTIFICATION_USER_AGENT,
    PAY_METHOD_CVS,
    InquiryStatus,
    MatchCl,
    NotificationStatus,
    ResultCode,
    is_numeric,
)
from app.nicepay.tokens import reference_token, tokens_equal, txid_token
from app.nicepay.wib import from_wib_fields, now_utc, to_wib_fields

EndpointName = Literal["onePass.do", "onePassStatus.do", "onePassAllCancel.do"]
REGISTER: EndpointName = "onePass.do"
INQUIRY: EndpointName = "onePassStatus.do"
CANCEL: EndpointName = "onePassAllCancel.do"
ENDPOINTS: tuple[EndpointName, ...] = (REGISTER, INQUIRY, CANCEL)

# Codes app.nicepay.codes has no name for (REFERENCE.md §5.1).
UNDEFINED_AMOUNT = "9007"
PAY_METHOD_NOT_ACTIVE = "9012"
UNDEFINED_CURRENCY = "9013"
UNDEFINED_CALLBACK_URL = "9019"
UNDEFINED_BILLING_CITY = "9025"
UNDEFINED_BILLING_STATE = "9026"
UNDEFINED_BILLING_POST_CD = "9027"
UNDEFINED_BILLING_COUNTRY = "9028"
REFERENCE_TOO_LONG = "9507"
AMOUNT_TOO_SMALL = "9509"
INVALID_CANCEL_TYPE = "9301"
EXPIRY_LENGTH = "9511"

# NICEPAY's own default depends on the merchant (REFERENCE.md §1.2); 24 h is the common choice.
DEFAULT_VALIDITY = timedelta(hours=24)
PUSH_TIMEOUT_SECONDS = 10.0

Form = dict[str, str]
Answer = dict[str, str | None]
PushResult = tuple[int, str]

# What a push carries: "full", the fields of NICEPAY's current CVS pages
# (source-docs/cvs-notification.txt), or "short", the V1 PDF's (v1.13 §3.3: tXid,
# referenceNo, amt, merchantToken and nothing else, no status). Where: the form body, or the
# query string of a POST with no body (the PDF's example URL; REFERENCE.md §4.1).
PushShape = Literal["full", "short"]
PushCarrier = Literal["body", "query"]
SHORT_PUSH_FIELDS = ("tXid", "referenceNo", "amt", "merchantToken")


class Faults(BaseModel):
    """Deliberate misbehaviour. PUT /sim/faults replaces it wholesale; omitted fields reset."""

    model_config = ConfigDict(extra="forbid")

    delay_seconds: float = Field(default=0.0, ge=0)
    http_status: int | None = Field(default=None, ge=400, le=599)
    length_prefix: bool = False
    garbage: bool = False
    push_copies: int = Field(default=1, ge=1, le=20)
    endpoints: list[EndpointName] | None = None  # None: every NICEPAY endpoint

    def applies_to(self, endpoint: EndpointName) -> bool:
        return self.endpoints is None or endpoint in self.endpoints


class Lifecycle(StrEnum):
    UNPAID = "unpaid"
    READY = "ready"
    PAID = "paid"
    REVERSED = "reversed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


_STATUS: dict[Lifecycle, str] = {
    Lifecycle.UNPAID: str(int(InquiryStatus.UNPAID)),
    Lifecycle.READY: str(int(InquiryStatus.READY_TO_COMMIT)),
    Lifecycle.PAID: str(int(InquiryStatus.PAID)),
    # NICEPAY documents no CVS inquiry status for a reversal (REFERENCE.md §2.3); "1" is the
    # VA/notification meaning of reversal, so the simulator answers that. An assumption.
    Lifecycle.REVERSED: "1",
    Lifecycle.EXPIRED: str(int(InquiryStatus.EXPIRED)),
    Lifecycle.CANCELLED: str(int(InquiryStatus.EXPIRED)),  # 4 = expired or cancelled unpaid
}


@dataclass
class SimTransaction:
    """One registered payment code, as NICEPAY would keep it."""

    txid: str
    reference_no: str
    amt: str
    mitra_cd: str
    pay_no: str
    goods_nm: str
    billing_nm: str
    description: str
    callback_url: str
    db_process_url: str
    registered_at: datetime
    req_dt: str
    req_tm: str
    valid_until: datetime
    request: Form = field(default_factory=dict)  # the onePass.do form, without merchantToken
    lifecycle: Lifecycle = Lifecycle.UNPAID
    deposited_at: datetime | None = None
    cancel_txid: str | None = None
    cancel_request: Form | None = None  # the accepted onePassAllCancel.do form, no token

    def status(self, now: datetime) -> str:
        """The inquiry `status`: an unpaid code past its expiry reads as expired by itself."""
        if self.lifecycle is Lifecycle.UNPAID and now >= self.valid_until:
            return _STATUS[Lifecycle.EXPIRED]
        return _STATUS[self.lifecycle]

    def fields(self, now: datetime) -> Answer:
        """The transaction fields of an inquiry answer (REFERENCE.md §2.2)."""
        trans_dt, trans_tm = to_wib_fields(self.registered_at)
        valid_dt, valid_tm = to_wib_fields(self.valid_until)
        # Deposit fields only while paid: a reversed payment no longer counts as deposited.
        deposited = self.deposited_at if self.lifecycle is Lifecycle.PAID else None
        deposit_dt, deposit_tm = to_wib_fields(deposited) if deposited else (None, None)
        return {
            "tXid": self.txid,
            "referenceNo": self.reference_no,
            "payMethod": PAY_METHOD_CVS,
            "amt": self.amt,
            "currency": CURRENCY,
            "goodsNm": self.goods_nm,
            "billingNm": self.billing_nm,
            "mitraCd": self.mitra_cd,
            "payNo": self.pay_no,
            "payValidDt": valid_dt,
            "payValidTm": valid_tm,
            "transDt": trans_dt,
            "transTm": trans_tm,
            "reqDt": self.req_dt,
            "reqTm": self.req_tm,
            "depositDt": deposit_dt,
            "depositTm": deposit_tm,
            "cancelAmt": self.amt if self.lifecycle is Lifecycle.CANCELLED else None,
            "status": self.status(now),
        }


# resultMsg per resultCd, worded after NICEPAY's code table (REFERENCE.md §5.1).
MESSAGES: dict[str, str] = {
    ResultCode.INVALID_MID: "Invalid MID, merchant not registered",
    UNDEFINED_AMOUNT: "Undefined amt",
    ResultCode.INVALID_AMOUNT: "Amount should only number and do not includes decimal",
    ResultCode.INVALID_TOKEN: "Invalid Merchant Token",
    ResultCode.UNDEFINED_REFERENCE: "Undefined referenceNo",
    ResultCode.UNDEFINED_GOODS: "Undefined goodsNm",
    ResultCode.UNDEFINED_BILLING_NAME: "Undefined billingNm",
    ResultCode.UNDEFINED_BILLING_PHONE: "Undefined or invalid billingPhone",
    ResultCode.UNDEFINED_BILLING_EMAIL: "Undefined billingEmail",
    ResultCode.UNDEFINED_DB_PROCESS_URL: "Undefined dbProcessUrl",
    ResultCode.UNDEFINED_USER_IP: "Undefined userIP",
    UNDEFINED_CURRENCY: "Undefined currency",
    UNDEFINED_CALLBACK_URL: "Undefined callbackUrl",
    UNDEFINED_BILLING_CITY: "Undefined billingCity",
    UNDEFINED_BILLING_STATE: "Undefined billingState",
    UNDEFINED_BILLING_POST_CD: "Undefined or invalid billingPostCd",
    UNDEFINED_BILLING_COUNTRY: "Undefined billingCountry",
    PAY_METHOD_NOT_ACTIVE: "This Payment method is currently not activated",
    REFERENCE_TOO_LONG: "referenceNo is longer than 40",
    AMOUNT_TOO_SMALL: "Payment amount is too small",
    INVALID_CANCEL_TYPE: "Invalid cancel type",
    ResultCode.FAILED_TO_REGISTER: "Failed to register your order",
    ResultCode.INVALID_CART: "Invalid cartData format",
    ResultCode.CART_TOTAL_MISMATCH: "amt is not equal to cartData total",
    ResultCode.MITRA_NOT_CONTRACTED: "Mitra code is not contracted",
    EXPIRY_LENGTH: "Invalid expiry date or time length",
    ResultCode.INVALID_EXPIRY: "Invalid expiry date or time",
    ResultCode.DUPLICATE_REFERENCE: "Reference Number already exist",
    ResultCode.TRANSACTION_NOT_FOUND: "Transaction not found",
    ResultCode.DEPOSIT_COMPLETED: "Deposit has been completed, can not be canceled",
    ResultCode.CANNOT_CANCEL: "Can not cancel your request transaction number",
}


class _Rejected(Exception):
    """A business error: NICEPAY still answers HTTP 200, with only resultCd and resultMsg."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        super().__init__(code)
        message = MESSAGES[code] + (f" ({detail})" if detail else "")
        self.answer: Answer = {"resultCd": str(code), "resultMsg": message}


def _ok(fields: Answer) -> Answer:
    return {"resultCd": ResultCode.SUCCESS.value, "resultMsg": "SUCCESS", **fields}


# Checked in this order after iMid, amt and token (REFERENCE.md §5.1 codes 9013-9028; §9:
# NICEPAY refuses an empty billingCity/State/PostCd/Country although one table calls them
# optional). NICEPAY documents no order among them; the codes' order is the simulator's.
_REQUIRED: tuple[tuple[str, str], ...] = (
    ("currency", UNDEFINED_CURRENCY),  # also: IDR only
    ("referenceNo", ResultCode.UNDEFINED_REFERENCE),
    ("goodsNm", ResultCode.UNDEFINED_GOODS),
    ("billingNm", ResultCode.UNDEFINED_BILLING_NAME),
    ("billingPhone", ResultCode.UNDEFINED_BILLING_PHONE),  # also: digits only
    ("billingEmail", ResultCode.UNDEFINED_BILLING_EMAIL),
    ("callBackUrl", UNDEFINED_CALLBACK_URL),
    ("dbProcessUrl", ResultCode.UNDEFINED_DB_PROCESS_URL),
    ("userIP", ResultCode.UNDEFINED_USER_IP),
    ("billingCity", UNDEFINED_BILLING_CITY),
    ("billingState", UNDEFINED_BILLING_STATE),
    ("billingPostCd", UNDEFINED_BILLING_POST_CD),  # also: digits only
    ("billingCountry", UNDEFINED_BILLING_COUNTRY),
)
_NUMERIC = frozenset({"billingPhone", "billingPostCd"})

# Sizes of REFERENCE.md §1.2 (NICEPAY's tables). NICEPAY names a code only for referenceNo
# (9507, checked on its own); for the others the simulator answers the generic 9001 and names
# the field. userIP (AN 15) is left out: an IPv6 address is longer, and what NICEPAY does
# with one is not documented (a question for NICEPAY, README).
_SIZES: dict[str, int] = {
    "goodsNm": 100,
    "billingNm": 30,
    "billingPhone": 15,
    "billingEmail": 40,
    "billingAddr": 100,
    "billingCity": 50,
    "billingState": 50,
    "billingPostCd": 10,
    "billingCountry": 10,
    "deliveryNm": 30,
    "deliveryPhone": 15,
    "deliveryAddr": 100,
    "deliveryCity": 50,
    "deliveryState": 50,
    "deliveryPostCd": 10,
    "deliveryCountry": 10,
    "callBackUrl": 255,
    "dbProcessUrl": 255,
    "description": 100,
    "cartData": 4000,
}


class SimulatorState:
    """The simulated NICEPAY: configuration, ledger, call counts, faults and the push client."""

    def __init__(
        self,
        *,
        imid: str,
        merchant_key: str,
        push_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.imid = imid
        self.merchant_key = merchant_key
        self.push_transport = push_transport
        self.clock: Callable[[], datetime] = now_utc  # tests may swap in a fake clock
        self.faults = Faults()
        self.enabled_mitra: set[str] = set(MITRA_CODES.values())
        self.transactions: dict[str, SimTransaction] = {}
        self.calls: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self._sequence = itertools.count(1)
        self._random = random.Random()

    def reset(self) -> None:
        """Forget everything; `calls` and `transactions` are cleared in place for held references."""
        self.faults = Faults()
        self.enabled_mitra = set(MITRA_CODES.values())
        self.transactions.clear()
        self.calls.update(dict.fromkeys(ENDPOINTS, 0))

    def find(self, reference_no: str | None = None) -> list[SimTransaction]:
        return [
            tx
            for tx in self.transactions.values()
            if reference_no is None or tx.reference_no == reference_no
        ]

    def answer(self, endpoint: EndpointName, form: Form) -> Answer:
        """One NICEPAY call, business errors included (they are answers, not exceptions)."""
        handler = {REGISTER: self.register, INQUIRY: self.inquire, CANCEL: self.cancel}[endpoint]
        try:
            return handler(form)
        except _Rejected as rejected:
            return rejected.answer

    # -- NICEPAY endpoints ---------------------------------------------------------------

    def register(self, form: Form) -> Answer:
        imid = self._check_imid(form)
        amt = form.get("amt", "")
        if not amt:
            raise _Rejected(UNDEFINED_AMOUNT)
        if not is_numeric(amt):
            raise _Rejected(ResultCode.INVALID_AMOUNT)
        reference_no = form.get("referenceNo", "")
        self._check_token(reference_token(imid, reference_no, amt, self.merchant_key), form)
        for name, code in _REQUIRED:
            value = form.get(name, "")
            if not value or (name in _NUMERIC and not is_numeric(value)):
                raise _Rejected(code)
        if form["currency"] != CURRENCY:
            raise _Rejected(UNDEFINED_CURRENCY)
        if int(amt) < 1:  # NICEPAY documents no minimum; nothing is certainly too small
            raise _Rejected(AMOUNT_TOO_SMALL)
        if form.get("payMethod") != PAY_METHOD_CVS:
            raise _Rejected(PAY_METHOD_NOT_ACTIVE)
        if len(reference_no) > 40:
            raise _Rejected(REFERENCE_TOO_LONG)
        for name, size in _SIZES.items():
            if len(form.get(name, "")) > size:
                raise _Rejected(ResultCode.FAILED_TO_REGISTER, f"{name} is longer than {size}")
        self._check_cart(form.get("cartData") or "{}", int(amt))
        mitra_cd = form.get("mitraCd", "")
        if mitra_cd not in MITRA_CODES.values() or mitra_cd not in self.enabled_mitra:
            raise _Rejected(ResultCode.MITRA_NOT_CONTRACTED)
        now = self.clock()
        valid_until = self._valid_until(form, now)
        if self.find(reference_no):
            raise _Rejected(ResultCode.DUPLICATE_REFERENCE)

        trans_dt, trans_tm = to_wib_fields(now)
        tx = SimTransaction(
            txid=self._new_txid(now),
            reference_no=reference_no,
            amt=amt,
            mitra_cd=mitra_cd,
            pay_no=self._new_pay_no(),
            goods_nm=form["goodsNm"],
            billing_nm=form["billingNm"],
            description=form.get("description", ""),
            callback_url=form.get("callBackUrl", ""),
            db_process_url=form["dbProcessUrl"],
            registered_at=now,
            req_dt=form.get("reqDt") or trans_dt,
            req_tm=form.get("reqTm") or trans_tm,
            valid_until=valid_until,
            request={k: v for k, v in form.items() if k != "merchantToken"},
        )
        self.transactions[tx.txid] = tx
        valid_dt, valid_tm = to_wib_fields(valid_until)
        return _ok(
            {
                "tXid": tx.txid,
                "referenceNo": reference_no,
                "payMethod": PAY_METHOD_CVS,
                "amount": amt,  # V1 registration says `amount`; inquiry and cancel say `amt`
                "currency": CURRENCY,
                "goodsNm": tx.goods_nm,
                "billingNm": tx.billing_nm,
                "transDt": trans_dt,
                "transTm": trans_tm,
                "description": tx.description,
                "callbackUrl": tx.callback_url,
                "mitraCd": mitra_cd,
                "payNo": tx.pay_no,
                "payValidDt": valid_dt,
                "payValidTm": valid_tm,
            }
        )

    def inquire(self, form: Form) -> Answer:
        imid = self._check_imid(form)
        reference_no, amt = form.get("referenceNo", ""), form.get("amt", "")
        self._check_token(reference_token(imid, reference_no, amt, self.merchant_key), form)
        tx = self.transactions.get(form.get("tXid", ""))
        if tx is None or tx.reference_no != reference_no or tx.amt != amt:
            raise _Rejected(ResultCode.TRANSACTION_NOT_FOUND)
        return _ok({"iMid": imid, **tx.fields(self.clock())})

    def cancel(self, form: Form) -> Answer:
        imid = self._check_imid(form)
        txid, amt = form.get("tXid", ""), form.get("amt", "")
        self._check_token(txid_token(imid, txid, amt, self.merchant_key), form)
        # cancelType: 1 full, 2 partial (REFERENCE.md §3); a CVS code is cancelled in full.
        if form.get("cancelType") not in ("1", "2"):
            raise _Rejected(INVALID_CANCEL_TYPE)
        tx = self.transactions.get(txid)
        if tx is None or tx.amt != amt:
            raise _Rejected(ResultCode.TRANSACTION_NOT_FOUND)
        now = self.clock()
        status = tx.status(now)
        if status == _STATUS[Lifecycle.PAID]:
            # A paid CVS code is refunded by hand, never through the API (REFERENCE.md §3).
            raise _Rejected(ResultCode.DEPOSIT_COMPLETED)
        if status not in (_STATUS[Lifecycle.UNPAID], _STATUS[Lifecycle.READY]):
            raise _Rejected(ResultCode.CANNOT_CANCEL)
        tx.lifecycle = Lifecycle.CANCELLED
        tx.cancel_txid = self._new_txid(now)
        tx.cancel_request = {k: v for k, v in form.items() if k != "merchantToken"}
        cancel_dt, cancel_tm = to_wib_fields(now)
        return _ok(
            {
                "tXid": tx.txid,
                "referenceNo": tx.reference_no,
                # `amount`, as in the V1 PDF's cancel answer (§3.5) and GH-CANCEL's sample
                # (REFERENCE.md §3, §9); the inquiry says `amt`.
                "amount": tx.amt,
                "canceltXid": tx.cancel_txid,
                "transDt": cancel_dt,
                "transTm": cancel_tm,
            }
        )

    # -- the till --------------------------------------------------------------------------

    async def pay(
        self,
        txid: str,
        *,
        copies: int | None = None,
        amt: str | None = None,
        shape: PushShape = "full",
        carrier: PushCarrier = "body",
    ) -> list[PushResult]:
        """Customer pays: status 0 first (so an inquiry made by the push handler sees it), then push."""
        tx = self._mark(txid, Lifecycle.PAID)
        return await self._push(
            tx, NotificationStatus.DEPOSIT, copies=copies, amt=amt, shape=shape, carrier=carrier
        )

    async def reverse(self, txid: str, *, copies: int | None = None) -> list[PushResult]:
        tx = self._mark(txid, Lifecycle.REVERSED)
        return await self._push(tx, NotificationStatus.REVERSAL, copies=copies, amt=None)

    async def settle_silently(self, txid: str) -> SimTransaction:
        """Paid, but the push got lost: only an inquiry can find out."""
        return self._mark(txid, Lifecycle.PAID)

    async def expire(self, txid: str) -> SimTransaction:
        return self._mark(txid, Lifecycle.EXPIRED)

    async def ready(self, txid: str) -> SimTransaction:
        return self._mark(txid, Lifecycle.READY)

    def _mark(self, txid: str, lifecycle: Lifecycle) -> SimTransaction:
        tx = self.transactions[txid]  # KeyError for an unknown tXid
        tx.lifecycle = lifecycle
        if lifecycle is Lifecycle.PAID:
            tx.deposited_at = self.clock()
        return tx

    def notification_form(
        self,
        tx: SimTransaction,
        status: NotificationStatus,
        amt: str | None = None,
        shape: PushShape = "full",
    ) -> Form:
        """The dbProcessUrl form, fields as in NICEPAY's CVS sample (source-docs/cvs-notification)
        or, `short`, the V1 PDF's four fields. No iMid: no official sample carries one; and
        transDt/transTm are the deposit's, as NICEPAY's pages say (REFERENCE.md §4.2, §9)."""
        amt = tx.amt if amt is None else amt
        valid_dt, valid_tm = to_wib_fields(tx.valid_until)
        deposit_dt, deposit_tm = to_wib_fields(tx.deposited_at or self.clock())
        token = txid_token(self.imid, tx.txid, amt, self.merchant_key)
        if shape == "short":
            short = {"tXid": tx.txid, "referenceNo": tx.reference_no, "amt": amt}
            return {**short, "merchantToken": token}
        return {
            "tXid": tx.txid,
            "merchantToken": token,
            "referenceNo": tx.reference_no,
            "mitraCd": tx.mitra_cd,
            "payMethod": PAY_METHOD_CVS,
            "payNo": tx.pay_no,
            "payValidDt": valid_dt,
            "payValidTm": valid_tm,
            "amt": amt,
            "transDt": deposit_dt,
            "transTm": deposit_tm,
            "depositDt": deposit_dt,
            "depositTm": deposit_tm,
            "currency": CURRENCY,
            "goodsNm": tx.goods_nm,
            "billingNm": tx.billing_nm,
            "matchCl": MatchCl.MATCH.value,
            "status": str(int(status)),
            "instmntType": "1",
            "instmntMon": "1",
        }

    async def _push(
        self,
        tx: SimTransaction,
        status: NotificationStatus,
        *,
        copies: int | None,
        amt: str | None,
        shape: PushShape = "full",
        carrier: PushCarrier = "body",
    ) -> list[PushResult]:
        form = self.notification_form(tx, status, amt, shape)
        count = self.faults.push_copies if copies is None else copies
        async with httpx.AsyncClient(
            transport=self.push_transport,
            timeout=PUSH_TIMEOUT_SECONDS,
            headers={"User-Agent": NOTIFICATION_USER_AGENT},
        ) as client:
            # Concurrent on purpose: duplicate pushes must really race in the service.
            sends = (_send(client, tx.db_process_url, form, carrier) for _ in range(count))
            return list(await asyncio.gather(*sends))

    # -- helpers ---------------------------------------------------------------------------

    def _check_imid(self, form: Form) -> str:
        imid = form.get("iMid", "")
        if imid != self.imid:
            raise _Rejected(ResultCode.INVALID_MID)
        return imid

    @staticmethod
    def _check_token(expected: str, form: Form) -> None:
        if not tokens_equal(expected, form.get("merchantToken", "")):
            raise _Rejected(ResultCode.INVALID_TOKEN)

    @staticmethod
    def _check_cart(cart_data: str, amt: int) -> None:
        try:
            cart = json.loads(cart_data)
            items = cart.get("item") if isinstance(cart, dict) else None
            if not isinstance(cart, dict) or not isinstance(items, list | None):
                raise ValueError("cartData is not an object with an item list")
            total = sum(int(item["goods_amt"]) for item in items or [])
        except (ValueError, TypeError, KeyError):
            raise _Rejected(ResultCode.INVALID_CART) from None
        if items and total != amt:
            raise _Rejected(ResultCode.CART_TOTAL_MISMATCH)

    @staticmethod
    def _valid_until(form: Form, now: datetime) -> datetime:
        valid_dt, valid_tm = form.get("payValidDt", ""), form.get("payValidTm", "")
        if not valid_dt and not valid_tm:
            return now + DEFAULT_VALIDITY
        if len(valid_dt) != 8 or len(valid_tm) != 6:
            raise _Rejected(EXPIRY_LENGTH)
        # Letters of the right length are 9510, as NICEPAY's code table says (REFERENCE.md §5.1).
        moment = from_wib_fields(valid_dt, valid_tm) if is_numeric(valid_dt + valid_tm) else None
        if moment is None or moment <= now:
            raise _Rejected(ResultCode.INVALID_EXPIRY)
        return moment

    def _new_txid(self, now: datetime) -> str:
        wib_dt, wib_tm = to_wib_fields(now)
        return f"{self.imid}{PAY_METHOD_CVS}{wib_dt}{wib_tm}{next(self._sequence) % 10_000:04d}"

    def _new_pay_no(self) -> str:
        # Always a leading zero, like NICEPAY's sample "011108471311": clients must keep it a string.
        taken = {tx.pay_no for tx in self.transactions.values()}
        while (pay_no := f"0{self._random.randrange(10**11):011d}") in taken:
            pass
        return pay_no


async def _send(
    client: httpx.AsyncClient, url: str, form: Form, carrier: PushCarrier = "body"
) -> PushResult:
    try:
        if carrier == "query":
            response = await client.post(url, params=form)
        else:
            response = await client.post(url, data=form)
    except httpx.HTTPError as exc:
        return 0, f"{type(exc).__name__}: {exc}"  # 0: no HTTP answer at all
    return response.status_code, response.text


def get_state(app: FastAPI) -> SimulatorState:
    """`app.state.sim`, typed."""
    state = app.state.sim
    if not isinstance(state, SimulatorState):
        raise TypeError("not a simulator app")
    return state


def _view(tx: SimTransaction, now: datetime) -> dict[str, Any]:
    return {
        **tx.fields(now),
        "lifecycle": tx.lifecycle.value,
        "dbProcessUrl": tx.db_process_url,
        "canceltXid": tx.cancel_txid,
        "request": tx.request,
        "cancelRequest": tx.cancel_request,
    }


def _pushes(results: list[PushResult]) -> dict[str, list[dict[str, Any]]]:
    return {"pushes": [{"status_code": code, "body": body} for code, body in results]}


def _nicepay_route(
    sim: SimulatorState, endpoint: EndpointName
) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        sim.calls[endpoint] += 1
        form = dict(
            parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        )
        faults = sim.faults if sim.faults.applies_to(endpoint) else Faults()
        broken = faults.http_status is not None or faults.garbage
        # The work happens before the delay: a caller that times out may still have registered,
        # which is exactly the case a retry must survive (9009 on the second attempt).
        answer = None if broken else sim.answer(endpoint, form)
        if faults.delay_seconds:
            await asyncio.sleep(faults.delay_seconds)
        if faults.http_status is not None:
            phrase = HTTPStatus(faults.http_status).phrase
            page = f"<html><body><h1>{faults.http_status} {phrase}</h1></body></html>"
            return HTMLResponse(page, status_code=faults.http_status)
        if answer is None:
            return HTMLResponse("<html>maintenance</html>")
        text = json.dumps(answer, separators=(",", ":"))
        if faults.length_prefix:
            text = f"{len(text.encode()):04d}{text}"  # REFERENCE.md §5.3
        return Response(text, media_type="application/json")

    return route


def create_simulator(
    *,
    imid: str = SANDBOX_IMID,
    merchant_key: str = SANDBOX_MERCHANT_KEY,
    push_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    sim = SimulatorState(imid=imid, merchant_key=merchant_key, push_transport=push_transport)
    app = FastAPI(title="NICEPAY V1 CVS simulator")
    app.state.sim = sim
    for endpoint in ENDPOINTS:
        app.add_api_route(
            f"/nicepay/api/{endpoint}", _nicepay_route(sim, endpoint), methods=["POST"]
        )

    def known(txid: str) -> SimTransaction:
        if txid not in sim.transactions:
            raise HTTPException(404, f"unknown tXid {txid}")
        return sim.transactions[txid]

    @app.get("/sim/faults")
    async def get_faults() -> Faults:
        return sim.faults

    @app.put("/sim/faults")
    async def put_faults(faults: Faults) -> Faults:
        sim.faults = faults
        return faults

    @app.put("/sim/mitra")
    async def put_mitra(codes: list[str]) -> list[str]:
        unknown = set(codes) - set(MITRA_CODES.values())
        if unknown:
            raise HTTPException(422, f"unknown mitraCd {sorted(unknown)}")
        sim.enabled_mitra = set(codes)
        return sorted(sim.enabled_mitra)

    @app.post("/sim/reset")
    async def reset() -> dict[str, bool]:
        sim.reset()
        return {"reset": True}

    @app.get("/sim/stats")
    async def stats() -> dict[str, int]:
        return sim.calls

    @app.get("/sim/transactions")
    async def transactions(reference_no: str | None = None) -> list[dict[str, Any]]:
        now = sim.clock()
        return [_view(tx, now) for tx in sim.find(reference_no)]

    @app.get("/sim/transactions/{txid}")
    async def transaction(txid: str) -> dict[str, Any]:
        return _view(known(txid), sim.clock())

    @app.post("/sim/transactions/{txid}/pay")
    async def pay(
        txid: str,
        copies: Annotated[int | None, Query(ge=0, le=20)] = None,
        amt: str | None = None,
        shape: PushShape = "full",
        carrier: PushCarrier = "body",
    ) -> dict[str, list[dict[str, Any]]]:
        known(txid)
        pushes = await sim.pay(txid, copies=copies, amt=amt, shape=shape, carrier=carrier)
        return _pushes(pushes)

    @app.post("/sim/transactions/{txid}/reverse")
    async def reverse(
        txid: str, copies: Annotated[int | None, Query(ge=0, le=20)] = None
    ) -> dict[str, list[dict[str, Any]]]:
        known(txid)
        return _pushes(await sim.reverse(txid, copies=copies))

    @app.post("/sim/transactions/{txid}/settle")
    async def settle(txid: str) -> dict[str, Any]:
        return _view(await sim.settle_silently(known(txid).txid), sim.clock())

    @app.post("/sim/transactions/{txid}/expire")
    async def expire(txid: str) -> dict[str, Any]:
        return _view(await sim.expire(known(txid).txid), sim.clock())

    @app.post("/sim/transactions/{txid}/ready")
    async def ready(txid: str) -> dict[str, Any]:
        return _view(await sim.ready(known(txid).txid), sim.clock())

    return app
