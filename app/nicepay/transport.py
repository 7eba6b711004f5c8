"""How the service reaches NICEPAY: forms posted over aiohttp's connection pool.

Measured (docs/BENCHMARKS.md, "NICEPAY client: CPU per status inquiry"): with the inquiry
on, the call to NICEPAY is most of a push's server CPU. Through httpx (its own transport,
httpcore on anyio) a status inquiry costs several times what it costs here; httpx over
aiohttp's transport (`httpx-aiohttp`) still pays httpx's request building, cookie handling
and response decoding for every call. NICEPAY's API is one form POST and one small JSON
answer, so this poster sends it with aiohttp directly. The tests' injected httpx transports
go through `HttpxPoster` (app/nicepay/client.py) instead: the client above is the same.

Connections to NICEPAY are kept alive and reused: up to `MAX_CONNECTIONS` at once (the calls
in flight on one worker), idle ones kept for `KEEPALIVE_SECONDS`. NICEPAY's API is stateless:
no cookie jar.
"""

from urllib.parse import urlencode

import aiohttp

from app.nicepay.client import Answer, NicepayUnavailable

MAX_CONNECTIONS = 100
KEEPALIVE_SECONDS = 30.0
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


class AiohttpPoster:
    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(sock_connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop that runs it.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=self._timeout,
            )
        return self._session

    async def post_form(self, path: str, form: dict[str, str]) -> Answer:
        try:
            # Encoded here: aiohttp's FormData would build a multipart writer for every call.
            body = urlencode(form).encode()
            async with self._open().post(
                self._base + path, data=body, headers=FORM_HEADERS
            ) as response:
                answer = await response.read()
                return Answer(response.status, answer.decode("utf-8", "replace"))
        except (TimeoutError, aiohttp.ClientError) as exc:  # aiohttp's timeouts: TimeoutErrors
            raise NicepayUnavailable.of(exc) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
