"""uvicorn's HTTP protocol with the guards a service facing the internet needs without a proxy
in front: a deadline for a request's headers and one for its body, a cap on header bytes, and
a bound on open connections.

uvicorn arms its keep-alive timer only after a first response and resets it on every byte
received, so a client that never finishes its headers (slowloris) or its body holds a
connection forever (uvicorn issue #160; its `limit_concurrency` answers 503 but still keeps
every connection open). The guards live at the protocol level because ASGI middleware runs
only once the headers are complete. `python -m app serve` runs uvicorn with this class.
"""

import asyncio
import logging
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.config import get_settings
from app.metrics import CONNECTIONS_REFUSED

log = logging.getLogger("app.server")

MAX_HEADER_BYTES = 32 * 1024  # request line and headers together
WARN_EVERY_SECONDS = 10.0  # a flood must not flood the log too


class _TooLarge(Exception):
    """Raised inside a parser callback: the request's headers are over MAX_HEADER_BYTES."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    _last_warning: dict[str, float] = {}

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = get_settings()
        self._header_seconds = settings.http_header_timeout_seconds
        self._body_seconds = settings.http_body_timeout_seconds
        self._max_connections = settings.http_max_connections
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._headers_too_large = False

    # --- connections ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._max_connections:
            self._refuse("too_many_connections", "over HTTP_MAX_CONNECTIONS")
            return
        self._arm(self._header_seconds)  # the first request's headers, from the first byte on

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # --- one request ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._deadline is None:  # a later request on a kept-alive connection
            self._arm(self._header_seconds)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self._body_seconds)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def send_400_response(self, msg: str) -> None:
        if not self._headers_too_large:
            super().send_400_response(msg)
            return
        CONNECTIONS_REFUSED.labels("headers_too_large").inc()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: 26\r\n"
            b"connection: close\r\n\r\nrequest headers too large\n"
        )
        self.transport.close()

    # --- the deadline --------------------------------------------------------------------

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._headers_too_large = True
            raise _TooLarge  # httptools stops parsing; uvicorn calls send_400_response

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.pipeline:
            # A pipelined request waits (unread) for the one before it: not the client's fault.
            self._arm(self._body_seconds)
            return
        if not self.transport.is_closing():
            self._refuse("deadline", "request not received within its deadline")

    def _refuse(self, reason: str, why: str) -> None:
        CONNECTIONS_REFUSED.labels(reason).inc()
        now = time.monotonic()
        if now - self._last_warning.get(reason, 0.0) > WARN_EVERY_SECONDS:
            self._last_warning[reason] = now
            peer = self.client[0] if self.client else "?"
            log.warning("closing connections: %s (from %s, among others)", why, peer)
        self.transport.close()
