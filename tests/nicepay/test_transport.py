"""The poster the service ships (aiohttp), over real loopback sockets: the form as sent, the
answer as received, connections kept alive, and each failure told apart (a timeout is a
504 to the storefront, "not there" a 502)."""

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import pytest

from app.nicepay.client import NicepayClient, NicepayUnavailable
from app.nicepay.transport import AiohttpPoster


class Peer:
    """A tiny HTTP/1.1 server: answers each request with `reply`, or never, and counts
    connections and requests."""

    def __init__(self, reply: bytes | None, idle_close: float | None = None) -> None:
        self.reply = reply
        self.idle_close = idle_close  # close a kept-alive connection idle this long
        self.connections = 0
        self.bodies: list[bytes] = []
        self.heads: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                async with asyncio.timeout(self.idle_close):
                    head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.heads.append(head)
                self.bodies.append(await reader.readexactly(length))
                if self.reply is None:
                    await asyncio.sleep(30)
                    return
                writer.write(self.reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(peer: Peer) -> AsyncIterator[str]:
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


@pytest.fixture
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Peer, str]]:
    peer = Peer(request.param)
    async with serving(peer) as url:
        yield peer, url


ANSWER = b'{"resultCd":"0000","resultMsg":"SUCCESS"}'
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)


@pytest.mark.parametrize("peer", [OK], indirect=True)
async def test_posts_the_form_and_reuses_the_connection(peer: tuple[Peer, str]) -> None:
    server, url = peer
    poster = AiohttpPoster(url, connect_timeout=2, read_timeout=2)
    try:
        for i in range(3):
            answer = await poster.post_form("/nicepay/api/onePassStatus.do", {"tXid": f"T{i}"})
            assert (answer.status, answer.text) == (200, ANSWER.decode())
    finally:
        await poster.aclose()
    assert [dict(parse_qsl(b.decode())) for b in server.bodies] == [
        {"tXid": "T0"},
        {"tXid": "T1"},
        {"tXid": "T2"},
    ]
    assert b"application/x-www-form-urlencoded" in server.heads[0].lower()
    assert server.connections == 1  # kept alive


@pytest.mark.parametrize("peer", [None], indirect=True)
async def test_no_answer_is_a_timeout(peer: tuple[Peer, str]) -> None:
    _, url = peer
    poster = AiohttpPoster(url, connect_timeout=2, read_timeout=0.3)
    try:
        with pytest.raises(NicepayUnavailable) as raised:
            await poster.post_form("/nicepay/api/onePass.do", {"a": "b"})
    finally:
        await poster.aclose()
    assert raised.value.timed_out is True


async def test_nothing_listening_is_not_a_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    poster = AiohttpPoster(f"http://127.0.0.1:{port}", connect_timeout=2, read_timeout=2)
    try:
        with pytest.raises(NicepayUnavailable) as raised:
            await poster.post_form("/nicepay/api/onePass.do", {"a": "b"})
    finally:
        await poster.aclose()
    assert raised.value.timed_out is False
    assert "connection failed" in raised.value.reason


def hold_the_loop(seconds: float) -> None:
    """Block the event loop, as a worker busy with other requests does."""
    time.sleep(seconds)


async def test_an_inquiry_on_a_connection_closed_while_idle_is_asked_again() -> None:
    """NICEPAY closes a kept-alive connection it found idle; its close arrives while this
    worker is busy, so the pool hands the dead connection to the next call. The status
    inquiry (a read) is sent again on a new connection; a cancel (or a registration) is not:
    NICEPAY may have acted on the first, so the caller is told NICEPAY was unreachable."""
    peer = Peer(OK, idle_close=0.05)
    async with serving(peer) as url:
        poster = AiohttpPoster(url, connect_timeout=2, read_timeout=2)
        client = NicepayClient(poster, imid="IONPAYTEST", merchant_key="k")
        try:
            await client.inquire("T0", "ORD-1", 1000)
            hold_the_loop(0.3)  # the peer's close is not seen before the next call
            await client.inquire("T1", "ORD-1", 1000)
            await client.inquire("T2", "ORD-1", 1000)
            hold_the_loop(0.3)
            with pytest.raises(NicepayUnavailable) as raised:
                await client.cancel("T3", "ORD-1", 1000, "test")
        finally:
            await poster.aclose()
    assert [dict(parse_qsl(b.decode()))["tXid"] for b in peer.bodies] == ["T0", "T1", "T2"]
    assert peer.connections == 2  # T1 went out again on a new one; T2 kept it alive
    assert raised.value.timed_out is False
    assert "connection failed" in raised.value.reason
