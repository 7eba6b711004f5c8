"""Slow and hostile clients against a real `python -m app serve` (uvicorn with the guards of
app/server.py), on SQLite and PostgreSQL: connections that never finish their headers or body
are closed after their deadline while /healthz keeps answering; connections over the bound are
closed at once; a chunked storefront body is capped by what arrives; a client that leaves
mid-body leaves no traceback; and a newline in the path cannot forge a text log line.

No timing asserts: a deadline is shown by the connection being closed at all (a generous
bound only keeps a broken build from hanging the suite).
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import STOREFRONT_KEY, payment_body
from tests.procs import (
    NOTIFICATIONS,
    PAYMENTS,
    Process,
    fresh_database,
    running,
    start_service,
    stop,
)

pytestmark = pytest.mark.slow

HEADER_SECONDS = 1.0
BODY_SECONDS = 2.0
GIVE_UP_SECONDS = 60.0  # a bound against hanging, far above the deadlines
SLOW_CONNECTIONS = 300
GUARDS = {
    "http_header_timeout_seconds": HEADER_SECONDS,
    "http_body_timeout_seconds": BODY_SECONDS,
    "http_max_connections": SLOW_CONNECTIONS + 100,
    "log_format": "text",
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Process]:
    directory = tmp_path_factory.mktemp("slow-clients")
    async with fresh_database(request.param, directory) as url:
        process = await start_service(url, "http://127.0.0.1:9", **GUARDS)
        async with running(process):
            yield process


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(service: Process, first_bytes: bytes = b"") -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    if first_bytes:
        writer.write(first_bytes)
        await writer.drain()
    return reader, writer


async def closed_by_server(stream: Stream) -> bytes:
    """Everything the server sent before it closed the connection (it must close it)."""
    reader, _ = stream
    try:
        return await asyncio.wait_for(reader.read(), GIVE_UP_SECONDS)
    except ConnectionResetError:  # closed with our unread request in its buffer
        return b""


@contextlib.contextmanager
def closing(streams: list[Stream]) -> Iterator[list[Stream]]:
    try:
        yield streams
    finally:
        for _, writer in streams:
            writer.close()


async def healthz(service: Process) -> int:
    async with service.client() as client:
        return (await client.get("/healthz")).status_code


def unfinished(kind: int) -> bytes:
    """Three kinds of slowloris: nothing at all, half the headers, half the body."""
    if kind == 0:
        return b""
    if kind == 1:
        return b"POST " + NOTIFICATIONS.encode() + b" HTTP/1.1\r\nHost: service\r\nX-Slow: 1"
    return (
        b"POST " + NOTIFICATIONS.encode() + b" HTTP/1.1\r\nHost: service\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ntXid="
    )


async def test_slow_connections_are_closed_after_their_deadline_and_healthz_answers(
    service: Process,
) -> None:
    streams = [await connect(service, unfinished(n % 3)) for n in range(SLOW_CONNECTIONS)]
    with closing(streams):
        assert await healthz(service) == 200  # while every slow connection is still open
        answers = await asyncio.gather(*(closed_by_server(s) for s in streams))
    # Closed without an answer (a half-sent request gets none), never served.
    assert all(b"200 OK" not in answer for answer in answers)
    assert await healthz(service) == 200
    assert "Exception in ASGI application" not in service.log()
    assert "Traceback" not in service.log()


async def test_a_slow_storefront_body_is_closed_too(service: Process) -> None:
    head = (
        f"POST {PAYMENTS} HTTP/1.1\r\nHost: service\r\nAuthorization: Bearer {STOREFRONT_KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
    ).encode()
    with closing([await connect(service, head)]) as streams:
        await closed_by_server(streams[0])
    assert "Traceback" not in service.log()


async def test_a_chunked_storefront_body_over_the_cap_is_413(service: Process) -> None:
    """The cap counts the bytes that arrive: a body that declares no length is cut off."""
    body = json.dumps(payment_body(goods_name="x" * 1_000_000)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    headers = {"Authorization": f"Bearer {STOREFRONT_KEY}", "Content-Type": "application/json"}
    async with service.client(headers=headers) as client:
        response = await client.post(PAYMENTS, content=chunks())
        assert "content-length" not in response.request.headers
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "body_too_large"
        # A chunked body under the cap is read and answered as usual.
        small = json.dumps(payment_body(amount=0)).encode()

        async def one_chunk() -> AsyncIterator[bytes]:
            yield small

        assert (await client.post(PAYMENTS, content=one_chunk())).status_code == 422


async def wait_for_log(service: Process, text: str) -> str:
    async with asyncio.timeout(GIVE_UP_SECONDS):
        while text not in service.log():  # noqa: ASYNC110 (a file has no event to await)
            await asyncio.sleep(0.1)
    return service.log()


@pytest.mark.parametrize("path", [NOTIFICATIONS, PAYMENTS])
async def test_a_client_leaving_mid_body_leaves_no_traceback(service: Process, path: str) -> None:
    marker = f"left-{path.rsplit('/', 1)[-1]}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: service\r\nAuthorization: Bearer {STOREFRONT_KEY}\r\n"
        f"X-Request-ID: {marker}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 1000\r\n\r\ntXid=ABC"
    ).encode()
    before = len(service.log())
    _, writer = await connect(service, head)
    await asyncio.sleep(0)  # nothing timed: the server sees the bytes, then the close
    writer.close()
    # Logged as nginx logs a client that closed first: 499, not a 500 or an error.
    log = (await wait_for_log(service, f"[{marker}] app.http: POST {path} 499"))[before:]
    assert "Exception in ASGI application" not in log
    assert "Traceback" not in log
    assert "ClientDisconnect" not in log


@pytest.mark.parametrize("control", ["%0A", "%0D", "%0D%0A", "%E2%80%A8"])
async def test_a_newline_in_the_path_cannot_forge_a_log_line(
    service: Process, control: str
) -> None:
    forged = f"FORGED{control.replace('%', '')} INFO [admin] app.http: paid"
    async with service.client() as client:
        response = await client.get(f"/healthz{control}{forged.replace(' ', '%20')}")
    assert response.status_code == 404
    log = await wait_for_log(service, f"FORGED{control.replace('%', '')}")
    lines = log.splitlines()
    assert not [line for line in lines if line.startswith("FORGED")]
    assert any("/healthz\\" in line and "FORGED" in line for line in lines)


async def test_connections_over_the_bound_are_closed_at_once(tmp_path: Path) -> None:
    async with fresh_database("sqlite", tmp_path) as url:
        process = await start_service(
            url, "http://127.0.0.1:9", **{**GUARDS, "http_max_connections": 20}
        )
        async with running(process):
            with closing([await connect(process) for _ in range(20)]) as idle:
                extra = await connect(process, b"GET /healthz HTTP/1.1\r\nHost: s\r\n\r\n")
                with closing([extra]):
                    assert await closed_by_server(extra) == b""  # refused, not served
                await asyncio.gather(*(closed_by_server(s) for s in idle))
            assert await healthz(process) == 200  # the idle ones went at their deadline
            await stop(process)
        assert "over HTTP_MAX_CONNECTIONS" in process.log()


async def test_headers_over_the_cap_are_431(service: Process) -> None:
    huge = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"h" * 1000) for n in range(40))
    request = b"GET /healthz HTTP/1.1\r\nHost: service\r\n" + huge + b"\r\n"
    with closing([await connect(service, request)]) as streams:
        answer = await closed_by_server(streams[0])
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert await healthz(service) == 200
