"""The dbProcessUrl under attack: forged tokens, replays, spoofed and malformed
X-Forwarded-For, oversized and malformed bodies, wrong content types, SQL-ish and unicode
garbage in every field. Each request gets its documented answer and exactly one ledger
row; nothing unproven is applied; no raw token reaches the ledger. SQLite and PostgreSQL.
"""

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY
from app.models import Notification, PaymentEvent
from app.nicepay.codes import NotificationStatus
from app.nicepay.tokens import reference_token, txid_token
from tests.conftest import NICEPAY_IP, Stack, StackFactory
from tests.procs import RAW_TOKENS

URL = "/api/v1/nicepay/notifications"
FORM = "application/x-www-form-urlencoded"
LIMIT = 16_384  # NOTIFICATION_MAX_BODY_BYTES default
STRANGER = "198.51.100.66"
PROXY = "10.1.2.3"

# What may answer a push that must not be applied (API.md): refused, malformed, or recorded
# and set aside for review.
NOT_APPLIED = {(400, "rejected"), (403, "rejected"), (413, "rejected"), (200, "quarantined")}


class Till:
    """A registered payment that NICEPAY knows is paid, and its genuine deposit push."""

    def __init__(self, payment: dict[str, Any], form: dict[str, str]) -> None:
        self.payment = payment
        self.form = form

    @property
    def reference_no(self) -> str:
        return str(self.payment["reference_no"])


async def paid_at_till(stack: Stack) -> Till:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    tx = stack.sim.transactions[payment["txid"]]
    form = stack.sim.notification_form(tx, NotificationStatus.DEPOSIT)
    RAW_TOKENS.add(form["merchantToken"])
    return Till(payment, form)


def signed(form: dict[str, str], key: str = SANDBOX_MERCHANT_KEY) -> dict[str, str]:
    """The form with a merchantToken made over its own tXid and amt (valid with `key`)."""
    token = txid_token(SANDBOX_IMID, form.get("tXid", ""), form.get("amt", ""), key)
    RAW_TOKENS.add(token)
    return {**form, "merchantToken": token}


async def post(stack: Stack, *, ip: str = NICEPAY_IP, **kwargs: Any) -> httpx.Response:
    async with stack.nicepay(ip) as nicepay:
        return await nicepay.post(URL, **kwargs)


async def ledger(stack: Stack) -> list[Notification]:
    async with stack.services.sessions() as session:
        return list(await session.scalars(select(Notification).order_by(Notification.id)))


async def event_types(stack: Stack) -> list[str]:
    async with stack.services.sessions() as session:
        return list(await session.scalars(select(PaymentEvent.type).order_by(PaymentEvent.id)))


async def one_new_row(stack: Stack, before: int, response: httpx.Response) -> Notification:
    """Exactly one ledger row was written for `response`, and it tells the same story."""
    rows = await ledger(stack)
    assert len(rows) == before + 1, f"{len(rows) - before} ledger rows for one request"
    row = rows[-1]
    assert row.http_status == response.status_code
    assert_no_raw_token(row)
    return row


def assert_no_raw_token(row: Notification) -> None:
    """The ledger keeps a digest of the token, never the token or the key."""
    assert "merchantToken" not in row.fields
    stored = json.dumps(
        {c.name: getattr(row, c.name) for c in Notification.__table__.columns}, default=str
    )
    assert SANDBOX_MERCHANT_KEY not in stored
    assert not [token for token in RAW_TOKENS if token in stored]


async def assert_nothing_applied(stack: Stack, till: Till) -> None:
    resource = await stack.payment(till.reference_no)
    assert resource["status"] == "pending"
    assert [e["type"] for e in resource["events"] if e["type"] != "quarantined"] == ["registered"]
    assert "applied" not in {row.outcome for row in await ledger(stack)}


@pytest.fixture
async def proxied(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    """The service behind a reverse proxy on 10.0.0.0/8."""
    async with stack_factory(trusted_proxies=["10.0.0.0/8"]) as stack:
        yield stack


# --- forged tokens ------------------------------------------------------------------------


def _forgeries(form: dict[str, str]) -> dict[str, str]:
    txid, amt, reference_no = form["tXid"], form["amt"], form["referenceNo"]
    genuine = form["merchantToken"]
    return {
        "another merchant's key": txid_token(SANDBOX_IMID, txid, amt, "someone-elses-key"),
        "another tXid": txid_token(SANDBOX_IMID, txid[:-4] + "9999", amt, SANDBOX_MERCHANT_KEY),
        "another amount": txid_token(SANDBOX_IMID, txid, int(amt) + 1, SANDBOX_MERCHANT_KEY),
        "registration formula": reference_token(
            SANDBOX_IMID, reference_no, amt, SANDBOX_MERCHANT_KEY
        ),
        "truncated": genuine[:-1],
        "extended": genuine + "0",
        "upper case": genuine.upper(),
        "key itself": SANDBOX_MERCHANT_KEY,
        "sql": "' OR '1'='1' --",
    }


async def test_forged_tokens_are_refused_and_recorded(stack: Stack) -> None:
    till = await paid_at_till(stack)
    for name, token in _forgeries(till.form).items():
        RAW_TOKENS.add(token)  # a forged token must not be logged either
        before = len(await ledger(stack))
        response = await post(stack, data={**till.form, "merchantToken": token})
        answer = (response.status_code, response.json()["detail"])
        assert answer == (403, "merchantToken invalid"), name
        row = await one_new_row(stack, before, response)
        assert (row.outcome, row.checks.get("token")) == ("rejected", "fail"), name
        assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest(), name
    await assert_nothing_applied(stack, till)


# --- replays ---------------------------------------------------------------------------------


async def test_replays_after_a_reversal_change_nothing(stack: Stack) -> None:
    till = await paid_at_till(stack)
    txid = till.payment["txid"]
    assert await stack.sim.pay(txid) == [(200, "OK")]
    assert await stack.sim.reverse(txid) == [(200, "OK")]
    reversal = stack.sim.notification_form(
        stack.sim.transactions[txid], NotificationStatus.REVERSAL
    )
    RAW_TOKENS.add(reversal["merchantToken"])
    before = len(await ledger(stack))

    # The captured deposit, replayed as body and as query string, and the reversal again.
    replays: list[dict[str, Any]] = [{"data": till.form}, {"params": till.form}, {"data": reversal}]
    outcomes = []
    for replay in replays:
        response = await post(stack, **replay)
        assert (response.status_code, response.text) == (200, "OK")
        outcomes.append((await one_new_row(stack, before, response)).outcome)
        before += 1

    assert outcomes == ["quarantined", "quarantined", "duplicate"]
    resource = await stack.payment(till.reference_no)
    assert resource["status"] == "reversed"
    # The same captured push, twice: set aside once (one event, one webhook), ledgered twice.
    assert [e["type"] for e in resource["events"]] == [
        "registered",
        "paid",
        "reversed",
        "quarantined",
    ]


# --- who is asking: X-Forwarded-For and friends ----------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Forwarded-For", NICEPAY_IP)],
        [("X-Forwarded-For", NICEPAY_IP), ("X-Forwarded-For", NICEPAY_IP)],
        [("Forwarded", f"for={NICEPAY_IP}")],
        [("X-Real-IP", NICEPAY_IP)],
        [("True-Client-IP", NICEPAY_IP)],
        [("X-Forwarded-For", f"{NICEPAY_IP}, {NICEPAY_IP}"), ("X-Real-IP", NICEPAY_IP)],
    ],
    ids=["xff", "xff-twice", "forwarded", "x-real-ip", "true-client-ip", "all"],
)
async def test_headers_cannot_choose_the_client_ip(
    stack: Stack, headers: list[tuple[str, str]]
) -> None:
    till = await paid_at_till(stack)
    response = await post(stack, ip=STRANGER, data=till.form, headers=headers)
    assert (response.status_code, response.json()["detail"]) == (403, "source IP not allowed")
    row = await one_new_row(stack, 0, response)
    assert (row.peer_ip, row.client_ip, row.checks) == (STRANGER, STRANGER, {"ip": "fail"})
    await assert_nothing_applied(stack, till)


@pytest.mark.parametrize(
    ("forwarded_for", "client_ip"),
    [
        (None, PROXY),  # the proxy itself is not NICEPAY
        ("", None),
        ("not-an-ip", None),
        ("999.20.51.10", None),
        (f"{NICEPAY_IP}, garbage", None),
        (f"{NICEPAY_IP};drop table notifications", None),
        ("103.20.51.10\u200b", None),  # a zero-width space
        ("[::1", None),
        (f"{NICEPAY_IP}, 198.51.100.9", "198.51.100.9"),  # the spoof a client prepends
        (", ".join([NICEPAY_IP] * 500 + ["198.51.100.9"]), "198.51.100.9"),
    ],
    ids=[
        "absent",
        "empty",
        "word",
        "bad-octet",
        "garbage-last",
        "sql",
        "zero-width",
        "broken-v6",
        "prepended",
        "long",
    ],
)
async def test_spoofed_or_malformed_forwarded_for_behind_a_proxy(
    proxied: Stack, forwarded_for: str | None, client_ip: str | None
) -> None:
    till = await paid_at_till(proxied)
    # Bytes: on the wire a header is octets, whatever a client library would allow.
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for.encode()}
    response = await post(proxied, ip=PROXY, data=till.form, headers=headers)
    assert (response.status_code, response.json()["detail"]) == (403, "source IP not allowed")
    row = await one_new_row(proxied, 0, response)
    assert (row.peer_ip, row.client_ip, row.outcome) == (PROXY, client_ip, "rejected")
    await assert_nothing_applied(proxied, till)


# --- bodies and content types ----------------------------------------------------------------


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]


async def test_oversized_bodies_are_413_and_recorded(stack: Stack) -> None:
    till = await paid_at_till(stack)
    body = urlencode({**till.form, "pad": "x" * LIMIT}).encode()
    attempts: list[dict[str, Any]] = [
        {"content": body, "headers": {"Content-Type": FORM}},  # honest Content-Length
        {"content": _chunks(body), "headers": {"Content-Type": FORM}},  # chunked: none at all
    ]
    for before, attempt in enumerate(attempts):
        response = await post(stack, **attempt)
        assert response.status_code == 413
        row = await one_new_row(stack, before, response)
        assert (row.outcome, row.checks) == ("rejected", {"size": "fail"})
    await assert_nothing_applied(stack, till)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"tXid": None}, "missing tXid"),
        ({"merchantToken": None}, "missing merchantToken"),
        ({"amt": "10,000"}, "amt must be digits"),
        ({"amt": "-10000"}, "amt must be digits"),
        ({"amt": "1e4"}, "amt must be digits"),
        ({"amt": "1" * 13}, "amt must be digits"),
        ({"amt": "10000 "}, "amt must be digits"),
        ({"status": "2"}, "status 0 or 1"),
        ({"status": "0 OR 1=1"}, "status 0 or 1"),
    ],
    ids=lambda value: str(value)[:30],
)
async def test_malformed_fields_are_400_and_recorded(
    stack: Stack, change: dict[str, str | None], reason: str
) -> None:
    till = await paid_at_till(stack)
    form = {k: v for k, v in {**till.form, **change}.items() if v is not None}
    response = await post(stack, data=form)
    assert response.status_code == 400
    assert reason in response.text
    row = await one_new_row(stack, 0, response)
    assert (row.outcome, row.checks.get("form")) == ("rejected", "fail")
    await assert_nothing_applied(stack, till)


@pytest.mark.parametrize(
    "body",
    [b"%%%", b"\xff\xfe\xfd", b"tXid", b"=" * 200, b"&&&&", b"a=1&" * 100, b"%E0%A4%A"],
    ids=["percent", "not-utf8", "no-value", "equals", "ampersands", "many", "bad-escape"],
)
async def test_malformed_bodies_are_400_and_recorded(stack: Stack, body: bytes) -> None:
    till = await paid_at_till(stack)
    response = await post(stack, content=body, headers={"Content-Type": FORM})
    assert response.status_code == 400
    row = await one_new_row(stack, 0, response)
    assert (row.outcome, row.checks.get("form")) == ("rejected", "fail")
    await assert_nothing_applied(stack, till)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "multipart/form-data; boundary=x", "text/plain", "application/xml"],
)
async def test_wrong_content_types_are_not_read(stack: Stack, content_type: str) -> None:
    """A genuine push in another encoding is not a form: its fields are not believed."""
    till = await paid_at_till(stack)
    encodings = {
        "application/json": json.dumps(till.form).encode(),
        "text/plain": urlencode(till.form).encode(),
    }
    body = encodings.get(content_type.split(";")[0], json.dumps(till.form).encode())
    response = await post(stack, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    row = await one_new_row(stack, 0, response)
    assert (row.outcome, row.checks.get("form")) == ("rejected", "fail")
    await assert_nothing_applied(stack, till)


async def test_form_with_a_charset_is_still_a_form(stack: Stack) -> None:
    till = await paid_at_till(stack)
    body = urlencode(till.form).encode()
    response = await post(stack, content=body, headers={"Content-Type": f"{FORM}; charset=UTF-8"})
    assert (response.status_code, response.text) == (200, "OK")
    assert (await stack.payment(till.reference_no))["status"] == "paid"


# --- garbage in every field ------------------------------------------------------------------

SQLISH = [
    "' OR '1'='1",
    "1; DROP TABLE notifications; --",
    '" OR ""="',
    "%' UNION SELECT nicepay_merchant_key FROM settings --",
    "0000' WAITFOR DELAY '0:0:5' --",
]
UNICODE = [
    "\u03a9\u2248\u00e7\u221a\u222b\u02dc\u00b5\u2264\u2265\u00f7",  # math symbols
    "💳🏪🧾",
    "\u202e\u0645\u0631\u062d\u0628\u0627",  # right-to-left override, Arabic
    "\uff21\uff22\uff23\uff11\uff12\uff13",  # full-width ABC123
    "e\u0301\u0308\u0327",  # combining marks
    "\r\nSet-Cookie: injected=1",
    "x" * 300,
    "",
]
# Fields the service verifies: garbage there must never be applied.
VERIFIED = {
    "tXid",
    "referenceNo",
    "amt",
    "merchantToken",
    "status",
    "currency",
    "matchCl",
}
# Fields whose oddity sends the push to NICEPAY's status inquiry, whatever the setting (a
# payMethod other than 03; no status, the older V1 shape): applied only because NICEPAY
# says this payment is paid (it is: paid at the till).
CONFIRMED = {"payMethod"}


def confirmed_by_inquiry(field: str, garbage: str) -> bool:
    # An empty status is no status: the older V1 shape.
    return field in CONFIRMED or (field == "status" and garbage == "")


def applied_as_data(field: str, garbage: str) -> bool:
    return field not in VERIFIED | CONFIRMED


@pytest.mark.parametrize("garbage", SQLISH + UNICODE, ids=lambda g: ascii(g)[:24])
async def test_garbage_in_every_field(stack_factory: StackFactory, garbage: str) -> None:
    # Without the status inquiry the garbage meets the checks alone: nothing else saves it.
    async with stack_factory(nicepay_verify_with_inquiry=False) as stack:
        till = await paid_at_till(stack)
        for number, field in enumerate(till.form):
            if number:  # each field gets a payment of its own
                till = await paid_at_till(stack)
            form = {**till.form, field: garbage}
            if field in ("tXid", "amt"):
                form = signed(form)  # a token valid for the garbage: the later checks must hold
            before = len(await ledger(stack))
            response = await post(stack, data=form)
            row = await one_new_row(stack, before, response)
            resource = await stack.payment(till.reference_no)
            if confirmed_by_inquiry(field, garbage):
                assert (response.status_code, row.outcome) == (200, "applied"), field
                assert row.checks["inquiry"] == "pass", field
                assert resource["status"] == "paid", field
            elif not applied_as_data(field, garbage):
                assert (response.status_code, row.outcome) in NOT_APPLIED, field
                assert resource["status"] == "pending", field
            else:  # data, not instructions: applied once, stored as sent (capped)
                assert (response.status_code, response.text, row.outcome) == (200, "OK", "applied")
                assert resource["status"] == "paid", field
                assert row.fields[field] == garbage[:255], field
        if garbage:  # a garbage field name is data too
            till = await paid_at_till(stack)
            before = len(await ledger(stack))
            response = await post(stack, data={**till.form, garbage: "1"})
            assert (response.status_code, response.text) == (200, "OK")
            row = await one_new_row(stack, before, response)
            assert row.fields[garbage[:64]] == "1"
        # Every payment changed at most once, and only by the pushes that earned it.
        types = await event_types(stack)
        applied = sum(
            confirmed_by_inquiry(field, garbage) or applied_as_data(field, garbage)
            for field in till.form
        )
        assert types.count("paid") == applied + bool(garbage)


@pytest.mark.parametrize("field", ["tXid", "referenceNo", "amt", "status", "goodsNm"])
async def test_nul_byte_in_a_field_is_recorded_not_503(
    request: pytest.FixtureRequest, stack: Stack, field: str
) -> None:
    """A NUL (%00) is hostile input, not a database outage: documented answer, a ledger row."""
    till = await paid_at_till(stack)
    response = await post(stack, ip=STRANGER, data={**till.form, field: till.form[field] + "\x00"})
    assert (response.status_code, response.json()["detail"]) == (403, "source IP not allowed")
    await one_new_row(stack, 0, response)
    response = await post(stack, data={**till.form, field: till.form[field] + "\x00"})
    assert response.status_code != 503
    await one_new_row(stack, 1, response)


async def test_nul_byte_in_the_user_agent_is_recorded_not_503(
    request: pytest.FixtureRequest, stack: Stack
) -> None:
    till = await paid_at_till(stack)
    response = await post(stack, ip=STRANGER, data=till.form, headers={"User-Agent": "evil\x00"})
    assert (response.status_code, response.json()["detail"]) == (403, "source IP not allowed")
    await one_new_row(stack, 0, response)


async def test_non_ascii_digits_in_amt_are_malformed(stack: Stack) -> None:
    """Superscript and full-width digits pass str.isdigit(); a token over them is still 400."""
    for amt in ("\u00b2", "\uff11\uff10\uff10\uff10\uff10"):
        till = await paid_at_till(stack)
        before = len(await ledger(stack))
        response = await post(stack, data=signed({**till.form, "amt": amt}))
        assert response.status_code == 400, amt
        await one_new_row(stack, before, response)
        assert (await stack.payment(till.reference_no))["status"] == "pending"
