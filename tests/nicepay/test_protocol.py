"""The protocol package on its own: tokens, WIB fields, tolerant parsing. No database."""

import os
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest

from app.config import SANDBOX_MERCHANT_KEY
from app.nicepay import tokens
from app.nicepay.client import NicepayClient, NicepayError, NicepayUnavailable, parse_body
from app.nicepay.wib import from_wib_fields, to_wib_fields

# Computed independently with coreutils: printf '%s' "$iMid$x$amt$key" | sha256sum
VECTORS = [
    (
        tokens.reference_token,
        "ORD-1001",
        10000,
        "da9ae2848717bb1c9897c75166da4955dae229f7706f092ec9b785975c87ce7e",
    ),
    (
        tokens.txid_token,
        "IONPAYTEST03202611221530001234",
        10000,
        "2424237662b2df13982fd0130ea577ae42b108a68a1f27a504effbfc941fd403",
    ),
    (
        tokens.txid_token,
        "TNICECV03103202212141459041632",
        "5000",
        "f2c9f9149d0dcfef5ac1ce8d5f81c18237943c014c68c554e75dfbc208042c4c",
    ),
]


@pytest.mark.parametrize(("formula", "key_field", "amt", "expected"), VECTORS)
def test_token_vectors(formula, key_field, amt, expected) -> None:
    assert formula("IONPAYTEST", key_field, amt, SANDBOX_MERCHANT_KEY) == expected


def test_tokens_equal_is_strict() -> None:
    token = tokens.txid_token("IONPAYTEST", "X", 1, "k")
    assert tokens.tokens_equal(token, token)
    assert not tokens.tokens_equal(token, token.upper())
    assert not tokens.tokens_equal(token, "ü" + token[1:])


def test_wib_fields_from_utc() -> None:
    moment = datetime(2026, 11, 23, 17, 30, 5, tzinfo=UTC)
    assert to_wib_fields(moment) == ("20261124", "003005")
    assert from_wib_fields("20261124", "003005") == moment
    assert from_wib_fields("null", "null") is None
    with pytest.raises(ValueError, match="naive"):
        to_wib_fields(datetime(2026, 1, 1))


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Tokyo"])
def test_wib_fields_ignore_host_time_zone(tz: str) -> None:
    code = (
        "from datetime import datetime, timezone;"
        "from app.nicepay.wib import to_wib_fields;"
        "print(*to_wib_fields(datetime(2026, 3, 8, 23, 59, 59, tzinfo=timezone.utc)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TZ": tz},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["20260309", "065959"]


@pytest.mark.parametrize(
    "text",
    [
        '{"resultCd":"0000"}',
        '0019{"resultCd":"0000"}',
        '  \n{"resultCd":"0000"}',
        '19 {"resultCd":"0000"}',
    ],
)
def test_parse_body_tolerates_prefixes(text: str) -> None:
    assert parse_body(text) == {"resultCd": "0000"}


@pytest.mark.parametrize("text", ["<html>maintenance</html>", "", "[1,2]", "{broken"])
def test_parse_body_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_body(text)


def _client(handler) -> NicepayClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://nicepay")
    return NicepayClient(http, imid="IONPAYTEST", merchant_key=SANDBOX_MERCHANT_KEY)


async def test_client_sends_form_and_maps_errors() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, text='0045{"resultCd":"9528","resultMsg":"Transaction not found"}'
        )

    with pytest.raises(NicepayError) as raised:
        await _client(handler).inquire("TX", "ORD-1", 500)
    assert raised.value.result_cd == "9528"
    assert seen[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert b"merchantToken=" in seen[0].content
    assert SANDBOX_MERCHANT_KEY not in str(raised.value)


@pytest.mark.parametrize(
    ("response", "timed_out"),
    [
        (httpx.Response(503, text="busy"), False),
        (httpx.Response(200, text="<html/>"), False),
        (httpx.ReadTimeout("slow"), True),
        (httpx.ConnectError("refused"), False),
    ],
)
async def test_client_unavailable(response, timed_out: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        assert isinstance(response, httpx.Response)
        return response

    with pytest.raises(NicepayUnavailable) as raised:
        await _client(handler).cancel("TX", "ORD-1", 500, "test")
    assert raised.value.timed_out is timed_out
