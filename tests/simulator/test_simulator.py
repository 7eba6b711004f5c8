"""The NICEPAY V1 CVS simulator speaks the protocol the service expects, and misbehaves on cue."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY
from app.nicepay.codes import NOTIFICATION_USER_AGENT
from app.nicepay.tokens import reference_token, txid_token
from app.nicepay.wib import now_utc, to_wib_fields
from simulator.app import SimulatorState, create_simulator, get_state

IMID = SANDBOX_IMID
KEY = SANDBOX_MERCHANT_KEY
NOTIFY_URL = "http://merchant.test/nicepay/notify"


class Recorder:
    """A tiny merchant: records every push and answers "OK" like NICEPAY's sample handler."""

    def __init__(self) -> None:
        self.pushes: list[tuple[dict[str, str], str]] = []
        self.wait_for_copies = 0  # > 0: hold each push until that many have arrived
        self._arrived = asyncio.Event()
        self.app = FastAPI()
        self.app.add_api_route("/nicepay/notify", self._receive, methods=["POST"])

    async def _receive(self, request: Request) -> PlainTextResponse:
        form = dict(parse_qsl((await request.body()).decode()))
        self.pushes.append((form, request.headers.get("user-agent", "")))
        if self.wait_for_copies:
            if len(self.pushes) >= self.wait_for_copies:
                self._arrived.set()
            # Times out (and fails the test) if copies were sent one after the other.
            await asyncio.wait_for(self._arrived.wait(), timeout=2)
        return PlainTextResponse("OK")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def sim_app(recorder: Recorder) -> FastAPI:
    return create_simulator(push_transport=httpx.ASGITransport(app=recorder.app))


@pytest.fixture
def sim(sim_app: FastAPI) -> SimulatorState:
    return get_state(sim_app)


@pytest.fixture
async def client(sim_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=sim_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nicepay") as http:
        yield http


def registration(**overrides: str | None) -> dict[str, str]:
    """A valid onePass.do form; an override of None drops the field. Token signed last."""
    form = {
        "iMid": IMID,
        "payMethod": "03",
        "currency": "IDR",
        "amt": "10000",
        "referenceNo": f"ORD-{uuid.uuid4().hex[:12]}",
        "goodsNm": "Kopi",
        "billingNm": "Budi",
        "billingPhone": "081234567890",
        "billingEmail": "budi@example.com",
        "billingCity": "Jakarta",
        "billingState": "DKI Jakarta",
        "billingPostCd": "10110",
        "billingCountry": "Indonesia",
        "callBackUrl": "http://merchant.test/return",
        "dbProcessUrl": NOTIFY_URL,
        "description": "order",
        "userIP": "127.0.0.1",
        "cartData": "{}",
        "mitraCd": "ALMA",
    }
    for name, value in overrides.items():
        if value is None:
            form.pop(name, None)
        else:
            form[name] = value
    if "merchantToken" not in overrides:
        form["merchantToken"] = reference_token(
            form.get("iMid", ""), form.get("referenceNo", ""), form.get("amt", ""), KEY
        )
    return form


async def call(http: httpx.AsyncClient, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
    response = await http.post(f"/nicepay/api/{endpoint}", data=form)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def register(http: httpx.AsyncClient, **overrides: str | None) -> dict[str, Any]:
    answer = await call(http, "onePass.do", registration(**overrides))
    assert answer["resultCd"] == "0000", answer
    return answer


async def inquire(http: httpx.AsyncClient, reg: dict[str, Any]) -> dict[str, Any]:
    form = {
        "iMid": IMID,
        "tXid": reg["tXid"],
        "referenceNo": reg["referenceNo"],
        "amt": reg["amount"],
        "merchantToken": reference_token(IMID, reg["referenceNo"], reg["amount"], KEY),
    }
    return await call(http, "onePassStatus.do", form)


async def cancel(http: httpx.AsyncClient, reg: dict[str, Any], amt: str = "") -> dict[str, Any]:
    amt = amt or reg["amount"]
    form = {
        "iMid": IMID,
        "tXid": reg["tXid"],
        "payMethod": "03",
        "cancelType": "1",
        "amt": amt,
        "merchantToken": txid_token(IMID, reg["tXid"], amt, KEY),
    }
    return await call(http, "onePassAllCancel.do", form)


# -- registration ----------------------------------------------------------------------------


async def test_registration_success(client: httpx.AsyncClient, sim: SimulatorState) -> None:
    answer = await register(client, amt="25000", mitraCd="INDO")

    assert answer["resultMsg"] == "SUCCESS"
    assert answer["amount"] == "25000" and "amt" not in answer
    assert len(answer["tXid"]) == 30
    assert answer["tXid"].startswith(IMID + "03")
    assert isinstance(answer["payNo"], str) and len(answer["payNo"]) == 12
    assert answer["payNo"].startswith("0") and answer["payNo"].isdigit()
    assert answer["payMethod"] == "03" and answer["currency"] == "IDR"
    assert answer["mitraCd"] == "INDO" and answer["callbackUrl"] == "http://merchant.test/return"
    # No expiry given: 24 h from now, in WIB.
    assert (answer["payValidDt"], answer["payValidTm"]) in {
        to_wib_fields(now_utc() + timedelta(hours=24, seconds=delta)) for delta in (-2, -1, 0)
    }
    assert sim.transactions[answer["tXid"]].db_process_url == NOTIFY_URL


async def test_registration_keeps_given_expiry(client: httpx.AsyncClient) -> None:
    valid_dt, valid_tm = to_wib_fields(now_utc() + timedelta(days=3))
    answer = await register(client, payValidDt=valid_dt, payValidTm=valid_tm)
    assert (answer["payValidDt"], answer["payValidTm"]) == (valid_dt, valid_tm)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"iMid": "OTHERMID01"}, "9011"),
        ({"iMid": None}, "9011"),
        ({"iMid": "OTHERMID01", "amt": "1.5"}, "9011"),  # iMid is checked first
        ({"amt": None}, "9007"),
        ({"amt": "10000.00"}, "9008"),
        ({"amt": "10000.00", "merchantToken": "bad"}, "9008"),  # amt before token
        ({"merchantToken": "0" * 64}, "9010"),
        ({"merchantToken": None}, "9010"),
        ({"referenceNo": ""}, "9014"),
        ({"goodsNm": None}, "9015"),
        ({"billingNm": ""}, "9016"),
        ({"billingPhone": "+62 812"}, "9017"),
        ({"billingPhone": None}, "9017"),
        ({"billingEmail": ""}, "9018"),
        ({"dbProcessUrl": None}, "9020"),
        ({"userIP": ""}, "9024"),
        ({"userIP": None}, "9024"),
        ({"currency": None}, "9013"),
        ({"currency": "USD"}, "9013"),
        ({"callBackUrl": None}, "9019"),
        ({"callBackUrl": ""}, "9019"),
        ({"billingCity": None}, "9025"),
        ({"billingCity": ""}, "9025"),
        ({"billingState": None}, "9026"),
        ({"billingPostCd": None}, "9027"),
        ({"billingPostCd": "10110-A"}, "9027"),
        ({"billingCountry": ""}, "9028"),
        ({"billingCountry": None, "userIP": None}, "9024"),  # userIP is checked first
        ({"amt": "0"}, "9509"),
        ({"billingNm": "B" * 31}, "9001"),
        ({"billingCity": "J" * 51}, "9001"),
        ({"billingCountry": "Republik Indonesia"}, "9001"),
        ({"description": "d" * 101}, "9001"),
        ({"payMethod": "02"}, "9012"),
        ({"referenceNo": "R" * 41}, "9507"),
        ({"cartData": "{not json"}, "9022"),
        ({"cartData": "[]"}, "9022"),
        ({"cartData": json.dumps({"item": [{"goods_amt": "x"}]})}, "9022"),
        ({"cartData": json.dumps({"count": "1", "item": [{"goods_amt": "9000"}]})}, "9023"),
        ({"mitraCd": "XXXX"}, "9522"),
        ({"mitraCd": None}, "9522"),
        ({"payValidDt": "2030010", "payValidTm": "235959"}, "9511"),
        ({"payValidDt": "20300101"}, "9511"),
        ({"payValidDt": "20200101", "payValidTm": "235959"}, "9510"),
        ({"payValidDt": "20301340", "payValidTm": "235959"}, "9510"),
        ({"payValidDt": "2030AB01", "payValidTm": "235959"}, "9510"),
    ],
)
async def test_registration_errors(
    client: httpx.AsyncClient, sim: SimulatorState, overrides: dict[str, str | None], code: str
) -> None:
    answer = await call(client, "onePass.do", registration(**overrides))
    assert answer["resultCd"] == code, answer
    assert answer["resultMsg"]
    assert set(answer) == {"resultCd", "resultMsg"}
    assert sim.transactions == {}


async def test_registration_cart_total_matches(client: httpx.AsyncClient) -> None:
    cart = {"count": "2", "item": [{"goods_amt": "4000"}, {"goods_amt": "6000"}]}
    await register(client, cartData=json.dumps(cart))


async def test_amount_message(client: httpx.AsyncClient) -> None:
    answer = await call(client, "onePass.do", registration(amt="1,000"))
    assert answer == {
        "resultCd": "9008",
        "resultMsg": "Amount should only number and do not includes decimal",
    }


async def test_duplicate_reference(client: httpx.AsyncClient) -> None:
    first = await register(client)
    again = await call(client, "onePass.do", registration(referenceNo=first["referenceNo"]))
    assert again["resultCd"] == "9009"


async def test_disabled_mitra(client: httpx.AsyncClient, sim: SimulatorState) -> None:
    sim.enabled_mitra = {"ALMA", "INDO"}
    assert (await call(client, "onePass.do", registration(mitraCd="LOSN")))["resultCd"] == "9522"
    await register(client, mitraCd="INDO")

    response = await client.put("/sim/mitra", json=["INDO"])
    assert response.json() == ["INDO"]
    assert (await call(client, "onePass.do", registration(mitraCd="ALMA")))["resultCd"] == "9522"
    assert (await client.put("/sim/mitra", json=["NOPE"])).status_code == 422


# -- inquiry ---------------------------------------------------------------------------------


async def test_inquiry_unpaid_then_paid_with_push(
    client: httpx.AsyncClient, sim: SimulatorState, recorder: Recorder
) -> None:
    reg = await register(client, amt="15000")
    before = await inquire(client, reg)
    assert before["resultCd"] == "0000"
    assert before["status"] == "3"
    assert before["amt"] == "15000" and before["payNo"] == reg["payNo"]
    assert before["depositDt"] is None and before["depositTm"] is None
    assert before["cancelAmt"] is None
    assert before["iMid"] == IMID and before["mitraCd"] == "ALMA"

    results = await sim.pay(reg["tXid"])

    assert results == [(200, "OK")]
    after = await inquire(client, reg)
    assert after["status"] == "0"
    assert after["depositDt"] and after["depositTm"]
    [(form, user_agent)] = recorder.pushes
    assert user_agent == NOTIFICATION_USER_AGENT == "Jakarta Commons-HttpClient/3.1"
    assert form["merchantToken"] == txid_token(IMID, reg["tXid"], "15000", KEY)
    expected = {
        "tXid": reg["tXid"],
        "referenceNo": reg["referenceNo"],
        "mitraCd": "ALMA",
        "payMethod": "03",
        "payNo": reg["payNo"],
        "payValidDt": reg["payValidDt"],
        "payValidTm": reg["payValidTm"],
        "amt": "15000",
        # The deposit's date and time, as in NICEPAY's pages; the registration's are in reg.
        "transDt": after["depositDt"],
        "transTm": after["depositTm"],
        "depositDt": after["depositDt"],
        "depositTm": after["depositTm"],
        "currency": "IDR",
        "goodsNm": "Kopi",
        "billingNm": "Budi",
        "matchCl": "1",
        "status": "0",
        "instmntType": "1",
        "instmntMon": "1",
    }
    assert {k: v for k, v in form.items() if k != "merchantToken"} == expected
    assert "iMid" not in form  # no official sample carries it (REFERENCE.md §9)


async def test_pay_over_http_with_wrong_amount(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    reg = await register(client)
    response = await client.post(f"/sim/transactions/{reg['tXid']}/pay", params={"amt": "1"})
    assert response.json() == {"pushes": [{"status_code": 200, "body": "OK"}]}
    [(form, _)] = recorder.pushes
    # A real, but wrong, push: the token signs the amount it carries.
    assert form["amt"] == "1"
    assert form["merchantToken"] == txid_token(IMID, reg["tXid"], "1", KEY)
    assert (await inquire(client, reg))["amt"] == "10000"


async def test_expired_by_switch_and_by_clock(
    client: httpx.AsyncClient, sim: SimulatorState
) -> None:
    switched, timed = await register(client), await register(client)
    response = await client.post(f"/sim/transactions/{switched['tXid']}/expire")
    assert response.json()["status"] == "4"
    assert (await inquire(client, switched))["status"] == "4"

    assert (await inquire(client, timed))["status"] == "3"
    sim.clock = lambda: now_utc() + timedelta(hours=25)
    assert (await inquire(client, timed))["status"] == "4"


async def test_ready_then_reverse_and_silent_settle(
    client: httpx.AsyncClient, sim: SimulatorState, recorder: Recorder
) -> None:
    reg = await register(client)
    await client.post(f"/sim/transactions/{reg['tXid']}/ready")
    assert (await inquire(client, reg))["status"] == "5"

    silent = await register(client)
    await client.post(f"/sim/transactions/{silent['tXid']}/settle")
    assert (await inquire(client, silent))["status"] == "0"
    assert recorder.pushes == []

    response = await client.post(f"/sim/transactions/{silent['tXid']}/reverse")
    assert response.json() == {"pushes": [{"status_code": 200, "body": "OK"}]}
    assert recorder.pushes[0][0]["status"] == "1"
    reversed_ = await inquire(client, silent)
    assert reversed_["status"] == "1" and reversed_["depositDt"] is None
    assert recorder.pushes[0][0]["depositDt"]  # the push still names the original deposit


async def test_inquiry_errors(client: httpx.AsyncClient) -> None:
    reg = await register(client)
    bad_token = {**(await _inquiry_form(reg)), "merchantToken": "0" * 64}
    assert (await call(client, "onePassStatus.do", bad_token))["resultCd"] == "9010"

    unknown = {**(await _inquiry_form(reg)), "tXid": "IONPAYTEST0320300101000000" + "9999"}
    assert (await call(client, "onePassStatus.do", unknown))["resultCd"] == "9528"

    other_amt = {**reg, "amount": "20000"}
    assert (await inquire(client, other_amt))["resultCd"] == "9528"


async def _inquiry_form(reg: dict[str, Any]) -> dict[str, str]:
    return {
        "iMid": IMID,
        "tXid": reg["tXid"],
        "referenceNo": reg["referenceNo"],
        "amt": reg["amount"],
        "merchantToken": reference_token(IMID, reg["referenceNo"], reg["amount"], KEY),
    }


# -- cancel ----------------------------------------------------------------------------------


async def test_cancel_unpaid_then_again(client: httpx.AsyncClient) -> None:
    reg = await register(client)
    answer = await cancel(client, reg)
    assert answer["resultCd"] == "0000"
    assert answer["tXid"] == reg["tXid"] and answer["referenceNo"] == reg["referenceNo"]
    # `amount`, as NICEPAY's V1 PDF names it (REFERENCE.md §9), not the inquiry's `amt`.
    assert answer["amount"] == reg["amount"] and "amt" not in answer
    assert len(answer["canceltXid"]) == 30
    assert answer["transDt"] and answer["transTm"]

    status = await inquire(client, reg)
    assert status["status"] == "4" and status["cancelAmt"] == reg["amount"]
    assert (await cancel(client, reg))["resultCd"] == "9314"


async def test_cancel_paid_expired_and_errors(
    client: httpx.AsyncClient, sim: SimulatorState
) -> None:
    paid, expired, other = await register(client), await register(client), await register(client)
    await sim.pay(paid["tXid"])
    await sim.expire(expired["tXid"])
    assert (await cancel(client, paid))["resultCd"] == "9330"
    assert (await cancel(client, expired))["resultCd"] == "9314"

    wrong_token = {
        "iMid": IMID,
        "tXid": other["tXid"],
        "payMethod": "03",
        "cancelType": "1",
        "amt": other["amount"],
        "merchantToken": reference_token(IMID, other["referenceNo"], other["amount"], KEY),
    }
    assert (await call(client, "onePassAllCancel.do", wrong_token))["resultCd"] == "9010"
    assert (await cancel(client, {**other, "tXid": "X" * 30}))["resultCd"] == "9528"
    no_type = {
        "iMid": IMID,
        "tXid": other["tXid"],
        "payMethod": "03",
        "amt": other["amount"],
        "merchantToken": txid_token(IMID, other["tXid"], other["amount"], KEY),
    }
    assert (await call(client, "onePassAllCancel.do", no_type))["resultCd"] == "9301"
    bad_type = {**no_type, "cancelType": "9"}
    assert (await call(client, "onePassAllCancel.do", bad_type))["resultCd"] == "9301"


# -- faults ----------------------------------------------------------------------------------


async def test_length_prefix(client: httpx.AsyncClient, sim: SimulatorState) -> None:
    sim.faults.length_prefix = True
    response = await client.post("/nicepay/api/onePass.do", data=registration())
    text = response.text
    assert response.status_code == 200
    assert text[:4].isdigit() and int(text[:4]) == len(text[4:].encode())
    assert json.loads(text[4:])["resultCd"] == "0000"


async def test_garbage_and_http_status_register_nothing(
    client: httpx.AsyncClient, sim: SimulatorState
) -> None:
    assert (await client.put("/sim/faults", json={"garbage": True})).status_code == 200
    response = await client.post("/nicepay/api/onePass.do", data=registration())
    assert (response.status_code, response.text) == (200, "<html>maintenance</html>")

    await client.put("/sim/faults", json={"http_status": 503})
    response = await client.post("/nicepay/api/onePass.do", data=registration())
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "503" in response.text

    assert sim.transactions == {}
    assert sim.calls["onePass.do"] == 2


async def test_faults_restricted_to_endpoints_and_reset(client: httpx.AsyncClient) -> None:
    faults = {"http_status": 502, "endpoints": ["onePassStatus.do"]}
    assert (await client.put("/sim/faults", json=faults)).json()["http_status"] == 502
    reg = await register(client)
    response = await client.post("/nicepay/api/onePassStatus.do", data=await _inquiry_form(reg))
    assert response.status_code == 502

    assert (await client.put("/sim/faults", json={"typo": 1})).status_code == 422
    await client.post("/sim/reset")
    assert (await client.get("/sim/faults")).json()["http_status"] is None
    assert (await client.get("/sim/transactions")).json() == []


async def test_delay_answers_late_but_registers(
    client: httpx.AsyncClient, sim: SimulatorState
) -> None:
    sim.faults.delay_seconds = 1.0
    form = registration()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.post("/nicepay/api/onePass.do", data=form), timeout=0.05)
    # The caller gave up, but NICEPAY had already registered it: a retry hits 9009.
    assert [tx.reference_no for tx in sim.find(form["referenceNo"])] == [form["referenceNo"]]


async def test_push_copies_race(
    client: httpx.AsyncClient, sim: SimulatorState, recorder: Recorder
) -> None:
    reg = await register(client)
    await client.put("/sim/faults", json={"push_copies": 2})
    recorder.wait_for_copies = 2  # both copies must be in flight together

    results = await sim.pay(reg["tXid"])

    assert results == [(200, "OK"), (200, "OK")]
    assert len(recorder.pushes) == 2
    assert recorder.pushes[0][0] == recorder.pushes[1][0]

    response = await client.post(f"/sim/transactions/{reg['tXid']}/pay", params={"copies": 3})
    assert len(response.json()["pushes"]) == 3


async def test_push_to_unreachable_merchant(client: httpx.AsyncClient) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sim = SimulatorState(imid=IMID, merchant_key=KEY, push_transport=httpx.MockTransport(refuse))
    sim.register(registration(referenceNo="UNREACHABLE-1"))
    [tx] = sim.find("UNREACHABLE-1")
    [(code, body)] = await sim.pay(tx.txid)
    assert code == 0 and "ConnectError" in body


# -- control plane ---------------------------------------------------------------------------


async def test_stats_and_lookups(client: httpx.AsyncClient, sim: SimulatorState) -> None:
    reg = await register(client)
    await register(client)
    await inquire(client, reg)
    await cancel(client, reg)

    expected = {"onePass.do": 2, "onePassStatus.do": 1, "onePassAllCancel.do": 1}
    assert sim.calls == expected
    assert (await client.get("/sim/stats")).json() == expected

    found = await client.get("/sim/transactions", params={"reference_no": reg["referenceNo"]})
    [view] = found.json()
    assert view["tXid"] == reg["tXid"] and view["lifecycle"] == "cancelled"
    assert (await client.get(f"/sim/transactions/{reg['tXid']}")).json()["payNo"] == reg["payNo"]

    await client.post("/sim/reset")
    assert sim.calls == dict.fromkeys(expected, 0)


async def test_unknown_txid(client: httpx.AsyncClient, sim: SimulatorState) -> None:
    for action in ("pay", "reverse", "settle", "expire", "ready"):
        response = await client.post(f"/sim/transactions/NOPE/{action}")
        assert response.status_code == 404, action
    assert (await client.get("/sim/transactions/NOPE")).status_code == 404
    with pytest.raises(KeyError):
        await sim.pay("NOPE")


async def test_registration_keeps_the_form_it_was_sent(
    client: httpx.AsyncClient, sim: SimulatorState
) -> None:
    form = registration(billingCity="Bandung", billingPostCd="40111")
    answer = await call(client, "onePass.do", form)
    request = sim.transactions[answer["tXid"]].request
    assert request == {k: v for k, v in form.items() if k != "merchantToken"}
    view = (await client.get(f"/sim/transactions/{answer['tXid']}")).json()
    assert view["request"]["billingCity"] == "Bandung"
    assert "merchantToken" not in view["request"]


class QueryRecorder(Recorder):
    """Records the query string and the body apart: where the fields came is the point."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[tuple[dict[str, str], bytes]] = []
        self.app.router.routes.clear()
        self.app.add_api_route("/nicepay/notify", self._raw, methods=["POST"])

    async def _raw(self, request: Request) -> PlainTextResponse:
        self.raw.append((dict(request.query_params), await request.body()))
        return PlainTextResponse("OK")


@pytest.mark.parametrize("carrier", ["body", "query"])
async def test_short_push_carries_the_four_fields_only(carrier: str) -> None:
    recorder = QueryRecorder()
    sim_app = create_simulator(push_transport=httpx.ASGITransport(app=recorder.app))
    transport = httpx.ASGITransport(app=sim_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nicepay") as http:
        reg = await register(http, amt="12000")
        response = await http.post(
            f"/sim/transactions/{reg['tXid']}/pay", params={"shape": "short", "carrier": carrier}
        )
        assert response.json() == {"pushes": [{"status_code": 200, "body": "OK"}]}
        assert (await inquire(http, reg))["status"] == "0"  # paid all the same

    [(query, body)] = recorder.raw
    fields = query if carrier == "query" else dict(parse_qsl(body.decode()))
    assert fields == {
        "tXid": reg["tXid"],
        "referenceNo": reg["referenceNo"],
        "amt": "12000",
        "merchantToken": txid_token(IMID, reg["tXid"], "12000", KEY),
    }
    if carrier == "query":
        assert body == b""
    else:
        assert query == {}


async def test_push_shape_values_are_checked(client: httpx.AsyncClient) -> None:
    reg = await register(client)
    response = await client.post(f"/sim/transactions/{reg['tXid']}/pay", params={"shape": "v0"})
    assert response.status_code == 422
