"""The HTTP transport under the NICEPAY client: aiohttp's connection pool behind httpx's API.

Measured (docs/BENCHMARKS.md, "NICEPAY client: CPU per call"): a status inquiry through
httpx's own transport (httpcore on anyio) costs several times the server CPU of the same call
through aiohttp's connector, and with the inquiry on that call is most of a push's cost.
httpx stays the client API (timeouts, errors, the tests' injected transports); only the
transport changes, from the `httpx-aiohttp` package.

Connections to NICEPAY are kept alive and reused: up to `MAX_CONNECTIONS` at once (the
pushes in flight on one worker), idle ones kept for `KEEPALIVE_SECONDS`.
"""

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

MAX_CONNECTIONS = 100
KEEPALIVE_SECONDS = 30.0


class NicepayTransport(AiohttpTransport):
    """httpx-aiohttp's transport, with its errors told apart the way httpx's own are:
    the library maps every connection-level failure (refused, reset, closed by the server)
    to ConnectTimeout, and a timeout and "NICEPAY is not there" answer the storefront
    differently (504 against 502)."""

    def __init__(self) -> None:
        super().__init__(
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_SECONDS,
            )
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
                raise
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(exc), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectionError):
                raise httpx.RemoteProtocolError(str(exc), request=request) from cause
            raise
